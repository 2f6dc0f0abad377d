//! Maintenance mode: each of the three switches (config, flag file, admin),
//! the answer (503, Retry-After, Proxy-Status, HTML page or JSON), the
//! bypass rules, requests in flight, readiness, metrics.

use http::Response;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use support::admin::{admin_call, admin_call_from, metric, status_json};
use support::api::{reload_from, ReloadResult, Trigger};
use support::upstream::full;
use support::*;
use tokio::sync::Semaphore;

/// An app answering "app"; `/slow` waits for a permit of `gate`. Counts
/// requests other than health probes.
async fn app(gate: Arc<Semaphore>) -> (TestUpstream, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let upstream = TestUpstream::start(move |req: http::Request<Incoming>| {
        let (gate, h) = (gate.clone(), h.clone());
        async move {
            if req.uri().path() != "/health" {
                h.fetch_add(1, Ordering::SeqCst);
            }
            if req.uri().path() == "/slow" {
                let _ = gate.acquire().await.map(|p| p.forget());
                return Response::new(full("slow done"));
            }
            Response::new(full("app"))
        }
    })
    .await;
    (upstream, hits)
}

async fn plain_app() -> (TestUpstream, Arc<AtomicUsize>) {
    app(Arc::new(Semaphore::new(0))).await
}

/// `GET path` with extra header lines.
async fn get(addr: SocketAddr, path: &str, headers: &str) -> RawResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{headers}\r\n");
    raw_exchange(addr, req.as_bytes(), 10).await.response()
}

fn assert_maintenance(r: &RawResponse, retry_after: &str) {
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("retry-after"), Some(retry_after));
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable; details=\"maintenance\"")
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test]
async fn config_switch_serves_the_page_or_json_and_reload_turns_it_off() {
    let (upstream, hits) = plain_app().await;
    let endpoints = format!("app:\n  endpoints: [\"{}\"]\n", upstream.addr);
    let proxy = Proxy::start(&format!("{endpoints}maintenance:\n  enabled: true\n")).await;
    let admin = proxy.admin();

    let html = get(proxy.addr(), "/orders", "Accept: text/html\r\n").await;
    assert_maintenance(&html, "300");
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        html.body_text().contains("Down for maintenance"),
        "{}",
        html.body_text()
    );
    assert!(html.body_text().contains("try again in 5m"));

    let json = get(proxy.addr(), "/orders", "Accept: application/json\r\n").await;
    assert_maintenance(&json, "300");
    assert_eq!(json.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_str(&json.body_text()).unwrap();
    assert_eq!(
        (v["status"].as_u64(), v["error"].as_str()),
        (Some(503), Some("maintenance"))
    );
    assert_eq!(v["request_id"].as_str(), json.header("x-request-id"));
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the app");

    assert_eq!(metric(admin, "lifeguard_maintenance").await, 1.0);
    assert_eq!(
        metric(
            admin,
            "lifeguard_synthesized_responses_total{reason=\"maintenance\"}"
        )
        .await,
        2.0
    );
    let status = status_json(admin).await;
    assert_eq!(status["maintenance"]["on"], true);
    assert_eq!(
        status["maintenance"]["sources"],
        serde_json::json!(["config"])
    );

    // Turned off by a reload.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let head = "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n";
    std::fs::write(
        &path,
        format!("{head}{endpoints}maintenance:\n  enabled: false\n"),
    )
    .unwrap();
    let outcome = reload_from(&proxy.running.shared, &path, Trigger::Admin).await;
    assert_eq!(outcome.result, ReloadResult::Success, "{outcome:?}");
    let r = get(proxy.addr(), "/orders", "").await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "app"));
    assert_eq!(metric(admin, "lifeguard_maintenance").await, 0.0);
}

