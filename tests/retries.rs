//! Safe retries: what is resent after the app died with a request on it (only
//! idempotent or idempotency-keyed requests with a buffered body, at most
//! `retry.attempts` times, within the retry budget), what waits in the hold
//! while the app restarts, and what is never resent (POST, streamed bodies,
//! timeouts, bad responses).

use support::net::wait_refused;
use support::upstream::{full, TestBody};
use support::*;

use http::{Request, Response};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

// ---------------------------------------------------------------- helpers

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

fn list(addrs: &[SocketAddr]) -> String {
    let v: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", v.join(", "))
}

// ------------------------------------------------------ the restartable app

fn restartable_js() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/restartable.js")
}

/// Starts `tests/apps/restartable.js` on `port` and waits until it listens.
async fn start_node(port: u16, log: &Path, stall: bool) -> Child {
    let mut cmd = Command::new("node");
    cmd.arg(restartable_js())
        .arg(port.to_string())
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if stall {
        cmd.arg("stall");
    }
    let mut child = cmd.spawn().expect("spawn node (node 20 must be installed)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("node app starts within 10s")
        .unwrap();
    assert_eq!(line.as_deref(), Some(format!("listening {port}").as_str()));
    child
}

/// How many times each "METHOD PATH" reached the app, over all incarnations.
fn deliveries(log: &PathBuf) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut m = HashMap::new();
    for line in text.lines() {
        *m.entry(line.to_owned()).or_insert(0) += 1;
    }
    m
}

// ------------------------------------------------------------------ tests

/// A real app process is killed (SIGKILL) with requests on it and restarted
/// on the same port ~300 ms later:
/// - GETs it was handling are resent to the new process and succeed;
/// - POSTs it was handling get 503 (outcome unknown) and reached it once;
/// - requests sent while it was down (GET and POST: not yet sent) wait in
///   the hold and succeed, delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn app_restart_during_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("deliveries.log");
    let port = closed_port().port();
    let app_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut node = start_node(port, &log, true).await;
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: [\"{app_addr}\"]\nhealth:\n  interval: 1s\n  down_interval: 50ms\n"
    ))
    .await;
    let e = proxy.endpoint(0);
    assert_eq!(get(proxy.addr(), "/warm").await.status, 200);

    // Requests the app is handling when it dies.
    let mut inflight = Vec::new();
    for i in 0..3 {
        let a = proxy.addr();
        inflight.push((
            format!("POST /stall/post-{i}"),
            tokio::spawn(async move {
                send(a, "POST", &format!("/stall/post-{i}"), "", b"order").await
            }),
        ));
    }
    for i in 0..2 {
        let a = proxy.addr();
        inflight.push((
            format!("GET /stall/get-{i}"),
            tokio::spawn(async move { get(a, &format!("/stall/get-{i}")).await }),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while deliveries(&log)
        .keys()
        .filter(|k| k.contains("/stall/"))
        .count()
        < 5
    {
        assert!(Instant::now() < deadline, "stalled requests reach the app");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    node.start_kill().unwrap();
    node.wait().await.unwrap();
    let killed = Instant::now();
    // The crash is noticed (reset requests trigger a probe, which is refused).
    eventually(5, "endpoint down after the crash", || e.is_down()).await;

    // Requests arriving while the app is down: not sent, held.
    let mut held = Vec::new();
    for i in 0..3 {
        let a = proxy.addr();
        held.push((
            format!("POST /down/post-{i}"),
            tokio::spawn(
                async move { send(a, "POST", &format!("/down/post-{i}"), "", b"order").await },
            ),
        ));
        let a = proxy.addr();
        held.push((
            format!("GET /down/get-{i}"),
            tokio::spawn(async move { get(a, &format!("/down/get-{i}")).await }),
        ));
    }

    tokio::time::sleep_until((killed + Duration::from_millis(300)).into()).await;
    let _node = start_node(port, &log, false).await;

    let mut results = HashMap::new();
    for (name, task) in inflight.into_iter().chain(held) {
        let r = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer"))
            .unwrap();
        results.insert(name, r);
    }
    let d = deliveries(&log);
    let count = |k: &str| d.get(k).copied().unwrap_or(0);
    for i in 0..3 {
        let k = format!("POST /stall/post-{i}");
        assert_terminated(&results[&k], true, &k);
        assert_eq!(count(&k), 1, "{k}: reached the app exactly once");
    }
    for i in 0..2 {
        let k = format!("GET /stall/get-{i}");
        assert_eq!(results[&k].status, 200, "{k}: resent to the restarted app");
        assert_eq!(count(&k), 2, "{k}: once per incarnation");
    }
    for i in 0..3 {
        for k in [format!("POST /down/post-{i}"), format!("GET /down/get-{i}")] {
            let r = &results[&k];
            assert_eq!(
                r.status,
                200,
                "{k}: held, then forwarded: {}",
                r.body_text()
            );
            assert_eq!(count(&k), 1, "{k}: delivered once");
        }
    }
}

/// Two endpoints, one killed after start (no probe notices: `interval: 1h`):
/// every GET succeeds (refused connects go to the other endpoint), and the
/// dead endpoint is marked down by the requests that tried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_requests_see_no_error_when_an_endpoint_dies() {
    let (a, a_hits) = counting_app().await;
    let (b, b_hits) = counting_app().await;
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: {}\nhealth:\n  interval: 1h\n",
        list(&[a.addr, b.addr])
    ))
    .await;
    let (ea, eb) = (proxy.endpoint(0), proxy.endpoint(1));
    eventually(5, "both up", || ea.is_up() && eb.is_up()).await;
    let a_addr = a.addr;
    drop(a);
    wait_refused(a_addr).await;

    let mut tasks = Vec::new();
    for w in 0..5 {
        let p = proxy.addr();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..10 {
                statuses.push(get(p, &format!("/w{w}/{i}")).await.status);
            }
            statuses
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), vec![200; 10]);
    }
    assert_eq!(b_hits.load(Ordering::SeqCst), 50, "each GET served once");
    assert_eq!(a_hits.load(Ordering::SeqCst), 0);
    assert!(ea.is_down(), "the dead endpoint was tried and marked down");
}

