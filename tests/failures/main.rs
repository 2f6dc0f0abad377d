//! The product's core promise, failure by failure: whenever the app cannot
//! answer, lifeguard answers for it (or retries where that is safe), and a
//! client connection never closes without an HTTP response once lifeguard
//! accepted a complete request.

mod after_headers;
mod bad_responses;
mod client_gone;
mod forensics;
mod invariant;
mod refused;
mod resets;
mod synthesized;

use support::admin::inflight;
use support::synth::TCP_PROBES;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;
use tokio::time::Instant;

/// A request with `headers` (each ending in CRLF) and, if non-empty, a body.
fn request(method: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    let len = if body.is_empty() && method != "POST" && method != "PUT" && method != "PATCH" {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\n{headers}{len}\r\n{body}").into_bytes()
}

fn get(path: &str) -> Vec<u8> {
    request("GET", path, "", "")
}

fn post(path: &str, body: &str) -> Vec<u8> {
    request("POST", path, "", body)
}

/// One exchange that must produce an HTTP response.
async fn send(addr: SocketAddr, req: &[u8]) -> RawResponse {
    match raw_exchange(addr, req, 10).await {
        RawOutcome::Response(r) => r,
        other => panic!(
            "{}: expected an HTTP response, got {other:?}",
            String::from_utf8_lossy(req).lines().next().unwrap_or("")
        ),
    }
}

/// Everything a response lifeguard synthesized for an app failure must carry.
#[track_caller]
fn assert_synthesized(r: &RawResponse, status: u16, proxy_status: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
    assert_eq!(r.header("proxy-status"), Some(proxy_status), "{r:?}");
    let id = r.header("x-request-id").unwrap_or_default();
    assert!(!id.is_empty(), "no x-request-id: {r:?}");
    assert!(!r.truncated, "{r:?}");
}

/// As `assert_synthesized`, plus the default HTML body naming the status and
/// the request id.
#[track_caller]
fn assert_synthesized_html(r: &RawResponse, status: u16, proxy_status: &str) {
    assert_synthesized(r, status, proxy_status);
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/html")),
        "{r:?}"
    );
    let body = r.body_text();
    assert!(body.contains(&status.to_string()), "{body}");
    assert!(
        body.contains(r.header("x-request-id").unwrap()),
        "request id missing from page: {body}"
    );
}

/// A dead endpoint following `script` and a healthy echo app, behind one
/// proxy probing with TCP.
async fn dead_and_healthy(script: Script) -> (ScriptedUpstream, TestUpstream, Proxy) {
    let dead = ScriptedUpstream::start(script).await;
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(&[dead.addr, app.addr], TCP_PROBES).await;
    (dead, app, proxy)
}

fn echo_json(r: &RawResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("echo body {e}: {r:?}"))
}

/// A proxy for one endpoint whose app was up (its first probe, a TCP one,
/// succeeded; the next is an hour away) and has died since: nothing listens
/// on its port any more and lifeguard does not know it yet, so the next
/// request's own connect is the one refused. `unavailable` holds the lines of
/// the `unavailable:` section.
async fn proxy_whose_app_just_died(unavailable: &str) -> Proxy {
    let app = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::with_endpoints(
        &[app.local_addr().unwrap()],
        &format!("health:\n  mode: tcp\n  interval: 1h\nunavailable:\n{unavailable}"),
    )
    .await;
    proxy
        .endpoint_up(0, "the first probe sees the app up")
        .await;
    drop(app); // the app dies: connects are refused from now on
    proxy
}

/// Polls `/admin/inflight` until it matches `cond`.
async fn inflight_until(proxy: &Proxy, what: &str, cond: impl Fn(&[serde_json::Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let list = inflight(proxy.admin()).await;
        if cond(&list) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
