//! What is resent (idempotent requests, connect failures, POSTs with an
//! idempotency key) and what is not (a POST the app dropped).

use super::{assert_terminated, counting_app, get, send};
use support::net::kill_app;
use support::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Two endpoints, one killed after start (no probe notices: `interval: 1h`):
/// every GET succeeds (refused connects go to the other endpoint), and the
/// dead endpoint is marked down by the requests that tried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_requests_see_no_error_when_an_endpoint_dies() {
    let (a, a_hits) = counting_app().await;
    let (b, b_hits) = counting_app().await;
    let proxy = Proxy::with_endpoints(&[a.addr, b.addr], "health:\n  interval: 1h\n").await;
    let (ea, eb) = (proxy.endpoint(0), proxy.endpoint(1));
    eventually(5, "both up", || ea.is_up() && eb.is_up()).await;
    kill_app(a).await;

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
    let proxy = Proxy::with_endpoints(
        &[a.addr, b.addr],
        "  pool_max_idle_per_endpoint: 0\nhealth:\n  interval: 1h\nunavailable:\n  hold: 0s\n",
    )
    .await;
    let (ea, eb) = (proxy.endpoint(0), proxy.endpoint(1));
    eventually(5, "both up", || ea.is_up() && eb.is_up()).await;
    kill_app(a).await;
    for i in 0..4 {
        let r = send(proxy.addr(), "POST", &format!("/orders/{i}"), "", b"{}").await;
        assert_eq!(r.status, 200, "POST {i}: {}", r.body_text());
    }
    assert!(ea.is_down(), "a POST met the refused endpoint");
    assert_eq!(b_hits.load(Ordering::SeqCst), 4);
    assert_eq!(a_hits.load(Ordering::SeqCst), 0);
}

/// A resetting endpoint and a counting one behind a proxy probing with TCP,
/// with a retry budget of 100 % and `retry` settings `retry_extra`.
async fn resetting_and_healthy(
    retry_extra: &str,
) -> (ScriptedUpstream, TestUpstream, Arc<AtomicUsize>, Proxy) {
    let bad = ScriptedUpstream::start(Script::Reset).await;
    let (good, good_hits) = counting_app().await;
    let config = format!("health:\n  mode: tcp\nretry:\n  budget_percent: 100\n{retry_extra}");
    let proxy = Proxy::with_endpoints(&[bad.addr, good.addr], &config).await;
    (bad, good, good_hits, proxy)
}

/// A POST the app drops is never resent: 503 with "outcome unknown",
/// delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn post_to_a_resetting_app_is_not_resent() {
    // tcp probes: the resetting endpoint stays up and keeps receiving requests.
    let (bad, _good, good_hits, proxy) = resetting_and_healthy("").await;
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
    let keyed = "  idempotency_key_header: Idempotency-Key\n";
    let (bad, _good, good_hits, proxy) = resetting_and_healthy(keyed).await;
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
