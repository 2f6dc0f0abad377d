//! Connect refused: nothing was sent, so any method may go to another
//! endpoint, and the answer says so.

use super::{assert_synthesized_html, echo_json, get, post, proxy_whose_app_just_died, send};
use support::synth::{destination_unavailable, refused, terminated, terminated_unknown};
use support::*;

use std::time::Duration;
use tokio::time::Instant;

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
