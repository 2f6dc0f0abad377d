//! The product's core promise, failure by failure: whenever the app cannot
//! answer, lifeguard answers for it (or retries where that is safe), and a
//! client connection never closes without an HTTP response once lifeguard
//! accepted a complete request.
use support::admin::inflight;
use support::doomed::{crash_mid_upload_app, path_scripted_app, DoomedApp};
use support::synth::{
    destination_unavailable, refused, terminated, terminated_unknown, TCP_PROBES,
};
use support::upstream::reset;
use support::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let e = proxy.endpoint(0);
    eventually(5, "the first probe sees the app up", || e.is_up()).await;
    drop(app); // the app dies: connects are refused from now on
    proxy
}

// ---------------------------------------------------------------------------
// connect refused (nothing sent)

#[tokio::test]
async fn refused_get_single_endpoint_is_503_connection_refused() {
    let hold = Duration::from_millis(300);
    let proxy = proxy_whose_app_just_died("  hold: 300ms\n").await;
    // Its own connect refused: the endpoint goes down, the request waits out
    // the hold for it to come back, then gets 503 connection_refused.
    let started = Instant::now();
    let r = send(proxy.addr(), &get("/refused")).await;
    assert_synthesized_html(&r, 503, &refused());
    assert!(started.elapsed() >= hold, "{:?}", started.elapsed());
    assert!(proxy.endpoint(0).is_down());
    // Known down now: the next request is not even tried after the hold.
    let started = Instant::now();
    let r = send(proxy.addr(), &get("/refused")).await;
    assert_synthesized_html(&r, 503, &destination_unavailable());
    assert!(started.elapsed() >= hold, "{:?}", started.elapsed());
}

#[tokio::test]
async fn refused_post_single_endpoint_is_503_connection_refused_without_details() {
    let proxy = proxy_whose_app_just_died("  hold: 0s\n").await;
    let r = send(proxy.addr(), &post("/refused", "payload")).await;
    // Nothing was sent, so the outcome is known: no "outcome unknown" detail.
    assert_synthesized_html(&r, 503, &refused());
    // Known down now: never sent either.
    let r = send(proxy.addr(), &post("/refused", "payload")).await;
    assert_synthesized_html(&r, 503, &destination_unavailable());
}

#[tokio::test]
async fn refused_endpoint_is_skipped_for_get_and_post() {
    for method in ["GET", "POST"] {
        // Both endpoints were seen up by their first (TCP) probe, the next
        // one is an hour away, and the first endpoint's app has died since:
        // the first request sent there is refused and, nothing having been
        // sent, goes to the other endpoint, whatever its method.
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let app = TestUpstream::echo().await;
        let proxy = Proxy::with_endpoints(
            &[gone.local_addr().unwrap(), app.addr],
            "health:\n  mode: tcp\n  interval: 1h\n",
        )
        .await;
        let (dead, live) = (proxy.endpoint(0), proxy.endpoint(1));
        eventually(5, "both endpoints seen up", || dead.is_up() && live.is_up()).await;
        drop(gone);
        // Several, so the dead endpoint is picked whatever the tie-breaking
        // order; once refused it is down and skipped without a connect.
        for i in 0..6 {
            let body = "x".repeat(10 + i);
            let r = if method == "GET" {
                send(proxy.addr(), &get(&format!("/get{i}"))).await
            } else {
                send(proxy.addr(), &post(&format!("/post{i}"), &body)).await
            };
            assert_eq!(r.status, 200, "{method} {i}: {r:?}");
            let v = echo_json(&r);
            assert_eq!(v["method"], method);
            if method == "POST" {
                assert_eq!(v["path"], format!("/post{i}"));
                assert_eq!(v["body_len"], body.len());
            } else {
                assert_eq!(v["path"], format!("/get{i}"));
            }
        }
        assert!(dead.is_down(), "{method}");
        assert_eq!(
            dead.health().last_reason,
            "request connect refused",
            "{method}: a request found the dead endpoint"
        );
        assert_eq!(app.hits(), 6, "{method}");
    }
}

// ---------------------------------------------------------------------------
// request sent, app closed (FIN) or reset (RST) before response headers

/// Sends `make(i)` until the scripted (dead) endpoint has seen one request,
/// checking every answer; returns the answer to the request that hit it.
async fn until_dead_hit(
    proxy: &Proxy,
    dead: &ScriptedUpstream,
    mut make: impl FnMut(usize) -> Vec<u8>,
) -> (RawResponse, usize) {
    for i in 0..6 {
        let before = dead.requests();
        let r = send(proxy.addr(), &make(i)).await;
        if dead.requests() > before {
            return (r, i + 1);
        }
        assert_eq!(r.status, 200, "healthy endpoint answered: {r:?}");
    }
    panic!("the dead endpoint was never picked in 6 requests");
}

