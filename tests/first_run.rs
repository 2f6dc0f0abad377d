//! A first run that works, or says exactly why not: the README's Quick
//! start loop, end to end, against a plain Node.js app with no health
//! route (tests/apps/hello.js): start the app, start lifeguard on the
//! README's config, request through it, kill the app, request again. Then
//! an app that fails a stricter health check, named as such everywhere a
//! user looks, and `localhost:PORT` endpoints resolved at start and on
//! reload (a name that does not resolve: the reload is rejected, naming it).

use std::time::Duration;
use support::admin::status_json;
use support::node::NodeApp;
use support::{admin_get, eventually_async, raw_exchange, ProxyProcess, RawResponse};
use tokio::time::Instant;

/// The README's Quick start config (the ```yaml block after its
/// `# quickstart.yaml` line), as YAML.
fn readme_quickstart() -> serde_yaml::Value {
    let readme = include_str!("../README.md");
    let block = readme
        .split("```yaml\n")
        .map(|b| b.split("```").next().unwrap_or(""))
        .find(|b| b.trim_start().starts_with("# quickstart.yaml"))
        .expect("the README's Quick start has a `# quickstart.yaml` block");
    serde_yaml::from_str(block).unwrap()
}

/// The README's config for an app on `port`, on port-0 loopback listeners
/// (the test may not take 8080) with JSON logs (which the harness reads).
fn quickstart_config(port: u16, extra: &str) -> String {
    let mut c = readme_quickstart();
    assert_eq!(c["listen"].as_str(), Some(":8080"), "README changed: {c:?}");
    assert_eq!(
        c["app"]["endpoints"][0].as_str(),
        Some("localhost:3000"),
        "README changed: {c:?}"
    );
    assert!(
        c.get("health").is_none(),
        "the Quick start runs on the default health check"
    );
    c["listen"] = "127.0.0.1:0".into();
    c["admin"] = serde_yaml::from_str("listen: \"127.0.0.1:0\"").unwrap();
    c["app"]["endpoints"][0] = format!("localhost:{port}").into();
    c["log"]["format"] = "json".into();
    format!("{}{extra}", serde_yaml::to_string(&c).unwrap())
}

async fn hello_app(port: u16) -> NodeApp {
    NodeApp::start_app("hello.js", &[&port.to_string()]).await
}

async fn get(proxy: &ProxyProcess, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: quickstart\r\nConnection: close\r\n\r\n");
    raw_exchange(proxy.addr, req.as_bytes(), 10)
        .await
        .response()
}

/// Waits until the proxy's log has a JSON line with `message`; returns it.
async fn logged(proxy: &ProxyProcess, message: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = proxy
            .json_logs()
            .into_iter()
            .find(|l| l["message"] == message)
        {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "no {message:?} in the log: {:#?}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The README's loop: the app has no /health route (404) and is up; killed,
/// the client gets a 503 whose page names the cause, as do
/// `/readyz` and the log; restarted, requests go through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_loop_against_an_app_without_a_health_route() {
    let app = hello_app(0).await;
    let port = app.port();
    let proxy = ProxyProcess::start(&quickstart_config(port, "")).await;

    let r = get(&proxy, "/").await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.body_text(), "hello from the app: GET /\n");
    support::wait_ready(proxy.admin).await;
    assert_eq!(
        admin_get(proxy.admin, "/readyz").await,
        (200, "ready\n".to_owned())
    );
    let status = status_json(proxy.admin).await;
    let e = &status["endpoints"][0];
    assert_eq!(e["endpoint"], format!("127.0.0.1:{port}"), "{status}");
    assert_eq!(e["state"], "up", "{status}");
    assert_eq!(
        e["last_change_reason"], "first probe answered 404",
        "a 404 on /health proves the app alive: {status}"
    );

    // Kill the app, send the request again, as a person at a terminal would:
    // a moment later, when the probe (every 2s) has seen it gone. (A request
    // racing the kill gets a 503 too, saying the app stopped while handling
    // it; tests/killed_app.rs covers that race.)
    let mut app = app;
    app.kill(libc::SIGKILL);
    assert!(app.wait_exit(5).await.is_some(), "the app did not exit");
    let down = logged(&proxy, "app endpoint down").await;
    assert_eq!(down["reason"], "probe connection refused", "{down}");
    let started = Instant::now();
    let r = get(&proxy, "/").await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "answered after {:?} (unavailable.hold is 2s)",
        started.elapsed()
    );
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable")
    );
    let page = r.body_text();
    assert!(
        page.contains("No instance of the application is up right now.")
            && page.contains("Cause: probe connection refused."),
        "{page}"
    );
    assert!(
        !page.contains("127.0.0.1"),
        "the public page names no address: {page}"
    );

    let (code, body) = admin_get(proxy.admin, "/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(
        body,
        format!("not ready: no app endpoint is up (127.0.0.1:{port}: probe connection refused)\n")
    );
    // Start the app again: requests go through within a fraction of a second
    // (health.down_interval 250ms).
    let _app = hello_app(port).await;
    eventually_async(Duration::from_secs(5), "app back", || async {
        get(&proxy, "/").await.status == 200
    })
    .await;
    support::wait_ready(proxy.admin).await;
}

