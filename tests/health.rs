//! App health: active probes (rise/fall thresholds, timeouts, `down_interval`,
//! `tcp` mode), passive detection (refused connects, resets), readiness, and
//! the state-change log lines.
//!
//! Probe results are driven by the test: the gated app hands every `/health`
//! probe to the test, which answers it. While the test holds probe n+1, the
//! endpoint's state reflects exactly probes 1..n (lifeguard's prober records a
//! result before it sleeps and sends the next probe), so every check below is
//! synchronised on probe arrivals, not on sleeps.

use support::doomed::crashy_app;
use support::net::{rebind, wait_refused};
use support::upstream::{full, TestBody};
use support::*;

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::api::{ProbeOutcome, State};
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------- helpers

/// GET `path` on a fresh client connection.
async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    raw_exchange(addr, req.as_bytes(), 10).await.response()
}

async fn readyz(proxy: &Proxy) -> u16 {
    admin_get(proxy.admin(), "/readyz").await.0
}

/// Asserts lifeguard answered for the app because no endpoint is up, without
/// trying to connect.
fn assert_unavailable(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.body_text());
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable"),
        "{what}"
    );
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    assert!(r.header("retry-after").is_some(), "{what}");
}

/// An app that answers `/health` with `status` (and counts probes), and
/// everything else with 200 (counted apart).
#[derive(Clone)]
struct Flip {
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    probes: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Flip {
    fn new() -> Flip {
        Flip {
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::new(AtomicU64::new(0)),
            probes: Arc::new(AtomicUsize::new(0)),
            requests: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn handler(
        &self,
    ) -> impl Fn(
        Request<Incoming>,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<TestBody>> + Send>>
           + Clone
           + Send
           + Sync
           + 'static {
        let me = self.clone();
        move |req: Request<Incoming>| {
            let me = me.clone();
            Box::pin(async move {
                if req.uri().path() == "/health" {
                    me.probes.fetch_add(1, Ordering::SeqCst);
                    let delay = me.delay_ms.load(Ordering::SeqCst);
                    if delay > 0 {
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                    }
                    let status = me.status.load(Ordering::SeqCst);
                    return Response::builder()
                        .status(status)
                        .body(full("health"))
                        .unwrap();
                }
                me.requests.fetch_add(1, Ordering::SeqCst);
                Response::new(full("ok"))
            })
        }
    }

    fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }
}

/// A probe waiting for the test's answer.
type Pending = oneshot::Sender<u16>;

/// Hands each `/health` probe of a gated app to the test.
struct ProbeGate {
    arrivals: mpsc::UnboundedReceiver<Pending>,
}

impl ProbeGate {
    /// The next probe, blocked until answered.
    async fn next(&mut self) -> Pending {
        tokio::time::timeout(Duration::from_secs(5), self.arrivals.recv())
            .await
            .expect("a health probe arrives within 5s")
            .expect("app alive")
    }

    /// Answers `pending` with `status` and returns the following probe, held:
    /// from then on the endpoint's state reflects the answered probe.
    async fn answer(&mut self, pending: Pending, status: u16) -> Pending {
        pending.send(status).expect("probe still waiting");
        self.next().await
    }
}

/// An app whose probes the test answers one by one; other requests get 200
/// and are counted.
async fn gated_app() -> (TestUpstream, ProbeGate, Arc<AtomicUsize>) {
    let (tx, arrivals) = mpsc::unbounded_channel::<Pending>();
    let requests = Arc::new(AtomicUsize::new(0));
    let r = requests.clone();
    let app = TestUpstream::start(move |req: Request<Incoming>| {
        let tx = tx.clone();
        let r = r.clone();
        async move {
            if req.uri().path() == "/health" {
                let (answer, wait) = oneshot::channel();
                let _ = tx.send(answer);
                let status = wait.await.unwrap_or(503);
                return Response::builder()
                    .status(status)
                    .body(full("health"))
                    .unwrap();
            }
            r.fetch_add(1, Ordering::SeqCst);
            Response::new(full("ok"))
        }
    })
    .await;
    (app, ProbeGate { arrivals }, requests)
}

/// Checks, with a request, that the endpoint is routable (`up`: the request
/// reaches the app) or down (lifeguard answers 503 without sending it).
async fn assert_routing(proxy: &Proxy, requests: &AtomicUsize, up: bool, what: &str) {
    let before = requests.load(Ordering::SeqCst);
    let r = get(proxy.addr(), "/work").await;
    let after = requests.load(Ordering::SeqCst);
    if up {
        assert_eq!(r.status, 200, "{what}: expected the app to answer");
        assert_eq!(after, before + 1, "{what}");
    } else {
        assert_unavailable(&r, what);
        assert_eq!(after, before, "{what}: nothing may reach a down app");
    }
}

const GATED: &str = "health:
  interval: 10ms
  down_interval: 10ms
  timeout: 30s
  healthy_threshold: 3
  unhealthy_threshold: 2
  slow_start: 0s
unavailable:
  hold: 0s
";

// ------------------------------------------------------------------ tests

/// Rise needs `healthy_threshold` consecutive good probes, fall needs
/// `unhealthy_threshold` consecutive bad ones; the first probe decides at
/// once; 2xx and 3xx are healthy, 4xx/5xx are not. Observed through requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rise_and_fall_thresholds_seen_by_requests() {
    let (app, mut gate, requests) = gated_app().await;
    let proxy = Proxy::with_endpoints(&[app.addr], GATED).await;

    let p = gate.next().await;
    assert_eq!(proxy.endpoint(0).state(), State::Unknown);
    assert_routing(&proxy, &requests, true, "not probed yet: routable").await;

    let p = gate.answer(p, 204).await;
    assert_routing(&proxy, &requests, true, "first probe 204: up").await;
    let p = gate.answer(p, 500).await;
    assert_routing(&proxy, &requests, true, "1 of 2 failures: still up").await;
    let p = gate.answer(p, 500).await;
    assert_routing(&proxy, &requests, false, "2 of 2 failures: down").await;
    let p = gate.answer(p, 200).await;
    assert_routing(&proxy, &requests, false, "1 of 3 successes").await;
    let p = gate.answer(p, 302).await;
    assert_routing(&proxy, &requests, false, "2 of 3 successes").await;
    let p = gate.answer(p, 200).await;
    assert_routing(&proxy, &requests, true, "3 of 3 successes: up").await;
    let p = gate.answer(p, 404).await;
    assert_routing(&proxy, &requests, true, "404 is 1 failure").await;
    let p = gate.answer(p, 404).await;
    assert_routing(&proxy, &requests, false, "404 twice: down").await;
    drop(p);
}

/// Results alternating below the thresholds change nothing, up or down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flapping_below_thresholds_changes_nothing() {
    let (app, mut gate, requests) = gated_app().await;
    let proxy = Proxy::with_endpoints(&[app.addr], GATED).await;

