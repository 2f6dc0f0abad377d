//! Express alone, and requests reaching Express through lifeguard.

use super::{assert_crashed, get, ok_json, post_order};
use support::node::NodeApp;
use support::*;

#[tokio::test]
async fn express_alone_closes_the_connection_without_a_response() {
    // The failure lifeguard exists for, shown without it: a browser sees the
    // connection close with no response and silently resends the POST.
    let mut app = NodeApp::start("app.js", &[]).await;
    let (_, v) = ok_json(get(app.addr, "/health", "alone-1").await, 200, "health");
    assert_eq!(v["status"], "ok");
    let outcome = post_order(app.addr, "/orders/crash", "alone-order", "alone-2").await;
    assert!(
        matches!(outcome, RawOutcome::ClosedWithoutResponse),
        "expected the bare app to close without a response, got {outcome:?}"
    );
    assert_crashed(&mut app).await;
    assert_eq!(app.deliveries("alone-order"), 1);
}

#[tokio::test]
async fn get_and_post_reach_express_with_forwarding_headers() {
    let app = NodeApp::start("app.js", &[("APP_NAME", "happy")]).await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;

    // GET: forwarding headers and the client's request id reach the app.
    let req = "GET /echo?x=1 HTTP/1.1\r\nHost: shop.example\r\nX-Request-Id: e2e-echo-1\r\n\
               X-Forwarded-For: 203.0.113.7\r\nAccept: application/json\r\n\r\n";
    let (r, v) = ok_json(
        raw_exchange(proxy.addr(), req.as_bytes(), 10).await,
        200,
        "GET /echo",
    );
    assert_eq!(r.header("x-request-id"), Some("e2e-echo-1"));
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("application/json")),
        "{r:?}"
    );
    assert_eq!(v["app"], "happy");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["url"], "/echo?x=1");
    assert_eq!(v["httpVersion"], "1.1");
    let h = &v["headers"];
    assert_eq!(h["x-request-id"], "e2e-echo-1");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example");
    assert_eq!(h["host"], "shop.example");
    assert_eq!(app.received("e2e-echo-1"), 1);

    // Without a client id, lifeguard makes one, and app and client see the same.
    let req = "GET /echo HTTP/1.1\r\nHost: shop.example\r\n\r\n";
    let (r, v) = ok_json(
        raw_exchange(proxy.addr(), req.as_bytes(), 10).await,
        200,
        "GET /echo without id",
    );
    let generated = r
        .header("x-request-id")
        .expect("x-request-id on the response");
    assert!(!generated.is_empty());
    assert_eq!(v["headers"]["x-request-id"], generated);
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");

    // POST with a JSON body: delivered once, 201 passed through.
    let (r, v) = ok_json(
        post_order(proxy.addr(), "/orders", "happy-1", "e2e-post-1").await,
        201,
        "POST /orders",
    );
    assert_eq!(r.header("x-request-id"), Some("e2e-post-1"));
    assert_eq!(v["id"], "happy-1");
    assert_eq!(v["deliveries"], 1);
    assert_eq!(app.deliveries("happy-1"), 1);

    // The remaining routes.
    let (_, v) = ok_json(get(proxy.addr(), "/", "e2e-root").await, 200, "GET /");
    assert_eq!(v["pid"], app.pid);
    let (_, v) = ok_json(
        get(proxy.addr(), "/health", "e2e-health").await,
        200,
        "health",
    );
    assert_eq!(v["status"], "ok");
    let (_, v) = ok_json(
        get(proxy.addr(), "/slow?ms=50", "e2e-slow").await,
        200,
        "slow",
    );
    assert_eq!(v["slept"], 50);
}
