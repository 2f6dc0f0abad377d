//! Active probes: timeouts, `down_interval`, refused probes, the probed
//! path, `tcp` mode.

use super::{assert_unavailable, get, Flip};
use support::net::kill_app;
use support::upstream::full;
use support::*;

use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::api::{ProbeOutcome, State};
use tokio::time::Instant;

/// A probe slower than `health.timeout` is a failure (enough of them take the
/// endpoint down); a slow probe within the timeout is a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe_timeout_counts_as_failure() {
    let (flip, app) = Flip::start().await;
    let proxy = Proxy::with_endpoints(
        &[app.addr],
        "health:
  interval: 20ms
  down_interval: 20ms
  timeout: 300ms
  healthy_threshold: 1
  unhealthy_threshold: 2
  slow_start: 0s
unavailable:
  hold: 0s
",
    )
    .await;
    let e = proxy.endpoint_up(0, "up").await;

    // Slow but within the timeout: stays up over many probes.
    flip.delay_ms.store(100, Ordering::SeqCst);
    let seen = flip.probes();
    while flip.probes() < seen + 6 {
        assert!(e.is_up(), "a probe answering within health.timeout failed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(get(proxy.addr(), "/x").await.status, 200);

    // Slower than the timeout: down.
    flip.delay_ms.store(1500, Ordering::SeqCst);
    let started = Instant::now();
    eventually(5, "probes slower than health.timeout take it down", || {
        e.is_down()
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "went down only after a probe answered: the timeout was not applied ({:?})",
        started.elapsed()
    );
    let h = e.health();
    assert_eq!(h.last_probe.map(|p| p.outcome), Some(ProbeOutcome::Timeout));
    assert_eq!(h.last_reason, "probe timed out (2 in a row)");
    assert_unavailable(&get(proxy.addr(), "/x").await, "down after timeouts");

    flip.delay_ms.store(0, Ordering::SeqCst);
    eventually(5, "fast probes bring it back", || e.is_up()).await;
    assert_eq!(get(proxy.addr(), "/x").await.status, 200);
}

/// Probes an hour apart while up, 50 ms apart while down; no hold.
const FAST_RECOVERY: &str = "health:
  interval: 1h
  down_interval: 50ms
unavailable:
  hold: 0s
";

/// While down, probes run every `down_interval`: an app restarted on the same
/// port gets traffic back within a fraction of a second even though
/// `health.interval` is an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn down_interval_makes_recovery_fast() {
    let (flip, app) = Flip::start().await;
    let addr = app.addr;
    let proxy = Proxy::with_endpoints(&[addr], FAST_RECOVERY).await;
    let e = proxy.endpoint_up(0, "up").await;
    assert_eq!(get(proxy.addr(), "/x").await.status, 200);

    kill_app(app).await;
    let r = get(proxy.addr(), "/x").await;
    assert_eq!(r.status, 503);
    assert!(e.is_down(), "a refused request takes the endpoint down");

    let restarted = Instant::now();
    let _app = flip.restart_on(addr).await;
    loop {
        let r = get(proxy.addr(), "/x").await;
        if r.status == 200 {
            break;
        }
        assert_unavailable(&r, "while coming back");
        assert!(
            restarted.elapsed() < Duration::from_secs(1),
            "not back within 1s of the restart (down_interval: 50ms, healthy_threshold: 2)"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A refused probe takes an endpoint down at once, whatever
/// `unhealthy_threshold` says (10 here: failures of other kinds would need
/// 10 probe periods, over a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_probe_takes_the_endpoint_down_at_once() {
    let (_flip, app) = Flip::start().await;
    let addr = app.addr;
    let proxy = Proxy::with_endpoints(
        &[addr],
        "health:\n  interval: 100ms\n  unhealthy_threshold: 10\nunavailable:\n  hold: 0s\n",
    )
    .await;
    let e = proxy.endpoint_up(0, "up").await;
    kill_app(app).await;
    let killed = Instant::now();
    eventually(5, "down", || e.is_down()).await;
    assert!(
        killed.elapsed() < Duration::from_millis(500),
        "down only after {:?}: a refused probe must count at once",
        killed.elapsed()
    );
    assert_eq!(e.health().last_reason, "probe connection refused");
    assert_unavailable(&get(proxy.addr(), "/x").await, "down");
}

/// `health.path` names the probed route.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_path_is_configurable() {
    let app = TestUpstream::start(|req: Request<Incoming>| async move {
        let status = if req.uri() == "/_ready?deep=1" {
            200
        } else {
            503
        };
        Response::builder().status(status).body(full("x")).unwrap()
    })
    .await;
    let cfg = "  interval: 20ms\nunavailable:\n  hold: 0s\n";
    let custom = Proxy::with_endpoints(
        &[app.addr],
        &format!("health:\n  path: \"/_ready?deep=1\"\n{cfg}"),
    )
    .await;
    let default = Proxy::with_endpoints(&[app.addr], &format!("health:\n{cfg}")).await;
    let (ec, ed) = (custom.endpoint(0), default.endpoint(0));
    eventually(5, "default /health answers 503: down", || ed.is_down()).await;
    eventually(5, "custom path answers 200: up", || ec.is_up()).await;
}

/// `health.mode: tcp` only checks that the app accepts connections: an app
/// without a `/health` route (404) stays up, and receives no HTTP probe. The
/// same app in `http` mode with `expect_status: 2xx` is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tcp_mode_keeps_an_app_without_health_route_up() {
    // Two identical apps without a /health route, one per proxy, so each
    // app's probe count belongs to one mode.
    let (flip_tcp, flip_http) = (Flip::new(), Flip::new());
    flip_tcp.status.store(404, Ordering::SeqCst);
    flip_http.status.store(404, Ordering::SeqCst);
    let app_tcp = TestUpstream::start(flip_tcp.handler()).await;
    let app_http = TestUpstream::start(flip_http.handler()).await;
    let cfg = "  interval: 20ms\n  down_interval: 20ms\nunavailable:\n  hold: 0s\n";
    let tcp = Proxy::with_endpoints(&[app_tcp.addr], &format!("health:\n  mode: tcp\n{cfg}")).await;
    let http = Proxy::with_endpoints(
        &[app_http.addr],
        &format!("health:\n  expect_status: 2xx\n{cfg}"),
    )
    .await;

    let (et, eh) = (tcp.endpoint(0), http.endpoint(0));
    eventually(5, "http mode: 404 probe takes it down", || eh.is_down()).await;
    eventually(5, "tcp mode: first probe decides", || {
        et.state() != State::Unknown
    })
    .await;
    assert_unavailable(&get(http.addr(), "/x").await, "http mode, 404 health");
    assert!(flip_http.probes() >= 1, "http mode probes /health");

    // Let several tcp probe periods pass: still up, every request served.
    let deadline = Instant::now() + Duration::from_millis(300);
    while Instant::now() < deadline {
        assert!(et.is_up(), "tcp mode took an accepting app down");
        assert_eq!(get(tcp.addr(), "/x").await.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        flip_tcp.probes(),
        0,
        "tcp mode must not send HTTP requests to /health"
    );

    // tcp mode still notices a dead app (refused connect).
    kill_app(app_tcp).await;
    eventually(5, "tcp mode: refused connect takes it down", || {
        et.is_down()
    })
    .await;
}
