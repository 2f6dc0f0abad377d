//! A real Node.js app process (tests/apps/crash_app.js) dies while requests
//! are in flight: killed with SIGKILL, or crashed by an uncaught exception in
//! an async callback. Every client still gets an HTTP answer from lifeguard.
use support::admin::wait_inflight;
use support::node::NodeApp;
use support::synth::{terminated, terminated_unknown, TCP_PROBES};
use support::*;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// `node tests/apps/crash_app.js <port>` (0: any), whose stdout has one
/// `REQ METHOD PATH` line per request received. crash_app.js answers `GET
/// /health` with 404 (an HTTP probe would take it down at once): the tests
/// probe with TCP, which only connects.
async fn crash_app(port: u16) -> NodeApp {
    NodeApp::start_app("crash_app.js", &[&port.to_string()]).await
}

fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    let len = if method == "POST" {
        format!("Content-Length: {}\r\n", body.len())
    } else {
        String::new()
    };
    format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\n{len}\r\n{body}").into_bytes()
}

/// `GET /` through `proxy`, answered within 5 s.
async fn get_root(proxy: &Proxy) -> RawResponse {
    raw_exchange(proxy.addr(), &request("GET", "/", ""), 5)
        .await
        .response()
}

fn spawn_exchange(addr: SocketAddr, method: &'static str, path: &str) -> JoinHandle<RawOutcome> {
    let bytes = request(method, path, if method == "POST" { "job=1" } else { "" });
    tokio::spawn(async move { raw_exchange(addr, &bytes, 9).await })
}

