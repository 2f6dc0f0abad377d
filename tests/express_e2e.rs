//! End to end with a real Express 4 app (tests/express/app.js) behind
//! lifeguard. The app dies the classic way: an exception thrown inside an
//! async callback is not caught by Express, Node exits with code 1 and closes
//! every socket without a response. Through lifeguard, every client gets an
//! answer instead (503, `Connection: close`, `Retry-After`, `Proxy-Status`),
//! and a POST that reached the app is never sent again.
//!
//! The tests install the npm packages themselves (`npm ci`, once per run).

use support::node::NodeApp;
use support::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    let proxy = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\"]\nlog:\n  format: json\n  level: info\n",
        app.addr
    ))
    .await;
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

#[tokio::test]
async fn app_restarted_on_the_same_port_serves_again_through_the_same_proxy() {
    let mut first = NodeApp::start("app.js", &[("APP_NAME", "first")]).await;
    let proxy = Proxy::with_endpoints(&[first.addr], "").await;
    let (_, v) = ok_json(get(proxy.addr(), "/", "restart-1").await, 200, "before");
    assert_eq!(v["app"], "first");

    let r = post_order(proxy.addr(), "/orders/crash", "restart-order", "restart-2")
        .await
        .response();
    assert_connection_terminated(&r, "crashing POST");
    assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
    assert_crashed(&mut first).await;
    // The crash triggers a probe, which finds the port refusing.
    let endpoint = proxy.running.shared.snapshot.load().endpoints[0].clone();
    eventually(10, "lifeguard sees the app down", || endpoint.is_down()).await;

    // While the app is down: after the hold (2 s) for it to come back, 503
    // destination_unavailable, and said so (nothing was sent).
    let r = get(proxy.addr(), "/", "restart-down-get").await.response();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable")
    );
    let r = post_order(proxy.addr(), "/orders", "while-down", "restart-down-post")
        .await
        .response();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable")
    );
    assert_eq!(json(&r)["outcome_unknown"], false);

    let port = first.port().to_string();
    let second = NodeApp::start("app.js", &[("APP_NAME", "second"), ("PORT", &port)]).await;
    assert_eq!(second.addr, first.addr);
    for i in 0..5 {
        let (_, v) = ok_json(
            get(proxy.addr(), "/", &format!("restart-after-{i}")).await,
            200,
            "after restart",
        );
        assert_eq!(v["app"], "second");
        assert_eq!(v["pid"], second.pid);
    }
    let (_, v) = ok_json(
        post_order(proxy.addr(), "/orders", "after-restart", "restart-post").await,
        201,
        "POST after restart",
    );
    assert_eq!(v["app"], "second");
    assert_eq!(second.deliveries("after-restart"), 1);
    // The crashing order was delivered once, to the first process only; the
    // refused one never reached anyone.
    assert_eq!(first.deliveries("restart-order"), 1);
    assert_eq!(second.deliveries("restart-order"), 0);
    assert_eq!(
        first.deliveries("while-down") + second.deliveries("while-down"),
        0
    );
}

#[tokio::test]
async fn two_endpoints_gets_survive_a_crash_and_the_crashing_post_gets_503_once() {
    let mut a = NodeApp::start("app.js", &[("APP_NAME", "a")]).await;
    let b = NodeApp::start("app.js", &[("APP_NAME", "b")]).await;
    let proxy = Proxy::with_endpoints(&[a.addr, b.addr], "").await;
    let addr = proxy.addr();

    // Four slow GETs, sent one at a time so least-outstanding puts two on each.
    let mut slow = Vec::new();
    for i in 0..4 {
        let id = format!("two-slow-{i}");
        let h = tokio::spawn({
            let id = id.clone();
            async move { get(addr, "/slow?ms=1000", &id).await }
        });
        eventually(5, "an app received the slow GET", || {
            a.received(&id) + b.received(&id) == 1
        })
        .await;
        slow.push((id, h));
    }
    let on_a: Vec<&String> = slow
        .iter()
        .map(|(id, _)| id)
        .filter(|id| a.received(id) == 1)
        .collect();
    assert_eq!(on_a.len(), 2, "slow GETs on a: {on_a:?}");

    // Crash `a` with a POST. It may land on `b` first (which then just
    // records the order); every POST gets exactly one answer either way.
    let mut crash_id = None;
    for n in 0..6 {
        let order = format!("two-crash-{n}");
        let r = post_order(
            addr,
            "/orders/crash?only=a",
            &order,
            &format!("two-post-{n}"),
        )
        .await
        .response();
        if r.status == 201 {
            assert_eq!(json(&r)["app"], "b", "{r:?}");
            assert_eq!(b.deliveries(&order), 1);
            continue;
        }
        assert_connection_terminated(&r, "crashing POST");
        assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
        crash_id = Some(order);
        break;
    }
    let crash_id = crash_id.expect("a POST reached `a` within 6 tries");
    assert_crashed(&mut a).await;
    assert_eq!(a.deliveries(&crash_id), 1);
    assert_eq!(b.deliveries(&crash_id), 0, "the crashing POST was resent");

    // The GETs that were in flight on `a` were retried once on `b`.
    for (id, h) in slow {
        let (_, v) = ok_json(h.await.unwrap(), 200, &id);
        assert_eq!(v["app"], "b", "{id}: {v}");
        assert_eq!(b.received(&id), 1, "{id}");
    }

    // With `a` gone, everything goes to `b`: GETs and POSTs, each once.
    let gets = futures_util::future::join_all(
        (0..6).map(|i| async move { get(addr, "/", &format!("two-after-get-{i}")).await }),
    )
    .await;
    for g in gets {
        let (_, v) = ok_json(g, 200, "GET after the crash");
        assert_eq!(v["app"], "b");
    }
    let posts = futures_util::future::join_all((0..6).map(|i| async move {
        post_order(
            addr,
            "/orders",
            &format!("two-after-{i}"),
            &format!("two-after-post-{i}"),
        )
        .await
    }))
    .await;
    for (i, p) in posts.into_iter().enumerate() {
        let (_, v) = ok_json(p, 201, "POST after the crash");
        assert_eq!(v["app"], "b");
        assert_eq!(b.deliveries(&format!("two-after-{i}")), 1);
        assert_eq!(a.deliveries(&format!("two-after-{i}")), 0);
    }
}

#[tokio::test]
async fn cluster_worker_crash_gets_503_and_the_other_worker_keeps_serving() {
    let app = NodeApp::start("cluster.js", &[("WORKERS", "2")]).await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let r = post_order(
        proxy.addr(),
        "/orders/crash",
        "cluster-order",
        "cluster-crash",
    )
    .await
    .response();
    assert_connection_terminated(&r, "crashing POST");
    assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
    eventually(10, "the primary saw a worker exit with code 1", || {
        app.events("worker")
            .iter()
            .any(|l| l.ends_with(" exited 1"))
    })
    .await;
    for i in 0..6 {
        ok_json(
            get(proxy.addr(), "/", &format!("cluster-after-{i}")).await,
            200,
            "GET after a worker crash",
        );
    }
    ok_json(
        post_order(proxy.addr(), "/orders", "cluster-after", "cluster-post").await,
        201,
        "POST after a worker crash",
    );
    assert_eq!(app.deliveries("cluster-order"), 1);
    assert_eq!(app.deliveries("cluster-after"), 1);
}