/// With `health.expect_status: 2xx`, the same app is down from its first
/// probe, and the startup log, `/readyz` and the page (HTML or JSON) all
/// say `GET /health answered 404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_health_check_is_named_everywhere() {
    let app = hello_app(0).await;
    let extra = "health:\n  expect_status: 2xx\nunavailable:\n  hold: 0s\n";
    let proxy = ProxyProcess::start(&quickstart_config(app.port(), extra)).await;
    let cause = "GET /health answered 404 (health.expect_status: 200-299)";

    let down = logged(&proxy, "app endpoint down").await;
    assert_eq!(down["reason"], format!("first {cause}"), "{down}");
    let (code, body) = admin_get(proxy.admin, "/readyz").await;
    assert_eq!(code, 503);
    assert_eq!(
        body,
        format!(
            "not ready: no app endpoint is up (127.0.0.1:{}: first {cause})\n",
            app.port()
        )
    );
    let r = get(&proxy, "/").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable")
    );
    assert!(
        r.body_text().contains(&format!("Cause: first {cause}.")),
        "{}",
        r.body_text()
    );
    // JSON clients get the same message.
    let req = "GET / HTTP/1.1\r\nHost: q\r\nAccept: application/json\r\nConnection: close\r\n\r\n";
    let r = raw_exchange(proxy.addr, req.as_bytes(), 5).await.response();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(
        v["message"].as_str().is_some_and(|m| m.contains(cause)),
        "{v}"
    );
}

/// `localhost:PORT` resolves at start and again on every reload; a reload
/// naming a host that does not resolve is rejected (naming the field and
/// the name), and the running endpoints stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_names_resolve_at_start_and_on_reload() {
    let (a, b) = (hello_app(0).await, hello_app(0).await);
    let proxy = ProxyProcess::start(&quickstart_config(
        a.port(),
        "reload:\n  poll_interval: 0s\n",
    ))
    .await;
    let endpoint = |s: serde_json::Value| {
        s["endpoints"][0]["endpoint"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(
        endpoint(status_json(proxy.admin).await),
        format!("127.0.0.1:{}", a.port())
    );
    assert_eq!(get(&proxy, "/").await.status, 200);

    let text = std::fs::read_to_string(&proxy.config_path).unwrap();
    let to_b = text.replace(
        &format!("localhost:{}", a.port()),
        &format!("localhost:{}", b.port()),
    );
    assert_ne!(to_b, text);
    std::fs::write(&proxy.config_path, &to_b).unwrap();
    proxy.signal(libc::SIGHUP);
    let want = format!("127.0.0.1:{}", b.port());
    eventually_async(
        Duration::from_secs(5),
        "reloaded onto localhost:B",
        || async { endpoint(status_json(proxy.admin).await) == want },
    )
    .await;
    drop(a);
    assert_eq!(get(&proxy, "/").await.status, 200);

    let unresolvable = to_b.replace(&format!("localhost:{}", b.port()), "app.invalid:3000");
    std::fs::write(&proxy.config_path, &unresolvable).unwrap();
    proxy.signal(libc::SIGHUP);
    let rejected = logged(&proxy, "config rejected; keeping the running config").await;
    assert!(
        rejected["problems"].as_str().is_some_and(|p| p.starts_with(
            "app.endpoints[0]: the host name \"app.invalid\" in \"app.invalid:3000\" does not resolve"
        )),
        "{rejected}"
    );
    assert_eq!(endpoint(status_json(proxy.admin).await), want);
    assert_eq!(get(&proxy, "/").await.status, 200);
}
