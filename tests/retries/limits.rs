//! What bounds the resends: `retry.attempts`, the retry budget, buffered
//! bodies only, never after a timeout or a bad response.

use super::{assert_terminated, get, proxy_status};
use support::*;

use std::time::Duration;
use tokio::time::Instant;

/// `retry.attempts` bounds the resends: a GET against two resetting
/// endpoints is sent 1 + attempts times, with backoff between sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retry_attempts_bound_the_resends() {
    for (attempts, sends) in [(0, 1), (1, 2), (2, 3)] {
        let (a, b) = ScriptedUpstream::pair(Script::Reset).await;
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
    let (a, b) = ScriptedUpstream::pair(Script::Stall).await;
    let proxy = Proxy::with_endpoints(
        &[a.addr, b.addr],
        "  response_timeout: 200ms\nhealth:\n  mode: tcp\n",
    )
    .await;
    let r = get(proxy.addr(), "/slow").await;
    assert_eq!(r.status, 504);
    assert_eq!(proxy_status(&r), "lifeguard; error=http_response_timeout");
    assert_eq!(a.requests() + b.requests(), 1, "504 is not resent");

    let (a, b) = ScriptedUpstream::pair(Script::Raw(b"NOT HTTP AT ALL\r\n\r\n")).await;
    let proxy = Proxy::with_endpoints(&[a.addr, b.addr], "health:\n  mode: tcp\n").await;
    let r = get(proxy.addr(), "/garbage").await;
    assert_eq!(r.status, 502);
    assert_eq!(proxy_status(&r), "lifeguard; error=http_protocol_error");
    assert_eq!(a.requests() + b.requests(), 1, "502 is not resent");
}