#[tokio::test]
async fn get_reset_after_send_is_retried_once_on_the_other_endpoint() {
    let dead = ScriptedUpstream::start(Script::Reset).await;
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(&[dead.addr, app.addr], TCP_PROBES).await;
    let (r, sent) = until_dead_hit(&proxy, &dead, |i| get(&format!("/r{i}"))).await;
    assert_eq!(r.status, 200, "retried GET must succeed: {r:?}");
    assert_eq!(echo_json(&r)["method"], "GET");
    assert_eq!(dead.requests(), 1);
    assert_eq!(
        app.hits(),
        sent,
        "every request answered by the healthy app"
    );
}

#[tokio::test]
async fn get_closed_after_send_is_retried_once_on_the_other_endpoint() {
    let dead = ScriptedUpstream::start(Script::Close).await;
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(&[dead.addr, app.addr], TCP_PROBES).await;
    let (r, sent) = until_dead_hit(&proxy, &dead, |i| get(&format!("/c{i}"))).await;
    assert_eq!(r.status, 200, "retried GET must succeed: {r:?}");
    assert_eq!(dead.requests(), 1);
    assert_eq!(app.hits(), sent);
}

#[tokio::test]
async fn put_and_delete_reset_after_send_are_retried_with_their_body() {
    let body = "put-body-0123456789";
    for method in ["PUT", "DELETE"] {
        // A fresh proxy per method: the dead endpoint is new to it.
        let dead = ScriptedUpstream::start(Script::Reset).await;
        let app = TestUpstream::echo().await;
        let proxy = Proxy::with_endpoints(&[dead.addr, app.addr], TCP_PROBES).await;
        let b = if method == "PUT" { body } else { "" };
        let (r, sent) =
            until_dead_hit(&proxy, &dead, |i| request(method, &format!("/r{i}"), "", b)).await;
        assert_eq!(r.status, 200, "{method}: {r:?}");
        let v = echo_json(&r);
        assert_eq!(v["method"], method);
        assert_eq!(
            v["body_len"],
            b.len(),
            "{method}: the retry must carry the body"
        );
        assert_eq!(dead.requests(), 1, "{method}");
        assert_eq!(app.hits(), sent, "{method}");
    }
}

#[tokio::test]
async fn get_is_retried_at_most_once() {
    // `retry.attempts` bounds the resends: 1 here, then the default of 2.
    // Each resend prefers an endpoint the request has not failed on yet.
    for (config, attempts) in [("retry:\n  attempts: 1\n", 1), ("", 2)] {
        let a = ScriptedUpstream::start(Script::Reset).await;
        let b = ScriptedUpstream::start(Script::Close).await;
        let c = ScriptedUpstream::start(Script::Reset).await;
        let proxy =
            Proxy::with_endpoints(&[a.addr, b.addr, c.addr], &format!("{TCP_PROBES}{config}"))
                .await;
        let r = send(proxy.addr(), &get("/twice")).await;
        assert_synthesized_html(&r, 503, &terminated());
        let counts = [a.requests(), b.requests(), c.requests()];
        assert_eq!(
            counts.iter().sum::<usize>(),
            1 + attempts,
            "one attempt and exactly {attempts} resend(s): {counts:?}"
        );
        assert!(
            counts.iter().all(|&n| n <= 1),
            "each attempt on a different endpoint: {counts:?}"
        );
    }
}

#[tokio::test]
async fn post_reset_after_send_is_never_resent() {
    let dead = ScriptedUpstream::start(Script::Reset).await;
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(&[dead.addr, app.addr], TCP_PROBES).await;
    let (r, sent) =
        until_dead_hit(&proxy, &dead, |i| post(&format!("/order{i}"), "{\"n\":1}")).await;
    assert_synthesized_html(&r, 503, &terminated_unknown());
    assert_eq!(dead.requests(), 1, "the POST reached the app exactly once");
    assert_eq!(
        app.hits(),
        sent - 1,
        "the POST that hit the dead app must not be resent to the healthy one"
    );
}

#[tokio::test]
async fn patch_closed_after_send_is_never_resent() {
    let dead = ScriptedUpstream::start(Script::Close).await;
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(&[dead.addr, app.addr], TCP_PROBES).await;
    let (r, sent) = until_dead_hit(&proxy, &dead, |i| {
        request("PATCH", &format!("/p{i}"), "", "{}")
    })
    .await;
    assert_synthesized_html(&r, 503, &terminated_unknown());
    assert_eq!(dead.requests(), 1);
    assert_eq!(app.hits(), sent - 1);
}

