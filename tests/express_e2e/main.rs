//! End to end with a real Express 4 app (tests/express/app.js) behind
//! lifeguard. The app dies the classic way: an exception thrown inside an
//! async callback is not caught by Express, Node exits with code 1 and closes
//! every socket without a response. Through lifeguard, every client gets an
//! answer instead (503, `Connection: close`, `Retry-After`, `Proxy-Status`),
//! and a POST that reached the app is never sent again.
//!
//! The tests install the npm packages themselves (`npm ci`, once per run).

mod crashes;
mod requests;
mod restarts;

use support::node::NodeApp;
use support::*;

use std::net::SocketAddr;

/// `Proxy-Status` for a POST that reached the app before it died.
const SENT_NOT_RETRIED: &str = "lifeguard; error=connection_terminated; \
     details=\"request was sent to the app; outcome unknown; not retried\"";

fn get_request(path: &str, request_id: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: shop.example\r\nX-Request-Id: {request_id}\r\n\
         Accept: application/json\r\n\r\n"
    )
    .into_bytes()
}

fn post_order_request(path: &str, order_id: &str, request_id: &str) -> Vec<u8> {
    let body = format!("{{\"id\":\"{order_id}\",\"item\":\"lifebuoy\",\"qty\":1}}");
    format!(
        "POST {path} HTTP/1.1\r\nHost: shop.example\r\nX-Request-Id: {request_id}\r\n\
         Content-Type: application/json\r\nAccept: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn get(addr: SocketAddr, path: &str, request_id: &str) -> RawOutcome {
    raw_exchange(addr, &get_request(path, request_id), 10).await
}

async fn post_order(addr: SocketAddr, path: &str, order_id: &str, request_id: &str) -> RawOutcome {
    raw_exchange(addr, &post_order_request(path, order_id, request_id), 10).await
}

fn json(r: &RawResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?} {}", r.status, r.body_text()))
}

/// A response lifeguard wrote because the app's connection died with the
/// request on it.
fn assert_connection_terminated(r: &RawResponse, what: &str) {
    assert_eq!(r.status, 503, "{what}: {r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
    let retry_after = r.header("retry-after").unwrap_or_default();
    assert!(
        retry_after.parse::<u64>().is_ok_and(|s| s >= 1),
        "{what}: Retry-After {retry_after:?}: {r:?}"
    );
    let ps = r.header("proxy-status").unwrap_or_default();
    assert!(
        ps.starts_with("lifeguard; error=connection_terminated"),
        "{what}: Proxy-Status {ps:?}"
    );
}

/// Waits for the app to exit and checks it died the way the scenario says:
/// exit code 1 and Node's uncaught-exception trace on stderr.
async fn assert_crashed(app: &mut NodeApp) {
    let status = app
        .wait_exit(10)
        .await
        .expect("the app exits after the crash");
    assert_eq!(status.code(), Some(1), "{status:?}");
    eventually(5, "app stdout closed", || app.stdout_closed()).await;
    let stderr = app.stderr_lines().join("\n");
    assert!(stderr.contains("Error: boom"), "stderr: {stderr}");
}

fn ok_json(outcome: RawOutcome, status: u16, what: &str) -> (RawResponse, serde_json::Value) {
    let r = match outcome {
        RawOutcome::Response(r) => r,
        other => panic!("{what}: expected {status}, got {other:?}"),
    };
    assert_eq!(r.status, status, "{what}: {} {r:?}", r.body_text());
    let v = json(&r);
    (r, v)
}
