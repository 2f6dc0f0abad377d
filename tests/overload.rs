//! Overload protection: `app.max_in_flight` with a bounded queue
//! (`app.queue_timeout`), least-outstanding balancing, and slow start after an
//! endpoint recovers.

use support::net::{kill_app, rebind};
use support::upstream::{full, TestBody};
use support::*;

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

// ---------------------------------------------------------------- helpers

async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    raw_exchange(addr, req.as_bytes(), 15).await.response()
}

/// A GET in the background, with how long it took.
fn spawn_get(addr: SocketAddr, path: String) -> JoinHandle<(RawResponse, Duration)> {
    tokio::spawn(async move {
        let started = Instant::now();
        let r = get(addr, &path).await;
        (r, started.elapsed())
    })
}

/// Concurrency as the app sees it (requests other than `/health`).
#[derive(Clone, Default)]
struct Load {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    total: Arc<AtomicUsize>,
    /// (arrival, concurrency right after it)
    arrivals: Arc<Mutex<Vec<(Instant, usize)>>>,
}

impl Load {
    fn enter(&self) {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        self.total.fetch_add(1, Ordering::SeqCst);
        self.arrivals.lock().unwrap().push((Instant::now(), n));
    }
    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }
    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
    fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
    /// The highest concurrency seen within `window` of the first arrival.
    fn max_within(&self, window: Duration) -> usize {
        let arrivals = self.arrivals.lock().unwrap();
        let t0 = arrivals[0].0;
        arrivals
            .iter()
            .filter(|(t, _)| *t <= t0 + window)
            .map(|(_, n)| *n)
            .max()
            .unwrap()
    }
}

/// An app whose requests (not probes) wait for a permit the test releases.
async fn gated_app(load: Load, gate: Arc<Semaphore>) -> TestUpstream {
    TestUpstream::start(move |req: Request<Incoming>| {
        let (load, gate) = (load.clone(), gate.clone());
        async move {
            if req.uri().path() != "/health" {
                load.enter();
                gate.acquire().await.unwrap().forget();
                load.leave();
            }
            Response::<TestBody>::new(full("ok"))
        }
    })
    .await
}

/// A gated app behind a proxy with `max_in_flight: 2` and `queue_timeout`,
/// its endpoint up.
async fn gated_proxy(queue_timeout: &str) -> (Load, Arc<Semaphore>, TestUpstream, Proxy) {
    let load = Load::default();
    let gate = Arc::new(Semaphore::new(0));
    let app = gated_app(load.clone(), gate.clone()).await;
    let config = format!("  max_in_flight: 2\n  queue_timeout: {queue_timeout}\n");
    let proxy = Proxy::with_endpoints(&[app.addr], &config).await;
    proxy.endpoint_up(0, "up").await;
    (load, gate, app, proxy)
}

/// Two requests held in the gated app: both slots of `max_in_flight: 2` taken.
async fn fill_both_slots(proxy: &Proxy, load: &Load) -> Vec<JoinHandle<(RawResponse, Duration)>> {
    let first: Vec<_> = (0..2)
        .map(|i| spawn_get(proxy.addr(), format!("/a{i}")))
        .collect();
    eventually(5, "2 requests in the app", || load.now() == 2).await;
    first
}

/// An app whose requests (not probes) take `delay`.
fn slow_handler(
    load: Load,
    delay: Duration,
) -> impl Fn(
    Request<Incoming>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<TestBody>> + Send>>
       + Clone
       + Send
       + Sync
       + 'static {
    move |req: Request<Incoming>| {
        let load = load.clone();
        Box::pin(async move {
            if req.uri().path() != "/health" {
                load.enter();
                tokio::time::sleep(delay).await;
                load.leave();
            }
            Response::new(full("ok"))
        })
    }
}

// ------------------------------------------------------------------ tests

/// `max_in_flight: 2`: the 3rd and 4th concurrent requests wait in the queue
/// and, when no slot frees within `queue_timeout`, get 503
/// `connection_limit_reached` with `Retry-After`; the app never sees more
/// than 2 at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn excess_requests_wait_then_get_connection_limit_reached() {
    let (load, gate, _app, proxy) = gated_proxy("200ms").await;
    let first = fill_both_slots(&proxy, &load).await;
    let extra: Vec<_> = (0..2)
        .map(|i| spawn_get(proxy.addr(), format!("/b{i}")))
        .collect();
    for t in extra {
        let (r, took) = t.await.unwrap();
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert_eq!(
            r.header("proxy-status"),
            Some("lifeguard; error=connection_limit_reached")
        );
        assert!(r.header("retry-after").is_some());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(
            took >= Duration::from_millis(190),
            "answered before queue_timeout: {took:?}"
        );
        assert!(
            took < Duration::from_secs(2),
            "queue_timeout overrun: {took:?}"
        );
    }
    assert_eq!(load.total(), 2, "the excess requests never reached the app");
    gate.add_permits(2);
    for t in first {
        assert_eq!(t.await.unwrap().0.status, 200);
    }
    assert_eq!(load.max(), 2);
}