/// Two endpoints, one resetting every connection (probes too): 50 GETs, the
/// first fired right at start (racing the first probe), all succeed; the
/// resetting endpoint sees at most the few requests sent before a probe took
/// it down.
///
/// (The GETs are sequential on purpose: a burst sent before the first probe
/// lands mostly on the resetting endpoint — it fails fast, so it has the
/// fewest outstanding requests — and the retry budget, by design, lets only
/// 3 of them be resent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_requests_see_no_error_next_to_a_resetting_endpoint() {
    let bad = ScriptedUpstream::start(Script::Reset).await;
    let (good, good_hits) = counting_app().await;
    let proxy = Proxy::with_endpoints(&[bad.addr, good.addr], "").await;
    for i in 0..50 {
        let r = get(proxy.addr(), &format!("/g{i}")).await;
        assert_eq!(r.status, 200, "GET {i}: {:?}", r.header("proxy-status"));
    }
    assert_eq!(good_hits.load(Ordering::SeqCst), 50);
    assert!(
        bad.requests() <= 3,
        "{} requests reached the resetting endpoint",
        bad.requests()
    );
}

/// A connect failure sent nothing, so even a POST goes to the other endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_failure_is_retried_for_post() {
    let (a, a_hits) = counting_app().await;
    let (b, b_hits) = counting_app().await;
    // No pooled connections: the dead endpoint is met at connect time.
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: {}\n  pool_max_idle_per_endpoint: 0\nhealth:\n  interval: 1h\nunavailable:\n  hold: 0s\n",
        list(&[a.addr, b.addr])
    ))
    .await;
    let (ea, eb) = (proxy.endpoint(0), proxy.endpoint(1));
    eventually(5, "both up", || ea.is_up() && eb.is_up()).await;
    let a_addr = a.addr;
    drop(a);
    wait_refused(a_addr).await;
    for i in 0..4 {
        let r = send(proxy.addr(), "POST", &format!("/orders/{i}"), "", b"{}").await;
        assert_eq!(r.status, 200, "POST {i}: {}", r.body_text());
    }
    assert!(ea.is_down(), "a POST met the refused endpoint");
    assert_eq!(b_hits.load(Ordering::SeqCst), 4);
    assert_eq!(a_hits.load(Ordering::SeqCst), 0);
}