#[tokio::test]
async fn post_and_patch_reset_or_closed_single_endpoint_is_503_outcome_unknown() {
    for script in [Script::Reset, Script::Close] {
        let dead = ScriptedUpstream::start(script.clone()).await;
        let proxy = Proxy::with_endpoints(&[dead.addr], TCP_PROBES).await;
        let r = send(proxy.addr(), &post("/pay", "amount=10")).await;
        assert_synthesized_html(&r, 503, &terminated_unknown());
        assert_eq!(dead.requests(), 1, "{script:?}: POST delivered once");
        let r = send(proxy.addr(), &request("PATCH", "/pay", "", "a=1")).await;
        assert_synthesized_html(&r, 503, &terminated_unknown());
        assert_eq!(dead.requests(), 2, "{script:?}: PATCH delivered once");
    }
}

#[tokio::test]
async fn get_and_head_reset_or_closed_single_endpoint_is_503_connection_terminated() {
    for script in [Script::Reset, Script::Close] {
        for method in ["GET", "HEAD"] {
            // A proxy per request: each has the retry budget's floor (3) to
            // itself, more than the default `retry.attempts` (2).
            let dead = ScriptedUpstream::start(script.clone()).await;
            let proxy = Proxy::with_endpoints(&[dead.addr], TCP_PROBES).await;
            let r = send(proxy.addr(), &request(method, "/page", "", "")).await;
            if method == "GET" {
                assert_synthesized_html(&r, 503, &terminated());
            } else {
                assert_synthesized(&r, 503, &terminated());
            }
            // The only endpoint stays up (it accepts connections), so both
            // resends go to it: sent once and resent `retry.attempts` times.
            assert_eq!(dead.requests(), 3, "{script:?} {method}");
        }
    }
}

// ---------------------------------------------------------------------------
// no response headers within app.response_timeout

#[tokio::test]
async fn no_response_headers_within_response_timeout_is_504() {
    let stall = ScriptedUpstream::start(Script::Stall).await;
    let proxy = Proxy::with_endpoints(
        &[stall.addr],
        &format!("  response_timeout: 300ms\n{TCP_PROBES}"),
    )
    .await;
    let started = Instant::now();
    let r = send(proxy.addr(), &get("/stall")).await;
    let took = started.elapsed();
    assert_synthesized_html(&r, 504, "lifeguard; error=http_response_timeout");
    assert!(
        took >= Duration::from_millis(300),
        "answered too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "answered too late: {took:?}");

    let r = send(proxy.addr(), &post("/stall", "data")).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("5"));
    let ps = r.header("proxy-status").unwrap_or_default();
    assert!(
        ps.starts_with("lifeguard; error=http_response_timeout"),
        "{ps}"
    );
    assert_eq!(stall.requests(), 2, "a timed-out GET is not retried either");
}

// ---------------------------------------------------------------------------
// app sent an unparseable response

#[tokio::test]
async fn unparseable_response_is_502_http_protocol_error() {
    let garbage: [&'static [u8]; 3] = [
        b"HELLO I AM NOT HTTP\r\n\r\n",
        b"HTTP/1.1 abc Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n",
    ];
    for bytes in garbage {
        let app = ScriptedUpstream::start(Script::Raw(bytes)).await;
        let proxy = Proxy::with_endpoints(&[app.addr], TCP_PROBES).await;
        let r = send(proxy.addr(), &get("/g")).await;
        assert_synthesized_html(&r, 502, "lifeguard; error=http_protocol_error");
        let r = send(proxy.addr(), &post("/g", "x")).await;
        assert_eq!(r.status, 502, "{r:?}");
        assert_eq!(r.header("connection"), Some("close"));
        let ps = r.header("proxy-status").unwrap_or_default();
        assert!(
            ps.starts_with("lifeguard; error=http_protocol_error"),
            "{ps}"
        );
        assert_eq!(app.requests(), 2);
    }
}

// ---------------------------------------------------------------------------
// app died after response headers went out

#[tokio::test]
async fn death_after_response_headers_truncates_content_length_body() {
    let app = ScriptedUpstream::start(Script::RawThenReset(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\nhello",
    ))
    .await;
    let proxy = Proxy::with_endpoints(&[app.addr], TCP_PROBES).await;
    let r = send(proxy.addr(), &get("/partial")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("100"), "{r:?}");
    assert!(r.truncated, "must look truncated, not complete: {r:?}");
    assert!(r.body.len() < 100, "{r:?}");
    assert!(b"hello".starts_with(&r.body), "{r:?}");
    assert_eq!(app.requests(), 1, "never retried once the response started");
}

#[tokio::test]
async fn death_after_response_headers_truncates_chunked_body() {
    let app = ScriptedUpstream::start(Script::RawThenReset(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    ))
    .await;
    let proxy = Proxy::with_endpoints(&[app.addr], TCP_PROBES).await;
    let r = send(proxy.addr(), &get("/partial")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
        "{r:?}"
    );
    assert!(r.truncated, "terminating chunk must be missing: {r:?}");
    assert!(b"hello".starts_with(&r.body), "{r:?}");
    assert_eq!(app.requests(), 1);
}

// ---------------------------------------------------------------------------
// client went away mid-request