/// A queued request is forwarded as soon as a slot frees within
/// `queue_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_request_is_served_when_a_slot_frees_in_time() {
    let (load, gate, _app, proxy) = gated_proxy("3s").await;
    let first = fill_both_slots(&proxy, &load).await;
    let queued = spawn_get(proxy.addr(), "/queued".into());
    // It waits (absence over 150 ms: nothing else can be observed).
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(load.total(), 2, "the 3rd request went past max_in_flight");
    assert!(!queued.is_finished(), "the 3rd request did not wait");

    gate.add_permits(1); // one of the first two finishes
    eventually(5, "the queued request reaches the app", || {
        load.total() == 3
    })
    .await;
    gate.add_permits(2);
    let (r, took) = queued.await.unwrap();
    assert_eq!(r.status, 200);
    assert!(took < Duration::from_secs(2), "{took:?}");
    for t in first {
        assert_eq!(t.await.unwrap().0.status, 200);
    }
    assert_eq!(load.max(), 2);
}

/// Least outstanding requests: with one endpoint slow, the fast one serves
/// most of the traffic (round robin would split it evenly).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn least_outstanding_favours_the_fast_endpoint() {
    let slow = Load::default();
    let fast = Load::default();
    let slow_app =
        TestUpstream::start(slow_handler(slow.clone(), Duration::from_millis(200))).await;
    let fast_app = TestUpstream::start(slow_handler(fast.clone(), Duration::from_millis(2))).await;
    let proxy = Proxy::with_endpoints(&[slow_app.addr, fast_app.addr], "").await;
    let (es, ef) = (proxy.endpoint(0), proxy.endpoint(1));
    eventually(5, "both up", || es.is_up() && ef.is_up()).await;

    let mut workers = Vec::new();
    for w in 0..6 {
        let p = proxy.addr();
        workers.push(tokio::spawn(async move {
            for i in 0..10 {
                assert_eq!(get(p, &format!("/w{w}/{i}")).await.status, 200);
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let (s, f) = (slow.total(), fast.total());
    eprintln!("slow endpoint {s}, fast endpoint {f}");
    assert_eq!(s + f, 60);
    assert!(
        f * 4 >= (s + f) * 3,
        "fast endpoint served {f} of {}, slow {s}: not least-outstanding",
        s + f
    );
}

/// The recovery scenario: the app (its requests take `delay`) dies, `n`
/// requests arrive and are held, the app comes back on the same port.
/// `app_config` goes on with the `app:` section, `slow_start` is the
/// health setting. Returns the app's load and the answers.
async fn burst_across_a_restart(
    delay: Duration,
    app_config: &str,
    slow_start: &str,
    n: usize,
) -> (Load, Vec<RawResponse>) {
    let load = Load::default();
    let handler = slow_handler(load.clone(), delay);
    let app = TestUpstream::start(handler.clone()).await;
    let addr = app.addr;
    let config = format!(
        "{app_config}health:\n  interval: 1h\n  down_interval: 50ms\n  healthy_threshold: 1\n  \
         slow_start: {slow_start}\nunavailable:\n  hold: 5s\n"
    );
    let proxy = Proxy::with_endpoints(&[addr], &config).await;
    let e = proxy.endpoint_up(0, "up").await;

    kill_app(app).await;
    let burst: Vec<_> = (0..n)
        .map(|i| spawn_get(proxy.addr(), format!("/burst/{i}")))
        .collect();
    eventually(5, "a refused request takes it down", || e.is_down()).await;
    let _app = TestUpstream::start_on(rebind(addr).await, handler).await;
    let mut answers = Vec::new();
    for t in burst {
        answers.push(t.await.unwrap().0);
    }
    (load, answers)
}

/// Runs the slow-start scenario: the app dies, 20 slow requests arrive and
/// are held, the app comes back on the same port. Returns the app's
/// concurrency: within the first 50 ms after the first request reached it,
/// and overall.
async fn recovery_burst(slow_start: &str) -> (usize, usize) {
    let (load, answers) = burst_across_a_restart(
        Duration::from_millis(800),
        "  queue_timeout: 5s\n",
        slow_start,
        20,
    )
    .await;
    for r in answers {
        assert_eq!(r.status, 200, "{:?}", r.header("proxy-status"));
    }
    assert_eq!(load.arrivals.lock().unwrap().len(), 20);
    let early = load.max_within(Duration::from_millis(50));
    eprintln!(
        "slow_start {slow_start}: early {early}, overall {}",
        load.max()
    );
    (early, load.max())
}

/// Slow start: right after recovery the app gets a request or two at a time,
/// then the cap rises (to 64 over `slow_start`, the burst is 20); with
/// `slow_start: 0s` the whole held burst arrives at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_start_ramps_concurrency_after_recovery() {
    let (early, overall) = recovery_burst("2s").await;
    assert!(
        (1..=3).contains(&early),
        "concurrency right after recovery: {early} (expected 1-3)"
    );
    assert!(
        overall >= 10,
        "concurrency never rose during slow start: {overall}"
    );

    let (early, overall) = recovery_burst("0s").await;
    assert_eq!(
        (early, overall),
        (20, 20),
        "without slow start the held burst arrives at once"
    );
}

/// Slow start also caps an endpoint with `max_in_flight`: it ramps from 1 to
/// that limit, never above.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_start_ramps_to_max_in_flight() {
    let app_config = "  max_in_flight: 4\n  queue_timeout: 5s\n";
    let (load, answers) =
        burst_across_a_restart(Duration::from_millis(300), app_config, "1s", 12).await;
    for r in answers {
        assert_eq!(r.status, 200);
    }
    let early = load.max_within(Duration::from_millis(100));
    assert_eq!(early, 1, "cap 1 (+3 over 1 s) right after recovery");
    assert_eq!(load.max(), 4, "ramps up to max_in_flight, never above");
}