/// A POST the app drops is never resent: 503 with "outcome unknown",
/// delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn post_to_a_resetting_app_is_not_resent() {
    let bad = ScriptedUpstream::start(Script::Reset).await;
    let (good, good_hits) = counting_app().await;
    // tcp probes: the resetting endpoint stays up and keeps receiving requests.
    let proxy = Proxy::with_endpoints(
        &[bad.addr, good.addr],
        "health:\n  mode: tcp\nretry:\n  budget_percent: 100\n",
    )
    .await;
    let mut hit_bad = 0;
    for i in 0..6 {
        let before = (bad.requests(), good_hits.load(Ordering::SeqCst));
        let r = send(proxy.addr(), "POST", &format!("/p{i}"), "", b"order").await;
        let after = (bad.requests(), good_hits.load(Ordering::SeqCst));
        if after.0 > before.0 {
            hit_bad += 1;
            assert_terminated(&r, true, &format!("POST {i} on the resetting endpoint"));
            assert_eq!(
                after,
                (before.0 + 1, before.1),
                "POST {i}: delivered once, not resent"
            );
        } else {
            assert_eq!(r.status, 200, "POST {i}");
            assert_eq!(after, (before.0, before.1 + 1));
        }
    }
    assert!(hit_bad >= 1, "no POST was routed to the resetting endpoint");
}

/// With `retry.idempotency_key_header` configured, a POST carrying that
/// header is resent on the healthy endpoint; without the header it is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn post_with_idempotency_key_is_resent_on_the_healthy_endpoint() {
    let bad = ScriptedUpstream::start(Script::Reset).await;
    let (good, good_hits) = counting_app().await;
    let proxy = Proxy::with_endpoints(
        &[bad.addr, good.addr],
        "health:\n  mode: tcp\nretry:\n  budget_percent: 100\n  idempotency_key_header: Idempotency-Key\n",
    )
    .await;
    let mut keyed_on_bad = 0;
    let mut plain_on_bad = 0;
    for i in 0..6 {
        for keyed in [true, false] {
            let what = format!("POST {i} keyed={keyed}");
            let headers = if keyed {
                format!("Idempotency-Key: k-{i}\r\n")
            } else {
                String::new()
            };
            let before = (bad.requests(), good_hits.load(Ordering::SeqCst));
            let r = send(proxy.addr(), "POST", &format!("/p{i}"), &headers, b"order").await;
            let after = (bad.requests(), good_hits.load(Ordering::SeqCst));
            match (after.0 > before.0, keyed) {
                (true, true) => {
                    keyed_on_bad += 1;
                    assert_eq!(r.status, 200, "{what}: resent on the healthy endpoint");
                    assert_eq!(after, (before.0 + 1, before.1 + 1), "{what}");
                }
                (true, false) => {
                    plain_on_bad += 1;
                    assert_terminated(&r, true, &what);
                    assert_eq!(after, (before.0 + 1, before.1), "{what}");
                }
                (false, _) => {
                    assert_eq!(r.status, 200, "{what}");
                    assert_eq!(after, (before.0, before.1 + 1), "{what}");
                }
            }
        }
    }
    assert!(
        keyed_on_bad >= 1 && plain_on_bad >= 1,
        "keyed {keyed_on_bad}, plain {plain_on_bad}"
    );
}

/// `retry.attempts` bounds the resends: a GET against two resetting
/// endpoints is sent 1 + attempts times, with backoff between sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_attempts_bound_the_resends() {
    for (attempts, sends) in [(0, 1), (1, 2), (2, 3)] {
        let a = ScriptedUpstream::start(Script::Reset).await;
        let b = ScriptedUpstream::start(Script::Reset).await;
        let proxy = Proxy::with_endpoints(
            &[a.addr, b.addr],
            &format!(
                "health:\n  mode: tcp\nretry:\n  attempts: {attempts}\n  budget_percent: 100\n"
            ),
        )
        .await;
        let started = Instant::now();
        let r = get(proxy.addr(), "/x").await;
        let took = started.elapsed();
        assert_terminated(&r, false, &format!("attempts: {attempts}"));
        assert_eq!(a.requests() + b.requests(), sends, "attempts: {attempts}");
        if attempts == 1 {
            assert_eq!(
                (a.requests(), b.requests()),
                (1, 1),
                "the resend goes to the other endpoint"
            );
        }
        if attempts == 2 {
            // backoff: 25 ms then 50 ms, each ±50 %.
            assert!(
                took >= Duration::from_millis(37),
                "no backoff between resends: {took:?}"
            );
        }
    }
}

/// Sends `n` GETs, one after another, through a proxy whose only endpoint
/// resets every request (`retry.attempts: 1`, the given `budget_percent`);
/// each is answered 503. Returns how many times each GET reached the app.
async fn deliveries_per_get(budget_percent: u32, n: usize) -> Vec<usize> {
    let bad = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(
        &[bad.addr],
        &format!(
            "health:\n  mode: tcp\nretry:\n  attempts: 1\n  budget_percent: {budget_percent}\n"
        ),
    )
    .await;
    let mut sends = Vec::new();
    for i in 0..n {
        let before = bad.requests();
        let r = get(proxy.addr(), &format!("/g{i}")).await;
        assert_terminated(&r, false, &format!("GET {i}"));
        sends.push(bad.requests() - before);
    }
    sends
}