/// A raw app: requests to `/hang...` are held (never answered; `/hang-body...`
/// gets response headers and the start of a long body) until the peer closes
/// the connection, which is counted; anything else gets 200 "ok".
struct HangingApp {
    addr: SocketAddr,
    /// Request heads of `/hang...` requests received.
    heads: Arc<AtomicUsize>,
    /// `/hang...` connections the peer (lifeguard) closed.
    closed: Arc<AtomicUsize>,
    _app: RawApp,
}

impl HangingApp {
    async fn start() -> HangingApp {
        let heads = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (h, c) = (heads.clone(), closed.clone());
        let app = RawApp::start(move |s| serve_hanging(s, h.clone(), c.clone())).await;
        HangingApp {
            addr: app.addr,
            heads,
            closed,
            _app: app,
        }
    }
}

async fn serve_hanging(mut s: TcpStream, heads: Arc<AtomicUsize>, closed: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        if path.starts_with("/hang") {
            heads.fetch_add(1, Ordering::SeqCst);
            if path.starts_with("/hang-body") {
                // Response headers and a little of a long body, then nothing.
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst-part")
                    .await;
            }
            // Hold the request; read (and discard) until the peer closes.
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
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

#[tokio::test]
async fn client_gone_mid_request_cancels_upstream_and_clears_inflight() {
    let app = HangingApp::start().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(&get("/hang/get")).await.unwrap();
    let heads = app.heads.clone();
    eventually(5, "request reaches the app", || {
        heads.load(Ordering::SeqCst) == 1
    })
    .await;
    inflight_until(&proxy, "the request listed in flight", |l| {
        l.len() == 1 && l[0]["path"] == "/hang/get" && l[0]["method"] == "GET"
    })
    .await;

    drop(client); // the client goes away
    let closed = app.closed.clone();
    eventually(5, "lifeguard closes the app connection", || {
        closed.load(Ordering::SeqCst) == 1
    })
    .await;
    inflight_until(&proxy, "/admin/inflight empty", |l| l.is_empty()).await;
    assert_eq!(
        inflight(proxy.admin()).await,
        Vec::<serde_json::Value>::new()
    );

    // Still serving.
    let r = send(proxy.addr(), &get("/after")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), "ok");
}

#[tokio::test]
async fn client_gone_mid_upload_cancels_upstream_and_clears_inflight() {
    let app = HangingApp::start().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client
        .write_all(b"POST /hang/upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\nfirst-bytes")
        .await
        .unwrap();
    let heads = app.heads.clone();
    eventually(5, "upload head reaches the app", || {
        heads.load(Ordering::SeqCst) == 1
    })
    .await;
    inflight_until(&proxy, "the upload listed in flight", |l| {
        l.len() == 1 && l[0]["path"] == "/hang/upload" && l[0]["method"] == "POST"
    })
    .await;

    reset(client); // the client goes away abruptly mid-body
    let closed = app.closed.clone();
    eventually(5, "lifeguard closes the app connection", || {
        closed.load(Ordering::SeqCst) == 1
    })
    .await;
    inflight_until(&proxy, "/admin/inflight empty", |l| l.is_empty()).await;

    let r = send(proxy.addr(), &get("/after")).await;
    assert_eq!(r.status, 200, "{r:?}");
}

// ---------------------------------------------------------------------------
// what every synthesized 5xx carries

#[tokio::test]
async fn retry_after_is_configurable() {
    let proxy = proxy_whose_app_just_died("  hold: 0s\n  retry_after: 7s\n").await;
    let r = send(proxy.addr(), &get("/x")).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("7"), "{r:?}");
    assert_eq!(r.header("proxy-status"), Some(refused().as_str()));
    assert_eq!(r.header("connection"), Some("close"));
    // Known down: destination_unavailable, with the same Retry-After.
    let r = send(proxy.addr(), &get("/x")).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("7"), "{r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some(destination_unavailable().as_str())
    );

    let dead = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(
        &[dead.addr],
        &format!("{TCP_PROBES}unavailable:\n  retry_after: 7s\n"),
    )
    .await;
    let r = send(proxy.addr(), &post("/x", "1")).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some("7"), "{r:?}");
}

#[tokio::test]
async fn client_request_id_is_echoed_and_one_is_generated_otherwise() {
    let dead = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(&[dead.addr], TCP_PROBES).await;
    let r = send(
        proxy.addr(),
        &request("POST", "/id", "X-Request-Id: client-id-42\r\n", "b"),
    )
    .await;
    assert_synthesized_html(&r, 503, &terminated_unknown());
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));
    assert!(r.body_text().contains("client-id-42"));

    let a = send(proxy.addr(), &get("/id")).await;
    let b = send(proxy.addr(), &get("/id")).await;
    let (ia, ib) = (a.header("x-request-id"), b.header("x-request-id"));
    assert!(ia.is_some_and(|v| !v.is_empty()), "{a:?}");
    assert_ne!(ia, ib, "generated ids must be unique");
}

