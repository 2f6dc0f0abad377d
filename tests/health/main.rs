//! App health: active probes (rise/fall thresholds, timeouts, `down_interval`,
//! `tcp` mode), passive detection (refused connects, resets), readiness, and
//! the state-change log lines.
//!
//! Probe results are driven by the test: the gated app hands every `/health`
//! probe to the test, which answers it. While the test holds probe n+1, the
//! endpoint's state reflects exactly probes 1..n (lifeguard's prober records a
//! result before it sleeps and sends the next probe), so every check below is
//! synchronised on probe arrivals, not on sleeps.

mod logging;
mod passive;
mod probes;
mod thresholds;

use support::net::rebind;
use support::upstream::{full, TestBody};
use support::*;

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

    /// A new app answering as `handler` says, and its `Flip`.
    async fn start() -> (Flip, TestUpstream) {
        let flip = Flip::new();
        let app = TestUpstream::start(flip.handler()).await;
        (flip, app)
    }

    /// The same app started again on `addr` (once the old one is gone).
    async fn restart_on(&self, addr: SocketAddr) -> TestUpstream {
        TestUpstream::start_on(rebind(addr).await, self.handler()).await
    }

    fn probes(&self) -> usize {
        self.probes.load(Ordering::SeqCst)
    }
}