#[track_caller]
fn assert_synthesized(what: &str, outcome: RawOutcome, proxy_status: &str) {
    let r = match outcome {
        RawOutcome::Response(r) => r,
        other => panic!("{what}: expected lifeguard's 503, got {other:?}"),
    };
    assert_eq!(r.status, 503, "{what}: {r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
    assert_eq!(r.header("retry-after"), Some("5"), "{what}: {r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some(proxy_status),
        "{what}: {r:?}"
    );
    assert!(
        r.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "{what}: {r:?}"
    );
    assert!(!r.truncated, "{what}: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_requests_in_flight_answers_every_client() {
    let mut app = crash_app(0).await;
    // No hold: the resent GETs find the app gone and are answered at once
    // rather than waiting for it to come back.
    let proxy = Proxy::with_endpoints(
        &[app.addr],
        &format!("{TCP_PROBES}unavailable:\n  hold: 0s\n"),
    )
    .await;
    let gets: Vec<_> = (0..3)
        .map(|_| spawn_exchange(proxy.addr(), "GET", "/slow?ms=5000"))
        .collect();
    let posts: Vec<_> = (0..2)
        .map(|_| spawn_exchange(proxy.addr(), "POST", "/work?ms=5000"))
        .collect();
    eventually(5, "all 5 requests reach the app", || {
        app.requests_to("GET", "/slow") == 3 && app.requests_to("POST", "/work") == 2
    })
    .await;
    wait_inflight(proxy.admin(), 5).await;

    let killed_at = Instant::now();
    app.kill(libc::SIGKILL);
    let status = app.wait_exit(5).await.expect("node app exits within 5 s");
    assert_eq!(status.signal(), Some(9), "{status:?}");

    for (i, t) in gets.into_iter().enumerate() {
        assert_synthesized(&format!("GET {i}"), t.await.unwrap(), &terminated());
    }
    for (i, t) in posts.into_iter().enumerate() {
        assert_synthesized(
            &format!("POST {i}"),
            t.await.unwrap(),
            &terminated_unknown(),
        );
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "answers must come when the app dies, not at its 5 s timer: {:?}",
        killed_at.elapsed()
    );
    assert_eq!(
        app.requests_to("POST", "/work"),
        2,
        "each POST delivered once"
    );
    wait_inflight(proxy.admin(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaught_exception_with_requests_in_flight_answers_every_client() {
    let mut app = crash_app(0).await;
    let proxy = ProxyProcess::with_endpoints(&[app.addr], TCP_PROBES).await;
    let slow: Vec<_> = (0..2)
        .map(|_| spawn_exchange(proxy.addr, "GET", "/slow?ms=5000"))
        .collect();
    let post = spawn_exchange(proxy.addr, "POST", "/work?ms=5000");
    eventually(5, "the other requests reach the app", || {
        app.requests_to("GET", "/slow") == 2 && app.requests_to("POST", "/work") == 1
    })
    .await;
    let crash = spawn_exchange(proxy.addr, "GET", "/crash");

    assert_synthesized("GET /crash", crash.await.unwrap(), &terminated());
    for (i, t) in slow.into_iter().enumerate() {
        assert_synthesized(&format!("GET /slow {i}"), t.await.unwrap(), &terminated());
    }
    assert_synthesized("POST /work", post.await.unwrap(), &terminated_unknown());

    let status = app.wait_exit(5).await.expect("node app exits within 5 s");
    assert_eq!(
        status.code(),
        Some(1),
        "uncaught exception exits 1: {status:?}"
    );
    let stderr = app.stderr_lines().join("\n");
    assert!(stderr.contains("boom"), "{stderr}");
    assert_eq!(app.requests_to("GET", "/crash"), 1);
    assert_eq!(app.requests_to("POST", "/work"), 1);

    // One crash event naming the endpoint and all four requests.
    eventually(5, "four access-log events", || {
        proxy
            .json_logs()
            .iter()
            .filter(|v| v["target"] == "access" && v["status"] == 503)
            .count()
            == 4
    })
    .await;
    let events = proxy.events("app_connection_lost");
    assert_eq!(events.len(), 1, "exactly one crash event: {events:#?}");
    let e = &events[0];
    assert_eq!(e["endpoint"], app.addr.to_string().as_str(), "{e}");
    assert_eq!(e["in_flight"], 4, "{e}");
    let list: Vec<serde_json::Value> =
        serde_json::from_str(e["requests"].as_str().expect("requests string")).unwrap();
    let mut paths: Vec<&str> = list.iter().map(|r| r["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/crash", "/slow?ms=5000", "/slow?ms=5000", "/work?ms=5000"],
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_app_gets_503_connection_refused_quickly() {
    let mut app = crash_app(0).await;
    // The first probe sees the app up and the next is an hour away, so
    // lifeguard learns of the death from the first request's refused connect;
    // no hold, so every answer is immediate.
    let proxy = Proxy::with_endpoints(
        &[app.addr],
        "health:\n  mode: tcp\n  interval: 1h\nunavailable:\n  hold: 0s\n",
    )
    .await;
    let e = proxy
        .endpoint_up(0, "the first probe sees the app up")
        .await;
    // Warm lifeguard's pool with a keep-alive connection to the app.
    for _ in 0..2 {
        let r = get_root(&proxy).await;
        assert_eq!((r.status, r.body_text().as_str()), (200, "ok"), "{r:?}");
    }
    app.kill(libc::SIGKILL);
    let status = app.wait_exit(5).await.expect("node app exits within 5 s");
    assert_eq!(status.signal(), Some(9), "{status:?}");

    for i in 0..5 {
        for method in ["GET", "POST"] {
            let path = if method == "GET" { "/" } else { "/work" };
            let started = Instant::now();
            let outcome = raw_exchange(proxy.addr(), &request(method, path, "job=1"), 5).await;
            let took = started.elapsed();
            // The first request's own connect is refused, which takes the
            // endpoint down; the later ones are not even tried.
            let ps = if i == 0 && method == "GET" {
                "lifeguard; error=connection_refused"
            } else {
                "lifeguard; error=destination_unavailable"
            };
            assert_synthesized(&format!("{method} #{i} after death"), outcome, ps);
            assert!(took < Duration::from_secs(1), "{method} #{i} took {took:?}");
        }
        assert!(e.is_down(), "#{i}");
    }
    wait_inflight(proxy.admin(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_app_on_the_same_port_is_served_again() {
    let mut app = crash_app(0).await;
    let port = app.addr.port();
    // Probes: the first (seen up), then an hour away while up and every
    // 250 ms while down; the default hold (2 s) lets a request wait for a
    // restart.
    let proxy = Proxy::with_endpoints(&[app.addr], "health:\n  mode: tcp\n  interval: 1h\n").await;
    let e = proxy
        .endpoint_up(0, "the first probe sees the app up")
        .await;
    for _ in 0..2 {
        let r = get_root(&proxy).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Killed and restarted with no request in between: lifeguard's pooled
    // connection to the dead process must not eat the next POST.
    app.kill(libc::SIGKILL);
    app.wait_exit(5).await.expect("node app exits within 5 s");
    let mut again = crash_app(port).await;
    assert_eq!(again.addr, app.addr);
    let r = raw_exchange(proxy.addr(), &request("POST", "/work", "job=1"), 5)
        .await
        .response();
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "worked 1"),
        "{r:?}"
    );
    assert_eq!(again.requests_to("POST", "/work"), 1);

    // Down again: refused (the request's own connect: no probe ran since),
    // after holding for the app to come back; up again: served.
    again.kill(libc::SIGKILL);
    again.wait_exit(5).await.expect("node app exits within 5 s");
    let r = get_root(&proxy).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=connection_refused")
    );
    assert!(e.is_down());
    // Restarted while lifeguard knows the endpoint is down: the request is
    // served once probes see the app up (waiting in the hold if need be).
    let third = crash_app(port).await;
    let r = get_root(&proxy).await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok"), "{r:?}");
    assert_eq!(third.requests_to("GET", "/"), 1);
}