#[tokio::test]
async fn json_body_when_client_accepts_json() {
    let proxy = proxy_whose_app_just_died("  hold: 0s\n").await;
    let r = send(
        proxy.addr(),
        &request(
            "GET",
            "/api",
            "Accept: application/json\r\nX-Request-Id: j-1\r\n",
            "",
        ),
    )
    .await;
    assert_synthesized(&r, 503, &refused());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(v["status"], 503, "{v}");
    assert_eq!(v["error"], "connection_refused", "{v}");
    assert_eq!(v["request_id"], "j-1", "{v}");
    assert_eq!(v["outcome_unknown"], false, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");

    let dead = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(&[dead.addr], TCP_PROBES).await;
    let r = send(
        proxy.addr(),
        &request("POST", "/api", "Accept: application/json\r\n", "{}"),
    )
    .await;
    assert_synthesized(&r, 503, &terminated_unknown());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(v["status"], 503, "{v}");
    assert_eq!(v["error"], "connection_terminated", "{v}");
    assert_eq!(v["outcome_unknown"], true, "{v}");
    assert_eq!(
        v["request_id"].as_str(),
        r.header("x-request-id"),
        "body and header name the same request"
    );
}

#[tokio::test]
async fn synthesized_response_closes_the_client_connection() {
    let dead = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(&[dead.addr], TCP_PROBES).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    // A keep-alive request: lifeguard must still close after its 503.
    s.write_all(&post("/ka", "1")).await.unwrap();
    let r = support::client::read_response(&mut s, 5, false)
        .await
        .response();
    assert_synthesized(&r, 503, &terminated_unknown());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))) || matches!(read, Ok(Err(_))),
        "connection must close after the synthesized response: {read:?} {rest:?}"
    );
}

