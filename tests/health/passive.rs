//! Passive detection: refused request connects, the hold, and resets that
//! trigger an immediate probe.

use super::{assert_unavailable, get, Flip};
use support::doomed::crashy_app;
use support::net::kill_app;
use support::*;

use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A request whose connect is refused takes the endpoint down at once: the
/// next request is answered 503 `destination_unavailable` without any
/// connect, long before any scheduled probe (`interval: 1h`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_request_marks_the_endpoint_down_at_once() {
    let (_flip, app) = Flip::start().await;
    let addr = app.addr;
    // No pooled connections: the next request must connect.
    let proxy = Proxy::with_endpoints(&[addr], "  pool_max_idle_per_endpoint: 0\nhealth:\n  interval: 1h\n  down_interval: 1h\nunavailable:\n  hold: 0s\n")
    .await;
    let e = proxy.endpoint_up(0, "first probe: up").await;
    assert_eq!(get(proxy.addr(), "/x").await.status, 200);

    kill_app(app).await;
    assert!(e.is_up(), "no probe can have noticed yet (interval: 1h)");
    let started = Instant::now();
    let first = get(proxy.addr(), "/x").await;
    assert_eq!(first.status, 503);
    assert_eq!(
        first.header("proxy-status"),
        Some("lifeguard; error=connection_refused"),
        "the request itself met the refused connect"
    );
    assert!(
        e.is_down(),
        "a refused request takes the endpoint down at once"
    );
    for i in 0..3 {
        assert_unavailable(
            &get(proxy.addr(), "/x").await,
            &format!("request {i} after the refusal: no connect tried"),
        );
    }
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(e.health().last_reason, "request connect refused");
}

/// Probes an hour apart, whether the endpoint is up or down; a request waits
/// 300 ms for an endpoint to come up.
const HOLD_300MS: &str =
    "health:\n  interval: 1h\n  down_interval: 1h\nunavailable:\n  hold: 300ms\n";

/// With no endpoint up, a request (any method: nothing was sent) waits
/// `unavailable.hold` for one to come up, then gets 503
/// `destination_unavailable`, or `connection_refused` when its own connect
/// was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_expires_with_503() {
    let dead = closed_port();
    let proxy = Proxy::with_endpoints(&[dead], HOLD_300MS).await;
    let e = proxy.endpoint(0);
    eventually(5, "first probe refused: down", || e.is_down()).await;
    for method in ["GET", "POST"] {
        let started = Instant::now();
        let req = format!(
            "{method} /x HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi"
        );
        let r = raw_exchange(proxy.addr(), req.as_bytes(), 10)
            .await
            .response();
        let took = started.elapsed();
        assert_unavailable(&r, method);
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_millis(1300),
            "{method}: answered after {took:?}, hold is 300ms"
        );
    }

    let (_flip, app) = Flip::start().await;
    let addr = app.addr;
    let config = format!("  pool_max_idle_per_endpoint: 0\n{HOLD_300MS}");
    let proxy = Proxy::with_endpoints(&[addr], &config).await;
    proxy.endpoint_up(0, "up").await;
    kill_app(app).await;
    let started = Instant::now();
    let r = get(proxy.addr(), "/x").await;
    let took = started.elapsed();
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=connection_refused")
    );
    assert!(
        took >= Duration::from_millis(290),
        "the refused request did not wait in the hold: {took:?}"
    );
}

const CRASHY: &str = "health:
  interval: 1h
  unhealthy_threshold: 5
retry:
  attempts: 0
unavailable:
  hold: 0s
";

/// The crashy app behind a proxy on `CRASHY`, seen up by exactly one probe
/// (the first; the next is an hour away).
async fn crashy_proxy() -> (Proxy, Arc<AtomicUsize>, RawApp) {
    let (addr, probes, app) = crashy_app().await;
    let proxy = Proxy::with_endpoints(&[addr], CRASHY).await;
    proxy.endpoint_up(0, "first probe: up").await;
    assert_eq!(probes.load(Ordering::SeqCst), 1);
    (proxy, probes, app)
}

/// A request reset before any response triggers an immediate probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_before_response_triggers_an_immediate_probe() {
    let (proxy, probes, _task) = crashy_proxy().await;

    let r = get(proxy.addr(), "/reset").await;
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=connection_terminated")
    );
    eventually(2, "a probe right after the reset (interval: 1h)", || {
        probes.load(Ordering::SeqCst) >= 2
    })
    .await;
}

/// An app connection that dies mid-response (a request on it) also triggers
/// an immediate probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_mid_response_triggers_an_immediate_probe() {
    let (proxy, probes, _task) = crashy_proxy().await;

    let r = get(proxy.addr(), "/midbody").await;
    assert_eq!(r.status, 200);
    assert!(r.truncated, "the client sees a truncated body");
    eventually(2, "a probe right after the mid-response reset", || {
        probes.load(Ordering::SeqCst) >= 2
    })
    .await;
}
