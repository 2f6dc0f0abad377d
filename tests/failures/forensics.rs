//! Crash forensics: one `app_connection_lost` event per dead app, naming
//! every request that was in flight on it.

use super::{assert_synthesized, get, post, request};
use support::doomed::DoomedApp;
use support::synth::{terminated, terminated_unknown, TCP_PROBES};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_with_requests_in_flight_logs_one_event_naming_them_all() {
    let app = DoomedApp::start().await;
    let proxy = ProxyProcess::with_endpoints(&[app.addr], TCP_PROBES).await;
    let addr = proxy.addr;
    let reqs = [
        ("GET", "/a", "crash-a"),
        ("POST", "/b", "crash-b"),
        ("GET", "/c", "crash-c"),
    ];
    let tasks: Vec<_> = reqs
        .iter()
        .map(|&(m, p, id)| {
            let body = if m == "POST" { "order=1" } else { "" };
            let bytes = request(m, p, &format!("X-Request-Id: {id}\r\n"), body);
            tokio::spawn(async move { raw_exchange(addr, &bytes, 10).await })
        })
        .collect();
    eventually(5, "3 requests in flight on the app", || app.held() == 3).await;
    app.crash();

    for ((m, p, id), t) in reqs.iter().zip(tasks) {
        let r = match t.await.unwrap() {
            RawOutcome::Response(r) => r,
            other => panic!("{m} {p}: {other:?}"),
        };
        let ps = if *m == "POST" {
            terminated_unknown()
        } else {
            terminated()
        };
        assert_synthesized(&r, 503, &ps);
        assert_eq!(r.header("x-request-id"), Some(*id));
    }

    // The access-log events come after the crash event; once all three are
    // in, every crash event is too.
    let access_done = || {
        proxy
            .json_logs()
            .iter()
            .filter(|v| v["target"] == "access" && v["status"] == 503)
            .count()
            == 3
    };
    eventually(5, "three access-log events", access_done).await;
    let events = proxy.events("app_connection_lost");
    assert_eq!(events.len(), 1, "exactly one crash event: {events:#?}");
    let e = &events[0];
    let endpoint = app.addr.to_string();
    assert_eq!(e["endpoint"], endpoint.as_str(), "{e}");
    assert_eq!(e["trigger"], "reset_before_response", "{e}");
    assert_eq!(e["in_flight"], 3, "{e}");
    let requests: Vec<serde_json::Value> =
        serde_json::from_str(e["requests"].as_str().expect("requests is a JSON string"))
            .expect("requests parses as JSON");
    let mut seen: Vec<(String, String, String)> = requests
        .iter()
        .map(|r| {
            for field in [
                "id",
                "method",
                "path",
                "endpoint",
                "age_ms",
                "client",
                "bytes_sent",
            ] {
                assert!(!r[field].is_null(), "{field} missing in {r}");
            }
            assert_eq!(r["endpoint"], endpoint.as_str(), "{r}");
            if r["path"] == "/b" {
                assert_eq!(r["bytes_sent"], 7, "the POST body was forwarded: {r}");
            }
            (
                r["method"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.1.cmp(&b.1));
    let expected: Vec<(String, String, String)> = reqs
        .iter()
        .map(|(m, p, id)| (m.to_string(), p.to_string(), id.to_string()))
        .collect();
    assert_eq!(seen, expected);
}

/// The `app_connection_lost` events in `proxy`'s log once `access_events`
/// requests have been logged (an access-log event comes after any crash
/// event of its request).
async fn crash_events(proxy: &ProxyProcess, access_events: usize) -> Vec<serde_json::Value> {
    eventually(5, "access-log events", || {
        proxy
            .json_logs()
            .iter()
            .filter(|v| v["target"] == "access")
            .count()
            >= access_events
    })
    .await;
    proxy.events("app_connection_lost")
}

fn crash_paths(event: &serde_json::Value) -> Vec<String> {
    let list: Vec<serde_json::Value> =
        serde_json::from_str(event["requests"].as_str().expect("requests string")).unwrap();
    let mut paths: Vec<String> = list
        .iter()
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_event_names_only_the_requests_on_the_dead_endpoint() {
    let a = DoomedApp::start().await;
    let b = DoomedApp::start().await;
    let proxy = ProxyProcess::with_endpoints(&[a.addr, b.addr], TCP_PROBES).await;
    let addr = proxy.addr;
    // POSTs: never retried, so each stays on the endpoint it was sent to.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            tokio::spawn(async move { raw_exchange(addr, &post(&format!("/p{i}"), "x"), 10).await })
        })
        .collect();
    eventually(5, "4 requests held by the two apps", || {
        a.held() + b.held() == 4
    })
    .await;
    let on_a = a.held();
    a.crash();
    eventually(5, "crash event for the first app", || {
        proxy
            .json_logs()
            .iter()
            .any(|v| v["event"] == "app_connection_lost")
    })
    .await;
    b.crash();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &terminated_unknown()),
            other => panic!("POST {i}: {other:?}"),
        }
    }
    let events = crash_events(&proxy, 4).await;
    let mut expected = Vec::new();
    if on_a > 0 {
        expected.push((a.addr.to_string(), on_a));
    }
    if on_a < 4 {
        expected.push((b.addr.to_string(), 4 - on_a));
    }
    let got: Vec<(String, usize)> = events
        .iter()
        .map(|e| {
            (
                e["endpoint"].as_str().unwrap().to_owned(),
                e["in_flight"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(got, expected, "one event per dead app: {events:#?}");
    let mut all: Vec<String> = events.iter().flat_map(crash_paths).collect();
    all.sort();
    assert_eq!(all, ["/p0", "/p1", "/p2", "/p3"], "{events:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_request_whose_both_apps_die_is_named_in_both_crash_events() {
    let (a, b) = ScriptedUpstream::pair(Script::Reset).await;
    // One resend (`retry.attempts: 1`), which goes to the other endpoint.
    let proxy = ProxyProcess::with_endpoints(
        &[a.addr, b.addr],
        &format!("{TCP_PROBES}retry:\n  attempts: 1\n"),
    )
    .await;
    let r = raw_exchange(proxy.addr, &get("/twice"), 10)
        .await
        .response();
    assert_synthesized(&r, 503, &terminated());
    assert_eq!(
        (a.requests(), b.requests()),
        (1, 1),
        "tried on each app once"
    );
    let events = crash_events(&proxy, 1).await;
    let mut endpoints: Vec<String> = events
        .iter()
        .map(|e| e["endpoint"].as_str().unwrap().to_owned())
        .collect();
    endpoints.sort();
    let mut expected = vec![a.addr.to_string(), b.addr.to_string()];
    expected.sort();
    assert_eq!(
        endpoints, expected,
        "each app that died with /twice in flight gets its event: {events:#?}"
    );
    for e in &events {
        assert_eq!(crash_paths(e), ["/twice"], "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn death_after_response_headers_logs_a_crash_event() {
    let app = ScriptedUpstream::start(Script::RawThenReset(
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello",
    ))
    .await;
    let proxy = ProxyProcess::with_endpoints(&[app.addr], "").await;
    let r = raw_exchange(proxy.addr, &get("/download"), 10)
        .await
        .response();
    assert_eq!(r.status, 200);
    assert!(r.truncated, "{r:?}");
    let events = crash_events(&proxy, 1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0]["trigger"], "reset_after_response",
        "{:#}",
        events[0]
    );
    assert_eq!(events[0]["endpoint"], app.addr.to_string().as_str());
    assert_eq!(crash_paths(&events[0]), ["/download"]);
}