// ---------------------------------------------------------------------------
// the invariant: never closed without a response

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_posts_against_a_resetting_app_always_get_503() {
    let dead = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(&[dead.addr], TCP_PROBES).await;
    for i in 0..50 {
        match raw_exchange(proxy.addr(), &post(&format!("/seq{i}"), "body"), 10).await {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &terminated_unknown()),
            other => panic!("sequential POST {i}: {other:?}"),
        }
    }
    assert_eq!(dead.requests(), 50, "each POST delivered exactly once");

    let addr = proxy.addr();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                raw_exchange(addr, &post(&format!("/conc{i}"), "body"), 10).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &terminated_unknown()),
            other => panic!("concurrent POST {i}: {other:?}"),
        }
    }
    assert_eq!(dead.requests(), 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_every_failure_mode_answers_every_method() {
    let modes: Vec<(Script, u16)> = vec![
        (Script::Reset, 503),
        (Script::Close, 503),
        (Script::Raw(b"SPEAKING NONSENSE\r\n\r\n"), 502),
        (Script::Stall, 504),
    ];
    let methods = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH"];
    // GET, HEAD, OPTIONS, PUT and DELETE are resent once (`retry.attempts:
    // 1`) after a reset or close, never after a timeout or a bad response; a
    // budget of 100 % of the requests covers one resend per request.
    let resendable = 5;
    for (script, status) in modes {
        let dead = ScriptedUpstream::start(script.clone()).await;
        let proxy = Proxy::with_endpoints(
            &[dead.addr],
            &format!(
                "  response_timeout: 200ms\n{TCP_PROBES}retry:\n  attempts: 1\n  budget_percent: 100\n"
            ),
        )
        .await;
        let addr = proxy.addr();
        let tasks: Vec<_> = methods
            .iter()
            .flat_map(|m| (0..3).map(move |i| (*m, i)))
            .map(|(m, i)| {
                tokio::spawn(async move {
                    let body = if matches!(m, "POST" | "PUT" | "PATCH") {
                        "data"
                    } else {
                        ""
                    };
                    (
                        m,
                        raw_exchange(addr, &request(m, &format!("/m{i}"), "", body), 10).await,
                    )
                })
            })
            .collect();
        for t in tasks {
            let (m, outcome) = t.await.unwrap();
            match outcome {
                RawOutcome::Response(r) => {
                    assert_eq!(r.status, status, "{script:?} {m}: {r:?}");
                    assert_eq!(r.header("connection"), Some("close"), "{script:?} {m}");
                    assert!(r.header("proxy-status").is_some(), "{script:?} {m}");
                    assert!(r.header("retry-after").is_some(), "{script:?} {m}");
                }
                other => panic!("{script:?} {m}: {other:?}"),
            }
        }
        let resent = if status == 503 { resendable * 3 } else { 0 };
        assert_eq!(dead.requests(), methods.len() * 3 + resent, "{script:?}");
    }
}

// ---------------------------------------------------------------------------
// crash forensics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_with_requests_in_flight_logs_one_event_naming_them_all() {
    let app = DoomedApp::start().await;
    let proxy = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\"]\n{TCP_PROBES}",
        app.addr
    ))
    .await;
    let addr = proxy.addr;
    let reqs = [
        ("GET", "/a", "crash-a"),
        ("POST", "/b", "crash-b"),
        ("GET", "/c", "crash-c"),
    ];
    let tasks: Vec<_> = reqs
        .iter()
        .map(|&(m, p, id)| {
            let body = if m == "POST" { "order=1" } else { "" };
            let bytes = request(m, p, &format!("X-Request-Id: {id}\r\n"), body);
            tokio::spawn(async move { raw_exchange(addr, &bytes, 10).await })
        })
        .collect();
    eventually(5, "3 requests in flight on the app", || app.held() == 3).await;
    app.crash();

    for ((m, p, id), t) in reqs.iter().zip(tasks) {
        let r = match t.await.unwrap() {
            RawOutcome::Response(r) => r,
            other => panic!("{m} {p}: {other:?}"),
        };
        let ps = if *m == "POST" {
            terminated_unknown()
        } else {
            terminated()
        };
        assert_synthesized(&r, 503, &ps);
        assert_eq!(r.header("x-request-id"), Some(*id));
    }

    // The access-log events come after the crash event; once all three are
    // in, every crash event is too.
    let access_done = || {
        proxy
            .json_logs()
            .iter()
            .filter(|v| v["target"] == "access" && v["status"] == 503)
            .count()
            == 3
    };
    eventually(5, "three access-log events", access_done).await;
    let events = proxy.events("app_connection_lost");
    assert_eq!(events.len(), 1, "exactly one crash event: {events:#?}");
    let e = &events[0];
    let endpoint = app.addr.to_string();
    assert_eq!(e["endpoint"], endpoint.as_str(), "{e}");
    assert_eq!(e["trigger"], "reset_before_response", "{e}");
    assert_eq!(e["in_flight"], 3, "{e}");
    let requests: Vec<serde_json::Value> =
        serde_json::from_str(e["requests"].as_str().expect("requests is a JSON string"))
            .expect("requests parses as JSON");
    let mut seen: Vec<(String, String, String)> = requests
        .iter()
        .map(|r| {
            for field in [
                "id",
                "method",
                "path",
                "endpoint",
                "age_ms",
                "client",
                "bytes_sent",
            ] {
                assert!(!r[field].is_null(), "{field} missing in {r}");
            }
            assert_eq!(r["endpoint"], endpoint.as_str(), "{r}");
            if r["path"] == "/b" {
                assert_eq!(r["bytes_sent"], 7, "the POST body was forwarded: {r}");
            }
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    let expected: Vec<(String, String, String)> = reqs
        .iter()
        .map(|(m, p, id)| (m.to_string(), p.to_string(), id.to_string()))
        .collect();
    assert_eq!(seen, expected);
}

// ---------------------------------------------------------------------------
// more ways to die

#[tokio::test]
async fn get_reset_then_refused_retry_reports_the_sent_failure() {
    let dead = ScriptedUpstream::start(Script::Reset).await;
    // The second endpoint was seen up by its first probe (the next is an hour
    // away) and its app has died since: lifeguard learns it from a refused
    // request connect.
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = Proxy::with_endpoints(
        &[dead.addr, gone.local_addr().unwrap()],
        "health:\n  mode: tcp\n  interval: 1h\n",
    )
    .await;
    let (resetting, refusing) = (proxy.endpoint(0), proxy.endpoint(1));
    eventually(5, "both endpoints seen up", || {
        resetting.is_up() && refusing.is_up()
    })
    .await;
    drop(gone);
    // Whichever endpoint is tried first, the reset one is tried, and the
    // refused one too (its connect is what takes it down); the resends then
    // go to the only endpoint left up, and a failure after sending says more
    // than a refused connect.
    let r = send(proxy.addr(), &get("/both")).await;
    assert_synthesized_html(&r, 503, &terminated());
    assert_eq!(
        refusing.health().last_reason,
        "request connect refused",
        "the GET was tried on the refusing endpoint"
    );
    assert!(refusing.is_down());
    assert_eq!(
        dead.requests(),
        3,
        "sent once and resent `retry.attempts` (2) times on the resetting endpoint"
    );
    let r = send(proxy.addr(), &post("/both", "p")).await;
    assert_synthesized_html(&r, 503, &terminated_unknown());
    assert_eq!(dead.requests(), 4, "the POST reached the app exactly once");
}

#[tokio::test]
async fn death_after_response_headers_truncates_close_delimited_body() {
    // A close-delimited body ended by a reset is not complete: lifeguard must
    // not turn it into a complete-looking response.
    let app = ScriptedUpstream::start(Script::RawThenReset(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\npartial",
    ))
    .await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let r = send(proxy.addr(), &get("/partial")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.truncated, "must look truncated, not complete: {r:?}");
    assert!(b"partial".starts_with(&r.body), "{r:?}");
}

#[tokio::test]
async fn expect_continue_and_chunked_posts_against_a_resetting_app_get_503() {
    let dead = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(&[dead.addr], TCP_PROBES).await;
    let r = send(
        proxy.addr(),
        &request("POST", "/expect", "Expect: 100-continue\r\n", "hello"),
    )
    .await;
    assert_synthesized(&r, 503, &terminated_unknown());
    let chunked = b"POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let r = send(proxy.addr(), chunked).await;
    assert_synthesized(&r, 503, &terminated_unknown());
    assert_eq!(dead.requests(), 2);
    inflight_until(&proxy, "/admin/inflight empty", |l| l.is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_crash_mid_upload_still_answers_the_client() {
    let (app, crashes, _running) = crash_mid_upload_app(64 * 1024).await;
    let proxy = Proxy::with_endpoints(&[app], TCP_PROBES).await;
    let total = 4 * 1024 * 1024;
    let s = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {total}\r\n\r\n");
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..total / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                return; // lifeguard stopped reading: expected once it answered
            }
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    writer.abort();
    assert_eq!(crashes.load(Ordering::SeqCst), 1);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 503 "),
        "the client must get a 503, got {read:?} after {} bytes: {text:?}",
        got.len()
    );
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("\r\nproxy-status: {}\r\n", terminated_unknown())),
        "{text}"
    );
    assert!(lower.contains("\r\nconnection: close\r\n"), "{text}");
}

