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

/// The runtime runs one worker per CPU the process may use: its affinity
/// (here `taskset -c 0`) and its cgroup's CPU quota (a pod's `limits.cpu`),
/// not the node's core count. `TOKIO_WORKER_THREADS` overrides it; a bad
/// value is reported and ignored, never a panic.
#[tokio::test]
async fn worker_threads_follow_the_cpus_the_process_may_use() {
    let yaml = "app:\n  endpoints: [\"127.0.0.1:1\"]\n";
    let workers = |p: &ProxyProcess| {
        let started = p
            .json_logs()
            .into_iter()
            .find(|v| v["message"] == "lifeguard started");
        started.and_then(|v| v["workers"].as_u64())
    };
    let pinned = ProxyProcess::start_wrapped(yaml, &["taskset", "-c", "0"], &[]).await;
    assert_eq!(workers(&pinned), Some(1), "pinned to one CPU");
    let set = ProxyProcess::start_wrapped(yaml, &["env"], &[("TOKIO_WORKER_THREADS", "3")]).await;
    assert_eq!(workers(&set), Some(3));
    let bad = ProxyProcess::start_wrapped(
        yaml,
        &["taskset", "-c", "0"],
        &[("TOKIO_WORKER_THREADS", "zero")],
    )
    .await;
    assert_eq!(workers(&bad), Some(1), "a bad value falls back to the CPUs");
    assert!(
        bad.logs()
            .iter()
            .any(|l| l.contains("TOKIO_WORKER_THREADS=\"zero\" is not a whole number")),
        "the bad value is reported"
    );
}
