use support::*;

#[tokio::test]
async fn get_through_proxy_and_refused_answers_503() {
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let r = raw_exchange(proxy.addr(), b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 5)
        .await
        .response();
    assert_eq!(r.status, 200);
    drop(app);
    let dead = Proxy::with_endpoints(&[closed_port()], "").await;
    let r = raw_exchange(
        dead.addr(),
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
        5,
    )
    .await
    .response();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
}

#[tokio::test]
async fn process_starts_and_stops_on_sigterm() {
    // Nothing listens on the app's port: ready anyway, since readiness does
    // not require an up endpoint here.
    let mut p = ProxyProcess::start(
        "drain:\n  delay: 0s\napp:\n  endpoints: [\"127.0.0.1:1\"]\nhealth:\n  ready_requires_app: false\n",
    )
    .await;
    let (status, _) = admin_get(p.admin, "/readyz").await;
    assert_eq!(status, 200);
    p.signal(libc::SIGTERM);
    let st = p.wait_exit(5).await.expect("exits");
    assert!(st.success(), "{st:?}");
}
