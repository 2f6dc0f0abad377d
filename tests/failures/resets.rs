//! Request sent, app closed (FIN) or reset (RST) before response headers:
//! what is resent (idempotent requests, once per other endpoint, within
//! `retry.attempts`) and what is not (POST, PATCH).

use super::{
    assert_synthesized, assert_synthesized_html, dead_and_healthy, echo_json, get, inflight_until,
    post, request, send,
};
use support::synth::{terminated, terminated_unknown, TCP_PROBES};
use support::*;

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
    let (dead, app, proxy) = dead_and_healthy(Script::Reset).await;
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
    let (dead, app, proxy) = dead_and_healthy(Script::Close).await;
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
        let (dead, app, proxy) = dead_and_healthy(Script::Reset).await;
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
    let (dead, app, proxy) = dead_and_healthy(Script::Reset).await;
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
    let (dead, app, proxy) = dead_and_healthy(Script::Close).await;
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
        let (dead, proxy) = Proxy::scripted(script.clone(), TCP_PROBES).await;
        let r = send(proxy.addr(), &post("/pay", "amount=10")).await;
        assert_synthesized_html(&r, 503, &terminated_unknown());
        assert_eq!(dead.requests(), 1, "{script:?}: POST delivered once");
        let req = request("PATCH", "/pay", "", "a=1");
        let r = send(proxy.addr(), &req).await;
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
            let (dead, proxy) = Proxy::scripted(script.clone(), TCP_PROBES).await;
            let req = request(method, "/page", "", "");
            let r = send(proxy.addr(), &req).await;
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

#[tokio::test]
async fn expect_continue_and_chunked_posts_against_a_resetting_app_get_503() {
    let (dead, proxy) = Proxy::scripted(Script::Reset, TCP_PROBES).await;
    let chunked = b"POST /chunked HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let r = send(
        proxy.addr(),
        &request("POST", "/expect", "Expect: 100-continue\r\n", "hello"),
    )
    .await;
    assert_synthesized(&r, 503, &terminated_unknown());
    let r = send(proxy.addr(), chunked).await;
    assert_synthesized(&r, 503, &terminated_unknown());
    assert_eq!(dead.requests(), 2);
    inflight_until(&proxy, "/admin/inflight empty", |l| l.is_empty()).await;
}