/// The `app_connection_lost` events in `proxy`'s log once `access_events`
/// requests have been logged (an access-log event comes after any crash
/// event of its request).
async fn crash_events(proxy: &ProxyProcess, access_events: usize) -> Vec<serde_json::Value> {
    eventually(5, "access-log events", || {
        proxy
            .json_logs()
            .iter()
            .filter(|v| v["target"] == "access")
            .count()
            >= access_events
    })
    .await;
    proxy.events("app_connection_lost")
}

fn crash_paths(event: &serde_json::Value) -> Vec<String> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(event["requests"].as_str().expect("requests string")).unwrap();
    let mut paths: Vec<String> = list
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_event_names_only_the_requests_on_the_dead_endpoint() {
    let a = DoomedApp::start().await;
    let b = DoomedApp::start().await;
    let proxy = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\", \"{}\"]\n{TCP_PROBES}",
        a.addr, b.addr
    ))
    .await;
    let addr = proxy.addr;
    // POSTs: never retried, so each stays on the endpoint it was sent to.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move { raw_exchange(addr, &post(&format!("/p{i}"), "x"), 10).await })
        })
        .collect();
    eventually(5, "4 requests held by the two apps", || {
        a.held() + b.held() == 4
    })
    .await;
    let on_a = a.held();
    a.crash();
    eventually(5, "crash event for the first app", || {
        proxy
            .json_logs()
            .iter()
            .any(|v| v["event"] == "app_connection_lost")
    })
    .await;
    b.crash();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &terminated_unknown()),
            other => panic!("POST {i}: {other:?}"),
        }
    }
    let events = crash_events(&proxy, 4).await;
    let mut expected = Vec::new();
    if on_a > 0 {
        expected.push((a.addr.to_string(), on_a));
    }
    if on_a < 4 {
        expected.push((b.addr.to_string(), 4 - on_a));
    }
    let got: Vec<(String, usize)> = events
        .iter()
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap().to_owned(),
                e["in_flight"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(got, expected, "one event per dead app: {events:#?}");
    let mut all: Vec<String> = events.iter().flat_map(crash_paths).collect();
    all.sort();
    assert_eq!(all, ["/p0", "/p1", "/p2", "/p3"], "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_whose_both_apps_die_is_named_in_both_crash_events() {
    let a = ScriptedUpstream::start(Script::Reset).await;
    let b = ScriptedUpstream::start(Script::Reset).await;
    // One resend (`retry.attempts: 1`), which goes to the other endpoint.
    let proxy = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\", \"{}\"]\n{TCP_PROBES}retry:\n  attempts: 1\n",
        a.addr, b.addr
    ))
    .await;
    let r = raw_exchange(proxy.addr, &get("/twice"), 10)
        .await
        .response();
    assert_synthesized(&r, 503, &terminated());
    assert_eq!(
        (a.requests(), b.requests()),
        (1, 1),
        "tried on each app once"
    );
    let events = crash_events(&proxy, 1).await;
    let mut endpoints: Vec<String> = events
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap().to_owned())
        .collect();
    endpoints.sort();
    let mut expected = vec![a.addr.to_string(), b.addr.to_string()];
    expected.sort();
    assert_eq!(
        endpoints, expected,
        "each app that died with /twice in flight gets its event: {events:#?}"
    );
    for e in &events {
        assert_eq!(crash_paths(e), ["/twice"], "{e}");
    }
}

