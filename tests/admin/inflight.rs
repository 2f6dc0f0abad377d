//! `/admin/inflight`.

use super::{call, json, ready_proxy};
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::time::Instant;

#[tokio::test]
async fn admin_inflight_lists_each_request_in_flight() {
    let (app, proxy, admin) = ready_proxy("").await;
    let addr = proxy.addr();
    let r = call(admin, "GET", "/admin/inflight", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(json(&r), serde_json::json!([]));

    let slow = tokio::spawn(async move {
        raw_exchange(
            addr,
            b"POST /slow/800?q=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: inflight-test-1\r\nContent-Length: 5\r\n\r\nhello",
            10,
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let list = loop {
        let v = json(&call(admin, "GET", "/admin/inflight", "").await);
        let list = v.as_array().cloned().unwrap_or_default();
        if list.len() == 1 && list[0]["bytes_sent"] == 5 {
            break list;
        }
        assert!(Instant::now() < deadline, "one request listed: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let e = &list[0];
    assert_eq!(e["id"], "inflight-test-1", "{e}");
    assert_eq!(e["method"], "POST", "{e}");
    assert_eq!(e["path"], "/slow/800?q=1", "{e}");
    assert_eq!(e["endpoint"], app.addr.to_string(), "{e}");
    assert!(e["age_ms"].as_u64().is_some(), "{e}");
    let client: SocketAddr = e["client"].as_str().unwrap().parse().unwrap();
    assert!(client.ip().is_loopback(), "{e}");

    let r = slow.await.unwrap().response();
    assert_eq!(r.status, 200);
    let r = call(admin, "GET", "/admin/inflight", "").await;
    assert_eq!(json(&r), serde_json::json!([]));
}