    let mut p = gate.next().await;
    p = gate.answer(p, 200).await;
    assert_routing(&proxy, &requests, true, "up").await;
    for i in 0..5 {
        p = gate.answer(p, 503).await;
        assert_routing(&proxy, &requests, true, &format!("up, flap {i} (bad)")).await;
        p = gate.answer(p, 200).await;
        assert_routing(&proxy, &requests, true, &format!("up, flap {i} (good)")).await;
    }
    p = gate.answer(p, 503).await;
    p = gate.answer(p, 503).await;
    assert_routing(&proxy, &requests, false, "two failures in a row: down").await;
    for i in 0..4 {
        p = gate.answer(p, 200).await;
        assert_routing(&proxy, &requests, false, &format!("down, flap {i} (1 ok)")).await;
        p = gate.answer(p, 200).await;
        assert_routing(&proxy, &requests, false, &format!("down, flap {i} (2 ok)")).await;
        p = gate.answer(p, 500).await;
        assert_routing(&proxy, &requests, false, &format!("down, flap {i} (bad)")).await;
    }
    drop(p);
}

/// `/readyz` is 503 before the first probe answered, 200 while the endpoint
/// is up, 503 while it is down, and follows the same thresholds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_follows_app_health() {
    let (app, mut gate, _requests) = gated_app().await;
    let proxy = Proxy::with_endpoints(&[app.addr], GATED).await;

    let p = gate.next().await;
    assert_eq!(
        readyz(&proxy).await,
        503,
        "not ready before the first probe"
    );
    let p = gate.answer(p, 200).await;
    assert_eq!(readyz(&proxy).await, 200, "first probe healthy: ready");
    let p = gate.answer(p, 500).await;
    assert_eq!(readyz(&proxy).await, 200, "one failure: still ready");
    let p = gate.answer(p, 500).await;
    assert_eq!(readyz(&proxy).await, 503, "down: not ready");
    let p = gate.answer(p, 200).await;
    let p = gate.answer(p, 200).await;
    assert_eq!(readyz(&proxy).await, 503, "2 of 3 successes: not ready");
    let p = gate.answer(p, 200).await;
    assert_eq!(readyz(&proxy).await, 200, "up again: ready");
    drop(p);
}

