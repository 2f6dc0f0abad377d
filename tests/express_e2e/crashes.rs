//! Express crashing with requests in flight: every client gets a 503, and
//! the crash log names them all.

use super::{
    assert_connection_terminated, assert_crashed, get, json, ok_json, post_order,
    post_order_request, SENT_NOT_RETRIED,
};
use support::node::NodeApp;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn post_crashing_in_async_callback_gets_503_and_is_delivered_once() {
    let mut app = NodeApp::start("app.js", &[]).await;
    let proxy = Proxy::with_endpoints(&[app.addr], "unavailable:\n  retry_after: 7s\n").await;
    // A warm pooled connection, as in production.
    ok_json(get(proxy.addr(), "/", "crash-warm").await, 200, "warm-up");

    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    s.write_all(&post_order_request(
        "/orders/crash",
        "order-42",
        "crash-post-1",
    ))
    .await
    .unwrap();
    let r = match support::client::read_response(&mut s, 10, false).await {
        RawOutcome::Response(r) => r,
        other => panic!("the client must get a response, got {other:?}"),
    };
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
    assert_eq!(r.header("x-request-id"), Some("crash-post-1"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let v = json(&r);
    assert_eq!(v["status"], 503);
    assert_eq!(v["outcome_unknown"], true);
    assert_eq!(v["request_id"], "crash-post-1");
    // `Connection: close` is kept: the connection ends after the response.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        read.is_ok(),
        "lifeguard kept the connection open after Connection: close"
    );
    assert!(rest.is_empty(), "bytes after the 503: {rest:?}");

    // The app really died, and got the order exactly once: lifeguard never resent it.
    assert_crashed(&mut app).await;
    assert_eq!(app.deliveries("order-42"), 1, "{:?}", app.stdout_lines());
    assert_eq!(app.received("crash-post-1"), 1);
}

/// Starts two slow GETs, waits until the app has them, then crashes the app
/// with a POST. Returns (the two GET outcomes, the POST outcome, elapsed since
/// the GETs were sent).
async fn crash_with_requests_in_flight(
    proxy: SocketAddr,
    app: &NodeApp,
    tag: &str,
) -> (Vec<RawOutcome>, RawOutcome, Duration) {
    let started = Instant::now();
    let slow: Vec<_> = (1..=2)
        .map(|i| {
            let id = format!("{tag}-slow-{i}");
            tokio::spawn(async move { get(proxy, "/slow?ms=2000", &id).await })
        })
        .collect();
    eventually(5, "the app received both slow GETs", || {
        (1..=2).all(|i| app.received(&format!("{tag}-slow-{i}")) == 1)
    })
    .await;
    let post = post_order(
        proxy,
        "/orders/crash",
        &format!("{tag}-order"),
        &format!("{tag}-post"),
    )
    .await;
    let mut gets = Vec::new();
    for h in slow {
        gets.push(h.await.unwrap());
    }
    (gets, post, started.elapsed())
}

#[tokio::test]
async fn requests_in_flight_at_the_crash_all_get_503() {
    let mut app = NodeApp::start("app.js", &[]).await;
    // No hold: the GETs, resent after the crash, find no app and are answered
    // at once instead of waiting for it to come back.
    let proxy = Proxy::with_endpoints(&[app.addr], "unavailable:\n  hold: 0s\n").await;
    let (gets, post, elapsed) = crash_with_requests_in_flight(proxy.addr(), &app, "inflight").await;

    for (i, g) in gets.into_iter().enumerate() {
        let r = match g {
            RawOutcome::Response(r) => r,
            other => panic!("slow GET {i} must get a response, got {other:?}"),
        };
        assert_connection_terminated(&r, &format!("slow GET {i}"));
        // An idempotent request says nothing about an unknown outcome.
        assert_eq!(
            r.header("proxy-status"),
            Some("lifeguard; error=connection_terminated")
        );
        assert_eq!(json(&r)["outcome_unknown"], false);
    }
    let r = match post {
        RawOutcome::Response(r) => r,
        other => panic!("the POST must get a response, got {other:?}"),
    };
    assert_connection_terminated(&r, "crashing POST");
    assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
    // Answered when the app died, not when the slow timers would have fired.
    assert!(
        elapsed < Duration::from_millis(1900),
        "answers took {elapsed:?}"
    );
    assert_crashed(&mut app).await;
    assert_eq!(app.deliveries("inflight-order"), 1);
    for i in 1..=2 {
        assert_eq!(app.received(&format!("inflight-slow-{i}")), 1);
    }
}

#[tokio::test]
async fn crash_log_names_the_endpoint_and_every_request_in_flight() {
    let mut app = NodeApp::start("app.js", &[]).await;
    let proxy =
        ProxyProcess::with_endpoints(&[app.addr], "log:\n  format: json\n  level: info\n").await;
    let (gets, post, _) = crash_with_requests_in_flight(proxy.addr, &app, "log").await;
    for g in gets {
        assert_connection_terminated(&g.response(), "slow GET");
    }
    let r = post.response();
    assert_connection_terminated(&r, "crashing POST");
    assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
    assert_crashed(&mut app).await;

    // Each request logs its crash report (if any) before its access-log line,
    // so once all three access lines are there, every report is too.
    let ids = ["log-slow-1", "log-slow-2", "log-post"];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = proxy.json_logs();
        let done = ids.iter().all(|id| {
            logs.iter()
                .any(|l| l["target"] == "access" && l["request_id"] == *id)
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "access log lines missing: {:#?}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let crashes = proxy.events("app_connection_lost");
    assert_eq!(
        crashes.len(),
        1,
        "one app_connection_lost event per crash: {crashes:#?}\nall log lines:\n{}",
        proxy.logs().join("\n")
    );
    let c = &crashes[0];
    assert_eq!(c["endpoint"], app.addr.to_string(), "{c:#}");
    assert_eq!(c["level"], "ERROR", "{c:#}");
    assert_eq!(c["in_flight"], 3, "{c:#}");
    let requests: Vec<serde_json::Value> =
        serde_json::from_str(c["requests"].as_str().expect("requests is a JSON string"))
            .unwrap_or_else(|e| panic!("requests is not a JSON list ({e}): {c:#}"));
    let mut seen: Vec<(String, String, String)> = requests
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["path"].as_str().unwrap_or_default().to_owned(),
                r["id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("GET".into(), "/slow?ms=2000".into(), "log-slow-1".into()),
            ("GET".into(), "/slow?ms=2000".into(), "log-slow-2".into()),
            ("POST".into(), "/orders/crash".into(), "log-post".into()),
        ],
        "{c:#}"
    );
    for r in &requests {
        assert_eq!(r["endpoint"], app.addr.to_string(), "{r:#}");
    }
}