#[tokio::test]
async fn custom_page_is_rendered_once_and_a_missing_one_is_a_config_error() {
    let (upstream, _) = plain_app().await;
    let (dir, page) = temp_file(
        "page.html",
        "<h1>Migrating</h1><p>Back in {{retry_after}}.</p>",
    );
    let proxy = Proxy::with_endpoints(
        &[upstream.addr],
        &format!(
            "maintenance:\n  enabled: true\n  retry_after: 90s\n  page: \"{}\"\n",
            page.display()
        ),
    )
    .await;
    // Changing the file afterwards changes nothing until a reload.
    std::fs::write(&page, "changed").unwrap();
    let r = get(proxy.addr(), "/", "").await;
    assert_maintenance(&r, "90");
    assert_eq!(r.body_text(), "<h1>Migrating</h1><p>Back in 1m 30s.</p>");

    let missing = format!(
        "maintenance:\n  page: \"{}\"\n",
        dir.path().join("nope.html").display()
    );
    let err = support::api::Config::from_yaml(&missing, "t").unwrap_err();
    assert!(
        err.problems()[0].starts_with("maintenance.page: cannot read"),
        "{err}"
    );
}

#[tokio::test]
async fn flag_file_turns_maintenance_on_and_off() {
    let (upstream, _) = plain_app().await;
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("maintenance.flag");
    let proxy = Proxy::with_endpoints(
        &[upstream.addr],
        &format!("maintenance:\n  flag_file: \"{}\"\n", flag.display()),
    )
    .await;
    assert_eq!(get(proxy.addr(), "/", "").await.status, 200);

    std::fs::write(&flag, "").unwrap();
    let shared = proxy.running.shared.clone();
    eventually(5, "flag file seen", || shared.maintenance.is_on()).await;
    assert_maintenance(&get(proxy.addr(), "/", "").await, "300");
    let status = status_json(proxy.admin()).await;
    assert_eq!(
        status["maintenance"]["sources"],
        serde_json::json!(["flag_file"])
    );
    assert_eq!(
        status["maintenance"]["flag_file"],
        flag.display().to_string()
    );

    std::fs::remove_file(&flag).unwrap();
    eventually(5, "flag file removal seen", || !shared.maintenance.is_on()).await;
    assert_eq!(get(proxy.addr(), "/", "").await.status, 200);
}

#[tokio::test]
async fn admin_switch_clears_only_itself_and_needs_loopback_or_token() {
    let (upstream, _) = plain_app().await;
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag");
    let token = dir.path().join("token");
    std::fs::write(&token, "adm1n").unwrap();
    let proxy = Proxy::start(&format!(
        "admin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"{}\"\napp:\n  endpoints: [\"{}\"]\nmaintenance:\n  flag_file: \"{}\"\n",
        token.display(),
        upstream.addr,
        flag.display()
    ))
    .await;
    let (admin, shared) = (proxy.admin(), proxy.running.shared.clone());

    let (code, body) = admin_call(admin, "POST", "/admin/maintenance?state=on", "").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["maintenance"], true);
    assert_eq!(v["sources"], serde_json::json!(["admin"]));
    assert_maintenance(&get(proxy.addr(), "/", "").await, "300");

    // With the flag file also present, "off" leaves maintenance on.
    std::fs::write(&flag, "").unwrap();
    eventually(5, "flag seen", || {
        shared.maintenance.sources() == ["flag_file", "admin"]
    })
    .await;
    let (code, body) = admin_call(admin, "POST", "/admin/maintenance?state=off", "").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["maintenance"], true, "{body}");
    assert_eq!(v["sources"], serde_json::json!(["flag_file"]));
    assert_eq!(get(proxy.addr(), "/", "").await.status, 503);
    std::fs::remove_file(&flag).unwrap();
    eventually(5, "flag removal seen", || !shared.maintenance.is_on()).await;
    assert_eq!(get(proxy.addr(), "/", "").await.status, 200);

    // From outside loopback: the bearer token is required.
    let outside = "192.0.2.10:5000";
    let on = "/admin/maintenance?state=on";
    assert_eq!(
        admin_call_from(&shared, outside, "POST", on, None).await.0,
        401
    );
    assert_eq!(
        admin_call_from(&shared, outside, "POST", on, Some("x"))
            .await
            .0,
        401
    );
    assert!(!shared.maintenance.is_on());
    assert_eq!(
        admin_call_from(&shared, outside, "POST", on, Some("adm1n"))
            .await
            .0,
        200
    );
    assert!(shared.maintenance.is_on());
    assert_eq!(
        admin_call(admin, "POST", "/admin/maintenance?state=maybe", "")
            .await
            .0,
        400
    );
    assert_eq!(admin_call(admin, "GET", on, "").await.0, 405);
}