/// `/readyz` with a dead app: 503 by default, 200 with
/// `health.ready_requires_app: false`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn readyz_with_dead_app_depends_on_ready_requires_app() {
    let dead = closed_port();
    let lenient = Proxy::with_endpoints(
        &[dead],
        "health:\n  ready_requires_app: false\n  interval: 1h\n",
    )
    .await;
    let strict = Proxy::with_endpoints(&[dead], "health:\n  interval: 1h\n").await;
    for p in [&lenient, &strict] {
        let e = p.endpoint(0);
        eventually(5, "the first probe (refused) takes it down", || e.is_down()).await;
    }
    assert_eq!(readyz(&lenient).await, 200, "ready_requires_app: false");
    assert_eq!(readyz(&strict).await, 503, "no endpoint up: not ready");
}

/// A probe slower than `health.timeout` is a failure (enough of them take the
/// endpoint down); a slow probe within the timeout is a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn probe_timeout_counts_as_failure() {
    let flip = Flip::new();
    let app = TestUpstream::start(flip.handler()).await;
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
    let e = proxy.endpoint(0);
    eventually(5, "up", || e.is_up()).await;

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

/// While down, probes run every `down_interval`: an app restarted on the same
/// port gets traffic back within a fraction of a second even though
/// `health.interval` is an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn down_interval_makes_recovery_fast() {
    let flip = Flip::new();
    let app = TestUpstream::start(flip.handler()).await;
    let addr = app.addr;
    let proxy = Proxy::with_endpoints(
        &[addr],
        "health:
  interval: 1h
  down_interval: 50ms
unavailable:
  hold: 0s
",
    )
    .await;
    let e = proxy.endpoint(0);
    eventually(5, "up", || e.is_up()).await;
    assert_eq!(get(proxy.addr(), "/x").await.status, 200);

    drop(app);
    wait_refused(addr).await;
    let r = get(proxy.addr(), "/x").await;
    assert_eq!(r.status, 503);
    assert!(e.is_down(), "a refused request takes the endpoint down");

    let restarted = Instant::now();
    let _app = TestUpstream::start_on(rebind(addr).await, flip.handler()).await;
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
    let flip = Flip::new();
    let app = TestUpstream::start(flip.handler()).await;
    let addr = app.addr;
    let proxy = Proxy::with_endpoints(
        &[addr],
        "health:\n  interval: 100ms\n  unhealthy_threshold: 10\nunavailable:\n  hold: 0s\n",
    )
    .await;
    let e = proxy.endpoint(0);
    eventually(5, "up", || e.is_up()).await;
    drop(app);
    wait_refused(addr).await;
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
            404
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
    eventually(5, "default /health answers 404: down", || ed.is_down()).await;
    eventually(5, "custom path answers 200: up", || ec.is_up()).await;
}

/// `health.mode: tcp` only checks that the app accepts connections: an app
/// without a `/health` route (404) stays up, and receives no HTTP probe. The
/// same app in `http` mode is down.
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
    let http = Proxy::with_endpoints(&[app_http.addr], &format!("health:\n{cfg}")).await;

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
    let addr = app_tcp.addr;
    drop(app_tcp);
    wait_refused(addr).await;
    eventually(5, "tcp mode: refused connect takes it down", || {
        et.is_down()
    })
    .await;
}

/// A request whose connect is refused takes the endpoint down at once: the
/// next request is answered 503 `destination_unavailable` without any
/// connect, long before any scheduled probe (`interval: 1h`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_request_marks_the_endpoint_down_at_once() {
    let flip = Flip::new();
    let app = TestUpstream::start(flip.handler()).await;
    let addr = app.addr;
    // No pooled connections: the next request must connect.
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: [\"{addr}\"]\n  pool_max_idle_per_endpoint: 0\nhealth:\n  interval: 1h\n  down_interval: 1h\nunavailable:\n  hold: 0s\n"
    ))
    .await;
    let e = proxy.endpoint(0);
    eventually(5, "first probe: up", || e.is_up()).await;
    assert_eq!(get(proxy.addr(), "/x").await.status, 200);

    drop(app);
    wait_refused(addr).await;
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

