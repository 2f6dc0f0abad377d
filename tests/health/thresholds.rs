//! Rise and fall thresholds and readiness, probe by probe: the gated app
//! hands every `/health` probe to the test, which answers it.

use super::{assert_unavailable, get, readyz};
use support::upstream::full;
use support::*;

use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::api::State;
use tokio::sync::{mpsc, oneshot};

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

// `expect_status: 200-399`: 4xx counts as a failure here (the default,
// any answer below 500, is tested in tests/first_run.rs).
const GATED: &str = "health:
  expect_status: 200-399
  interval: 10ms
  down_interval: 10ms
  timeout: 30s
  healthy_threshold: 3
  unhealthy_threshold: 2
  slow_start: 0s
unavailable:
  hold: 0s
";

/// A gated app behind a proxy on `GATED`, checked through requests.
struct Gated {
    gate: ProbeGate,
    proxy: Proxy,
    requests: Arc<AtomicUsize>,
    _app: TestUpstream,
}

impl Gated {
    /// The setup and its first probe, held.
    async fn start() -> (Gated, Pending) {
        let (app, mut gate, requests) = gated_app().await;
        let proxy = Proxy::with_endpoints(&[app.addr], GATED).await;
        let p = gate.next().await;
        let gated = Gated {
            gate,
            proxy,
            requests,
            _app: app,
        };
        (gated, p)
    }

    /// Answers `p` with `status`, then checks the routing (`assert_routing`
    /// with `up` and `what`); returns the next probe, held.
    async fn answer(&mut self, p: Pending, status: u16, up: bool, what: &str) -> Pending {
        let next = self.gate.answer(p, status).await;
        assert_routing(&self.proxy, &self.requests, up, what).await;
        next
    }
}

/// Rise needs `healthy_threshold` consecutive good probes, fall needs
/// `unhealthy_threshold` consecutive bad ones; the first probe decides at
/// once; with `expect_status: 200-399`, 2xx and 3xx are healthy, 4xx/5xx are
/// not. Observed through requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rise_and_fall_thresholds_seen_by_requests() {
    let (mut g, p) = Gated::start().await;
    assert_eq!(g.proxy.endpoint(0).state(), State::Unknown);
    assert_routing(&g.proxy, &g.requests, true, "not probed yet: routable").await;

    let p = g.answer(p, 204, true, "first probe 204: up").await;
    let p = g.answer(p, 500, true, "1 of 2 failures: still up").await;
    let p = g.answer(p, 500, false, "2 of 2 failures: down").await;
    let p = g.answer(p, 200, false, "1 of 3 successes").await;
    let p = g.answer(p, 302, false, "2 of 3 successes").await;
    let p = g.answer(p, 200, true, "3 of 3 successes: up").await;
    let p = g.answer(p, 404, true, "404 is 1 failure").await;
    let p = g.answer(p, 404, false, "404 twice: down").await;
    drop(p);
}

/// Results alternating below the thresholds change nothing, up or down.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flapping_below_thresholds_changes_nothing() {
    let (mut g, mut p) = Gated::start().await;
    p = g.answer(p, 200, true, "up").await;
    for i in 0..5 {
        p = g.answer(p, 503, true, &format!("up, flap {i} (bad)")).await;
        p = g
            .answer(p, 200, true, &format!("up, flap {i} (good)"))
            .await;
    }
    p = g.gate.answer(p, 503).await;
    p = g.answer(p, 503, false, "two failures in a row: down").await;
    for i in 0..4 {
        p = g
            .answer(p, 200, false, &format!("down, flap {i} (1 ok)"))
            .await;
        p = g
            .answer(p, 200, false, &format!("down, flap {i} (2 ok)"))
            .await;
        p = g
            .answer(p, 500, false, &format!("down, flap {i} (bad)"))
            .await;
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
