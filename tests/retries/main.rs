//! Safe retries: what is resent after the app died with a request on it (only
//! idempotent or idempotency-keyed requests with a buffered body, at most
//! `retry.attempts` times, within the retry budget), what waits in the hold
//! while the app restarts, and what is never resent (POST, streamed bodies,
//! timeouts, bad responses).

mod limits;
mod resent;
mod restart;

use support::upstream::{full, TestBody};
use support::*;

use http::{Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Sends one request (with `Content-Length` when `body` is not empty) on a
/// fresh client connection.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> RawResponse {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}");
    if !body.is_empty() || !matches!(method, "GET" | "HEAD" | "DELETE") {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw_exchange(addr, &bytes, 15).await.response()
}

async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    send(addr, "GET", path, "", b"").await
}

fn proxy_status(r: &RawResponse) -> &str {
    r.header("proxy-status").unwrap_or("<none>")
}

/// lifeguard's answer for a request it sent and that the app dropped.
fn assert_terminated(r: &RawResponse, outcome_unknown: bool, what: &str) {
    assert_eq!(r.status, 503, "{what}: {}", r.body_text());
    assert_eq!(r.header("connection"), Some("close"), "{what}");
    assert!(r.header("retry-after").is_some(), "{what}");
    let ps = proxy_status(r);
    if outcome_unknown {
        assert!(
            ps.starts_with("lifeguard; error=connection_terminated; details=")
                && ps.contains("outcome unknown"),
            "{what}: {ps}"
        );
    } else {
        assert_eq!(ps, "lifeguard; error=connection_terminated", "{what}");
    }
}

/// An app answering everything 200, counting requests other than probes.
async fn counting_app() -> (TestUpstream, Arc<AtomicUsize>) {
    let n = Arc::new(AtomicUsize::new(0));
    let c = n.clone();
    let app = TestUpstream::start(move |req: Request<Incoming>| {
        let c = c.clone();
        async move {
            if req.uri().path() != "/health" {
                c.fetch_add(1, Ordering::SeqCst);
            }
            Response::<TestBody>::new(full("ok"))
        }
    })
    .await;
    (app, n)
}