/// With no endpoint up, a request (any method: nothing was sent) waits
/// `unavailable.hold` for one to come up, then gets 503
/// `destination_unavailable`, or `connection_refused` when its own connect
/// was refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hold_expires_with_503() {
    let dead = closed_port();
    let proxy = Proxy::with_endpoints(
        &[dead],
        "health:\n  interval: 1h\n  down_interval: 1h\nunavailable:\n  hold: 300ms\n",
    )
    .await;
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

    let flip = Flip::new();
    let app = TestUpstream::start(flip.handler()).await;
    let addr = app.addr;
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: [\"{addr}\"]\n  pool_max_idle_per_endpoint: 0\nhealth:\n  interval: 1h\n  down_interval: 1h\nunavailable:\n  hold: 300ms\n"
    ))
    .await;
    let e = proxy.endpoint(0);
    eventually(5, "up", || e.is_up()).await;
    drop(app);
    wait_refused(addr).await;
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

/// A request reset before any response triggers an immediate probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reset_before_response_triggers_an_immediate_probe() {
    let (addr, probes, _task) = crashy_app().await;
    let proxy = Proxy::with_endpoints(&[addr], CRASHY).await;
    let e = proxy.endpoint(0);
    eventually(5, "first probe: up", || e.is_up()).await;
    assert_eq!(probes.load(Ordering::SeqCst), 1);

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
    let (addr, probes, _task) = crashy_app().await;
    let proxy = Proxy::with_endpoints(&[addr], CRASHY).await;
    let e = proxy.endpoint(0);
    eventually(5, "first probe: up", || e.is_up()).await;
    assert_eq!(probes.load(Ordering::SeqCst), 1);

    let r = get(proxy.addr(), "/midbody").await;
    assert_eq!(r.status, 200);
    assert!(r.truncated, "the client sees a truncated body");
    eventually(2, "a probe right after the mid-response reset", || {
        probes.load(Ordering::SeqCst) >= 2
    })
    .await;
}

/// The "app endpoint up/down" log lines of a child lifeguard.
fn state_changes(p: &ProxyProcess) -> Vec<serde_json::Value> {
    p.json_logs()
        .into_iter()
        .filter(|v| v["message"] == "app endpoint up" || v["message"] == "app endpoint down")
        .collect()
}

/// Waits until at least `n` state-change lines were logged.
async fn wait_for(p: &ProxyProcess, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = state_changes(p);
        if c.len() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {c:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every state change is logged exactly once, with its reason: up (first
/// probe), down (refused; many more refused probes and requests follow),
/// up again (after `healthy_threshold` probes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_changes_are_logged_once_each() {
    let flip = Flip::new();
    let app = TestUpstream::start(flip.handler()).await;
    let addr = app.addr;
    let mut proxy = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{addr}\"]\nhealth:\n  interval: 20ms\n  down_interval: 20ms\nunavailable:\n  hold: 0s\n"
    ))
    .await;

    // Up from the first probe; many more probes change nothing.
    wait_for(&proxy, 1, "first up").await;
    let seen = flip.probes();
    eventually(5, "10 more probes", || flip.probes() >= seen + 10).await;
    assert_eq!(get(proxy.addr, "/x").await.status, 200);

    // Down: refused probes and refused/held requests, one log line.
    drop(app);
    wait_refused(addr).await;
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "/x").await.status, 503);
    }
    wait_for(&proxy, 2, "down").await;
    // ~15 more refused probe periods.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert_unavailable(&get(proxy.addr, "/x").await, "down");
    }

    // Up again after two good probes.
    let _app = TestUpstream::start_on(rebind(addr).await, flip.handler()).await;
    wait_for(&proxy, 3, "up again").await;
    let seen = flip.probes();
    eventually(5, "10 more probes", || flip.probes() >= seen + 10).await;
    assert_eq!(get(proxy.addr, "/x").await.status, 200);

    let c = state_changes(&proxy);
    let summary: Vec<(String, String, String, String)> = c
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("<missing>").to_owned();
            (s("message"), s("endpoint"), s("from"), s("reason"))
        })
        .collect();
    assert_eq!(summary.len(), 3, "one line per change: {summary:#?}");
    let ep = addr.to_string();
    assert_eq!(
        summary[0],
        (
            "app endpoint up".into(),
            ep.clone(),
            "Unknown".into(),
            "first probe answered 200".into()
        )
    );
    assert_eq!(
        (&summary[1].0, &summary[1].1, &summary[1].2),
        (&"app endpoint down".to_string(), &ep, &"Up".to_string())
    );
    assert!(
        summary[1].3 == "probe connection refused" || summary[1].3 == "request connect refused",
        "down reason: {}",
        summary[1].3
    );
    assert_eq!(
        summary[2],
        (
            "app endpoint up".into(),
            ep,
            "Down".into(),
            "probe answered 200 (2 in a row)".into()
        )
    );
    proxy.signal(libc::SIGKILL);
    let _ = proxy.wait_exit(5).await;
}