/// The retry budget (`budget_percent: 0`: only the floor of 3 retries per
/// ~10 s): the first three failing GETs are resent once each, later ones are
/// answered 503 after a single delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_budget_exhaustion_stops_resends() {
    let sends = deliveries_per_get(0, 6).await;
    assert_eq!(sends, vec![2, 2, 2, 1, 1, 1], "deliveries per GET");
}

/// The budget is a share of recent requests: with `budget_percent: 50`,
/// after the floor of 3 is used, the k-th request may be resent only while
/// retries < k/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_budget_is_a_share_of_recent_requests() {
    let sends = deliveries_per_get(50, 10).await;
    // allowed retries after k requests: max(k * 50 / 100, 3)
    assert_eq!(
        sends,
        vec![2, 2, 2, 1, 1, 1, 1, 2, 1, 2],
        "deliveries per GET"
    );
}

/// Only buffered bodies are resent: a PUT with a small Content-Length is, a
/// chunked PUT (unknown length) or one over `retry.buffer_limit` is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_buffered_bodies_are_resent() {
    let bad = ScriptedUpstream::start(Script::Reset).await;
    let proxy = Proxy::with_endpoints(
        &[bad.addr],
        "health:\n  mode: tcp\nretry:\n  attempts: 1\n  budget_percent: 100\n  buffer_limit: 1KiB\n",
    )
    .await;
    let head = |line: &str, extra: &str| {
        format!("{line} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n").into_bytes()
    };
    // (what, request, deliveries, outcome unknown)
    let cases: Vec<(&str, Vec<u8>, usize, bool)> = vec![
        (
            "PUT with Content-Length 5",
            [
                head("PUT /small", "Content-Length: 5\r\n"),
                b"hello".to_vec(),
            ]
            .concat(),
            2,
            false,
        ),
        (
            "chunked PUT",
            [
                head("PUT /chunked", "Transfer-Encoding: chunked\r\n"),
                b"5\r\nhello\r\n0\r\n\r\n".to_vec(),
            ]
            .concat(),
            1,
            false,
        ),
        (
            "PUT over buffer_limit",
            [
                head("PUT /big", "Content-Length: 2048\r\n"),
                vec![b'x'; 2048],
            ]
            .concat(),
            1,
            false,
        ),
        ("DELETE", head("DELETE /d", ""), 2, false),
        (
            "PATCH with Content-Length 5",
            [head("PATCH /p", "Content-Length: 5\r\n"), b"hello".to_vec()].concat(),
            1,
            true,
        ),
    ];
    for (what, request, sends, unknown) in cases {
        let before = bad.requests();
        let r = raw_exchange(proxy.addr(), &request, 15).await.response();
        assert_terminated(&r, unknown, what);
        assert_eq!(bad.requests() - before, sends, "{what}: deliveries");
    }
}

/// A response timeout (504) or a non-HTTP answer (502) is never resent, even
/// for a GET with another endpoint available.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn timeouts_and_bad_responses_are_not_resent() {
    let a = ScriptedUpstream::start(Script::Stall).await;
    let b = ScriptedUpstream::start(Script::Stall).await;
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: {}\n  response_timeout: 200ms\nhealth:\n  mode: tcp\n",
        list(&[a.addr, b.addr])
    ))
    .await;
    let r = get(proxy.addr(), "/slow").await;
    assert_eq!(r.status, 504);
    assert_eq!(proxy_status(&r), "lifeguard; error=http_response_timeout");
    assert_eq!(a.requests() + b.requests(), 1, "504 is not resent");

    let a = ScriptedUpstream::start(Script::Raw(b"NOT HTTP AT ALL\r\n\r\n")).await;
    let b = ScriptedUpstream::start(Script::Raw(b"NOT HTTP AT ALL\r\n\r\n")).await;
    let proxy = Proxy::with_endpoints(&[a.addr, b.addr], "health:\n  mode: tcp\n").await;
    let r = get(proxy.addr(), "/garbage").await;
    assert_eq!(r.status, 502);
    assert_eq!(proxy_status(&r), "lifeguard; error=http_protocol_error");
    assert_eq!(a.requests() + b.requests(), 1, "502 is not resent");
}