#[tokio::test]
async fn bypass_by_path_prefix_cidr_and_header_token() {
    let (upstream, hits) = plain_app().await;
    let (_dir, token) = temp_file("bypass", "let-me-in\n");
    let rules = format!(
        "maintenance:\n  enabled: true\n  allow_paths: [/health, /api/status]\n  bypass_cidrs: [\"10.0.0.0/8\", \"fd00::/8\"]\n  bypass_header: X-Maintenance-Bypass\n  bypass_token_file: \"{}\"\n",
        token.display()
    );
    let proxy = Proxy::with_endpoints(&[upstream.addr], &rules).await;
    let addr = proxy.addr();
    for (path, headers, status) in [
        ("/health", "", 200),
        ("/health/db", "", 200),
        ("/api/status?x=1", "", 200),
        ("/healthz", "", 503),
        ("/orders", "", 503),
        ("/orders", "X-Maintenance-Bypass: let-me-in\r\n", 200),
        ("/orders", "X-Maintenance-Bypass: let-me-i\r\n", 503),
        ("/orders", "X-Maintenance-Bypass: let-me-in!\r\n", 503),
        ("/orders", "X-Other: let-me-in\r\n", 503),
    ] {
        let r = get(addr, path, headers).await;
        assert_eq!(r.status, status, "{path} {headers:?}: {r:?}");
    }
    // The bypassed ones reached the app (`/health` is not counted: probes use it).
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // The test client is 127.0.0.1: outside 10/8, inside 127.0.0.0/8.
    let by_peer = Proxy::with_endpoints(
        &[upstream.addr],
        "maintenance:\n  enabled: true\n  bypass_cidrs: [\"127.0.0.0/8\"]\n",
    )
    .await;
    assert_eq!(get(by_peer.addr(), "/orders", "").await.status, 200);
}

#[tokio::test]
async fn requests_in_flight_when_maintenance_starts_finish_normally() {
    let gate = Arc::new(Semaphore::new(0));
    let (upstream, hits) = app(gate.clone()).await;
    let proxy = Proxy::with_endpoints(&[upstream.addr], "").await;
    let addr = proxy.addr();
    let slow = tokio::spawn(async move { get(addr, "/slow", "").await });
    eventually(5, "slow request reached the app", || {
        hits.load(Ordering::SeqCst) == 1
    })
    .await;
    let (code, _) = admin_call(proxy.admin(), "POST", "/admin/maintenance?state=on", "").await;
    assert_eq!(code, 200);
    assert_eq!(get(addr, "/new", "").await.status, 503);
    gate.add_permits(1);
    let r = slow.await.unwrap();
    assert_eq!((r.status, r.body_text().as_str()), (200, "slow done"));
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn readiness_stays_up_by_default_and_follows_maintenance_ready() {
    // The app is down (e.g. stopped for the migration): without maintenance
    // the pod is not ready; with it, the pod serves its page and is ready.
    let dead = Proxy::with_endpoints(&[closed_port()], "").await;
    let shared = dead.running.shared.clone();
    eventually(5, "probe marks the app down", || {
        shared.snapshot.load().endpoints[0].is_down()
    })
    .await;
    assert_eq!(admin_get(dead.admin(), "/readyz").await.0, 503);
    admin_call(dead.admin(), "POST", "/admin/maintenance?state=on", "").await;
    assert_eq!(
        admin_get(dead.admin(), "/readyz").await,
        (200, "ready\n".to_owned())
    );

    // maintenance.ready: false takes the pod out of the Service while on;
    // the app keeps being health-checked meanwhile.
    let (upstream, _) = plain_app().await;
    let strict = Proxy::with_endpoints(
        &[upstream.addr],
        "maintenance:\n  enabled: true\n  ready: false\n",
    )
    .await;
    let shared = strict.running.shared.clone();
    eventually(5, "app probed up during maintenance", || {
        shared.snapshot.load().endpoints[0].is_up()
    })
    .await;
    let (code, body) = admin_get(strict.admin(), "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("maintenance"), "{body}");
    assert_eq!(status_json(strict.admin()).await["ready"], false);
}