#[tokio::test]
async fn client_gone_mid_download_cancels_upstream_and_clears_inflight() {
    let app = HangingApp::start().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
    client.write_all(&get("/hang-body")).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(10).any(|w| w == b"first-part") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("response start within 5 s")
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 "), "{got:?}");

    drop(client); // the client goes away mid-download
    let closed = app.closed.clone();
    eventually(5, "lifeguard closes the app connection", || {
        closed.load(Ordering::SeqCst) == 1
    })
    .await;
    inflight_until(&proxy, "/admin/inflight empty", |l| l.is_empty()).await;
    let r = send(proxy.addr(), &get("/after")).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn keep_alive_client_gets_a_response_when_the_app_dies_on_a_later_request() {
    let (app, count, _running) = path_scripted_app().await;
    // A budget of 100 % of the requests: enough for both GETs' resends.
    let proxy = Proxy::with_endpoints(
        &[app],
        &format!("{TCP_PROBES}retry:\n  budget_percent: 100\n"),
    )
    .await;
    for (method, dying, ps) in [
        ("POST", "/die", terminated_unknown()),
        ("GET", "/die", terminated()),
        ("POST", "/close", terminated_unknown()),
        ("GET", "/close", terminated()),
    ] {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        for _ in 0..2 {
            s.write_all(&get("/ok")).await.unwrap();
            let r = support::client::read_response(&mut s, 5, false)
                .await
                .response();
            assert_eq!((r.status, r.body_text().as_str()), (200, "ok"), "{r:?}");
        }
        let before = count.load(Ordering::SeqCst);
        s.write_all(&request(
            method,
            dying,
            "",
            if method == "POST" { "p" } else { "" },
        ))
        .await
        .unwrap();
        match support::client::read_response(&mut s, 5, false).await {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &ps),
            other => panic!("{method} {dying} on a kept-alive connection: {other:?}"),
        }
        // The only endpoint stays up (it accepts connections): the GET is
        // resent to it `retry.attempts` (2) times, the POST never.
        let deliveries = if method == "GET" { 3 } else { 1 };
        assert_eq!(
            count.load(Ordering::SeqCst) - before,
            deliveries,
            "{method} {dying}: delivered {deliveries} time(s)"
        );
    }
    // HTTP/1.0 clients get an answer too.
    let r = send(
        proxy.addr(),
        b"POST /die HTTP/1.0\r\nHost: app.test\r\nContent-Length: 1\r\n\r\nx",
    )
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some(terminated_unknown().as_str())
    );
}

#[tokio::test]
async fn interim_or_partial_head_then_death_is_503_not_a_response() {
    let cases: [(Script, &str); 4] = [
        (
            Script::RawThenReset(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "100 then reset",
        ),
        (
            Script::RawThenReset(b"HTTP/1.1 200 OK\r\nContent-Le"),
            "half a head then reset",
        ),
        (
            Script::Raw(b"HTTP/1.1 200 OK\r\nContent-Le"),
            "half a head then FIN",
        ),
        (
            Script::Raw(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "100 then FIN",
        ),
    ];
    for (script, what) in cases {
        let app = ScriptedUpstream::start(script).await;
        let proxy = Proxy::with_endpoints(&[app.addr], TCP_PROBES).await;
        match raw_exchange(proxy.addr(), &get("/x"), 10).await {
            RawOutcome::Response(r) => {
                assert_eq!(r.status, 503, "{what}: {r:?}");
                assert_eq!(r.header("connection"), Some("close"), "{what}");
                assert_eq!(r.header("retry-after"), Some("5"), "{what}");
                assert_eq!(
                    r.header("proxy-status"),
                    Some(terminated().as_str()),
                    "{what}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        match raw_exchange(proxy.addr(), &post("/x", "p"), 10).await {
            RawOutcome::Response(r) => {
                assert_eq!(r.status, 503, "{what}: {r:?}");
                assert_eq!(
                    r.header("proxy-status"),
                    Some(terminated_unknown().as_str()),
                    "{what}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        // The GET was resent `retry.attempts` (2) times, the POST never.
        assert_eq!(app.requests(), 4, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_after_response_headers_logs_a_crash_event() {
    let app = ScriptedUpstream::start(Script::RawThenReset(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello",
    ))
    .await;
    let proxy = ProxyProcess::start(&format!("app:\n  endpoints: [\"{}\"]\n", app.addr)).await;
    let r = raw_exchange(proxy.addr, &get("/download"), 10)
        .await
        .response();
    assert_eq!(r.status, 200);
    assert!(r.truncated, "{r:?}");
    let events = crash_events(&proxy, 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["trigger"], "reset_after_response",
        "{:#}",
        events[0]
    );
    assert_eq!(events[0]["endpoint"], app.addr.to_string().as_str());
    assert_eq!(crash_paths(&events[0]), ["/download"]);
}
