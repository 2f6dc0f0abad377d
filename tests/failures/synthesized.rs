//! What every synthesized 5xx carries: Retry-After, the request id, an
//! HTML or JSON body, and `Connection: close`.

use super::{
    assert_synthesized, assert_synthesized_html, get, post, proxy_whose_app_just_died, request,
    send,
};
use support::synth::{destination_unavailable, refused, terminated_unknown, TCP_PROBES};
use support::*;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let (_dead, proxy) = Proxy::scripted(Script::Reset, TCP_PROBES).await;
    let req = request("POST", "/id", "X-Request-Id: client-id-42\r\n", "b");
    let r = send(proxy.addr(), &req).await;
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
    let req = request(
        "GET",
        "/api",
        "Accept: application/json\r\nX-Request-Id: j-1\r\n",
        "",
    );
    let r = send(proxy.addr(), &req).await;
    assert_synthesized(&r, 503, &refused());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON body");
    assert_eq!(v["status"], 503, "{v}");
    assert_eq!(v["error"], "connection_refused", "{v}");
    assert_eq!(v["request_id"], "j-1", "{v}");
    assert_eq!(v["outcome_unknown"], false, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");

    let (_dead, proxy) = Proxy::scripted(Script::Reset, TCP_PROBES).await;
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
    let (_dead, proxy) = Proxy::scripted(Script::Reset, TCP_PROBES).await;
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
