//! Observability: `GET /metrics` (Prometheus text exposition, prefix
//! `lifeguard_`) and `GET /status` (JSON). After a scripted scenario against
//! one app endpoint every counter is asserted to its exact value, and the
//! whole exposition is parsed by a strict hand-written parser (every sample's
//! family has `# HELP` and `# TYPE`, families are contiguous, histograms are
//! cumulative and end with `+Inf` equal to `_count`).

use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::admin::status_json;
use support::prometheus::{assert_series, parse_exposition, scrape};
use support::upstream::{read_request, reset};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

#[test]
fn the_parser_rejects_what_it_should() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n";
    assert_eq!(parse_exposition(ok).get("a_total", &[("x", "1")]), 3.0);
    let bad = [
        "a_total 3\n",                                                   // no TYPE/HELP
        "# TYPE a_total counter\na_total 3\n",                           // no HELP
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3",           // no final newline
        "# HELP a_total A.\n# TYPE a_total counter\na_total{x=1} 3\n",    // unquoted
        "# HELP a_total A.\n# TYPE a_total counter\na_total -1\n",        // negative counter
        "# HELP a_total A.\n# TYPE a_total counter\na_total 3\na_total 4\n", // duplicate
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
        "# HELP h A.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
    ];
    for text in bad {
        let r = std::panic::catch_unwind(|| parse_exposition(text));
        assert!(r.is_err(), "accepted: {text:?}");
    }
}

// ---------------------------------------------------------------------------
// A scripted app: one endpoint whose behaviour is chosen by the path
// ---------------------------------------------------------------------------

/// A raw-TCP app answering one request per connection, always with
/// `Connection: close` (so nothing is pooled): `/health` and `/ok` → 200,
/// `/slow/<ms>` → 200 after `<ms>`, `/crash` → RST before any response byte,
/// `/truncate` → response head and part of the body, then RST, `/garbage` →
/// not HTTP, `/stall` → never answers.
struct ScriptApp {
    addr: SocketAddr,
    /// `METHOD target` of every request other than `/health`.
    seen: Arc<Mutex<Vec<String>>>,
    app: RawApp,
}

impl ScriptApp {
    async fn start() -> ScriptApp {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s2 = seen.clone();
        let app = RawApp::start(move |stream| serve_script(stream, s2.clone())).await;
        ScriptApp {
            addr: app.addr,
            seen,
            app,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops listening and closes every connection: connects are refused.
    async fn stop(&mut self) {
        self.app.stop().await;
    }
}

async fn serve_script(mut s: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let Some(req) = read_request(&mut s).await else {
        return;
    };
    let head = String::from_utf8_lossy(&req).into_owned();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    if path != "/health" {
        seen.lock().unwrap().push(format!("{method} {target}"));
    }
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    match path.as_str() {
        "/crash" => reset(s),
        "/stall" => tokio::time::sleep(Duration::from_secs(3600)).await,
        "/garbage" => {
            let _ = s.write_all(b"garbage\r\n\r\n").await;
            let _ = s.shutdown().await;
        }
        "/truncate" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
                .await;
            let _ = s.flush().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            reset(s);
        }
        p => {
            if let Some(ms) = p.strip_prefix("/slow/").and_then(|m| m.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let _ = s.write_all(ok(&format!("done {p}")).as_bytes()).await;
            let _ = s.shutdown().await;
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

async fn send(addr: SocketAddr, method: &str, path: &str) -> RawResponse {
    let body = if method == "POST" { "x" } else { "" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_exchange(addr, req.as_bytes(), 10).await.response()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_series_exists_from_the_start_and_reads_zero() {
    let app = ScriptApp::start().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let exp = scrape(proxy.admin()).await;
    let ep = app.addr.to_string();
    let ep = ep.as_str();

    for (family, ty) in [
        ("lifeguard_requests_total", "counter"),
        ("lifeguard_request_duration_seconds", "histogram"),
        ("lifeguard_requests_in_flight", "gauge"),
        ("lifeguard_client_connections_open", "gauge"),
        ("lifeguard_client_connections_accepted_total", "counter"),
        ("lifeguard_client_aborts_total", "counter"),
        ("lifeguard_app_endpoint_up", "gauge"),
        ("lifeguard_app_endpoint_state_changes_total", "counter"),
        ("lifeguard_health_probes_total", "counter"),
        ("lifeguard_health_probe_duration_seconds", "histogram"),
        ("lifeguard_upstream_failures_total", "counter"),
        ("lifeguard_synthesized_responses_total", "counter"),
        ("lifeguard_outcome_unknown_total", "counter"),
        ("lifeguard_app_crashes_total", "counter"),
        ("lifeguard_retries_total", "counter"),
        ("lifeguard_retry_budget_exhausted_total", "counter"),
        ("lifeguard_queue_wait_seconds", "histogram"),
        ("lifeguard_draining", "gauge"),
        ("lifeguard_maintenance", "gauge"),
        ("lifeguard_config_generation", "gauge"),
        ("lifeguard_config_reloads_total", "counter"),
        (
            "lifeguard_config_last_reload_success_timestamp_seconds",
            "gauge",
        ),
        ("lifeguard_build_info", "gauge"),
        ("lifeguard_tunnels_open", "gauge"),
    ] {
        assert_eq!(exp.ty(family), ty, "{family}");
    }
    for family in exp.families.keys() {
        assert!(
            family.starts_with("lifeguard_"),
            "unprefixed family {family}"
        );
    }

    // Closed label sets, pre-created at zero.
    let requests = exp.all("lifeguard_requests_total");
    assert_eq!(requests.len(), 50, "10 methods x 5 classes: {requests:?}");
    for m in [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "other",
    ] {
        for c in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            assert_eq!(
                exp.get(
                    "lifeguard_requests_total",
                    &[("method", m), ("code_class", c)]
                ),
                0.0
            );
        }
    }
    assert_series(&exp, "lifeguard_requests_total", &[]);
    let reasons = exp.all("lifeguard_synthesized_responses_total");
    let want: BTreeSet<String> = [
        "app_down",
        "app_crashed",
        "timeout",
        "overload",
        "bad_response",
        "maintenance",
        "draining",
        "bad_request",
    ]
    .iter()
    .map(|r| format!("reason={r}"))
    .collect();
    assert_eq!(reasons.keys().cloned().collect::<BTreeSet<_>>(), want);
    assert_series(&exp, "lifeguard_synthesized_responses_total", &[]);
    let kinds = exp.all("lifeguard_upstream_failures_total");
    assert_eq!(kinds.len(), 7, "{kinds:?}");
    for k in [
        "refused",
        "connect_timeout",
        "connect_failed",
        "reset_before_response",
        "response_timeout",
        "bad_response",
        "reset_after_response",
    ] {
        assert_eq!(
            exp.get(
                "lifeguard_upstream_failures_total",
                &[("endpoint", ep), ("kind", k)]
            ),
            0.0
        );
    }
    assert_eq!(
        exp.get("lifeguard_app_crashes_total", &[("endpoint", ep)]),
        0.0
    );
    for r in ["success", "invalid", "unchanged", "error"] {
        assert_eq!(
            exp.get("lifeguard_config_reloads_total", &[("result", r)]),
            0.0
        );
    }
    assert_eq!(exp.get("lifeguard_config_generation", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_build_info", &[("version", "0.1.0")]),
        1.0
    );
    assert_eq!(exp.all("lifeguard_build_info").len(), 1);
    assert_eq!(exp.get("lifeguard_draining", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_requests_in_flight", &[]), 0.0);
    assert_eq!(
        exp.get("lifeguard_request_duration_seconds_count", &[]),
        0.0
    );
    let loaded = exp.get(
        "lifeguard_config_last_reload_success_timestamp_seconds",
        &[],
    );
    assert!(
        (loaded - unix_now()).abs() < 60.0,
        "config load timestamp {loaded} vs now {}",
        unix_now()
    );
}

/// 3 GETs answered, a PURGE answered, a POST whose app connection is reset
/// (outcome unknown, not retried), two GETs reset on every attempt (retried
/// until `retry.attempts`, then until the budget runs out), a response cut
/// after its head, garbage from the app, a response timeout, a request
/// refused by the overload queue, a refused connect, and a request while the
/// endpoint is known down. Then every counter, exactly.
#[tokio::test]
async fn counters_after_a_scripted_scenario_are_exact() {
    let mut app = ScriptApp::start().await;
    // Probes: once at start and when a request suggests a crash, so a probe
    // never finds the stopped app before the request does.
    let proxy = Proxy::start(&format!(
        "app:\n  endpoints: [\"{}\"]\n  response_timeout: 300ms\n  max_in_flight: 1\n  queue_timeout: 100ms\n\
         health:\n  interval: 1h\n  slow_start: 0s\n\
         unavailable:\n  hold: 0s\n",
        app.addr
    ))
    .await;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    let ep = app.addr.to_string();
    let ep = ep.as_str();
    wait_ready(admin).await;

    for i in 0..3 {
        let r = send(addr, "GET", &format!("/ok?i={i}")).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = send(addr, "PURGE", "/ok").await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = send(addr, "POST", "/crash").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("connection_terminated")),
        "{r:?}"
    );
    // retry.attempts (2): three sends, all reset.
    let r = send(addr, "GET", "/crash?n=1").await;
    assert_eq!(r.status, 503, "{r:?}");
    // The budget (floor 3 per ~10 s) has one resend left.
    let r = send(addr, "GET", "/crash?n=2").await;
    assert_eq!(r.status, 503, "{r:?}");
    let out = raw_exchange(addr, b"GET /truncate HTTP/1.1\r\nHost: t\r\n\r\n", 10).await;
    match out {
        RawOutcome::Response(r) => {
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.truncated, "{r:?}");
        }
        other => panic!("truncated response expected: {other:?}"),
    }
    let r = send(addr, "GET", "/garbage").await;
    assert_eq!(r.status, 502, "{r:?}");

    // A request stalls (then times out) while holding the only slot; another
    // waits queue_timeout for it and is turned away.
    let stall = tokio::spawn(async move { send(addr, "GET", "/stall").await });
    let seen = app.seen.clone();
    eventually_async(Duration::from_secs(3), "the app got /stall", move || {
        let got = seen.lock().unwrap().iter().any(|s| s == "GET /stall");
        async move { got }
    })
    .await;
    let r = send(addr, "GET", "/ok?queued").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("connection_limit_reached")),
        "{r:?}"
    );
    let r = stall.await.unwrap();
    assert_eq!(r.status, 504, "{r:?}");

    let before = scrape(admin).await;
    assert_eq!(
        before.get("lifeguard_app_endpoint_up", &[("endpoint", ep)]),
        1.0
    );

    // The app goes away: the next request's connect is refused, the one
    // after is answered without a connect (the endpoint is known down).
    app.stop().await;
    let r = send(addr, "GET", "/ok?refused").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("connection_refused")),
        "{r:?}"
    );
    let r = send(addr, "GET", "/ok?down").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.header("proxy-status")
            .is_some_and(|v| v.contains("destination_unavailable")),
        "{r:?}"
    );

    assert_eq!(
        app.seen(),
        [
            "GET /ok?i=0",
            "GET /ok?i=1",
            "GET /ok?i=2",
            "PURGE /ok",
            "POST /crash",
            "GET /crash?n=1",
            "GET /crash?n=1",
            "GET /crash?n=1",
            "GET /crash?n=2",
            "GET /crash?n=2",
            "GET /truncate",
            "GET /garbage",
            "GET /stall",
        ]
    );

    // Connections and requests settle to zero (clients have closed).
    eventually_async(
        Duration::from_secs(3),
        "connections closed",
        move || async move {
            let e = scrape(admin).await;
            e.get("lifeguard_client_connections_open", &[]) == 0.0
                && e.get("lifeguard_requests_in_flight", &[]) == 0.0
        },
    )
    .await;
    // Probes keep running (the endpoint is down): scrape until the probe
    // counter and the probe histogram agree.
    let mut exp = scrape(admin).await;
    for _ in 0..20 {
        let probes: f64 = exp.all("lifeguard_health_probes_total").values().sum();
        if probes
            == exp.get(
                "lifeguard_health_probe_duration_seconds_count",
                &[("endpoint", ep)],
            )
        {
            break;
        }
        exp = scrape(admin).await;
    }

    assert_series(
        &exp,
        "lifeguard_requests_total",
        &[
            ("code_class=2xx,method=GET", 4.0),
            ("code_class=2xx,method=other", 1.0),
            ("code_class=5xx,method=POST", 1.0),
            ("code_class=5xx,method=GET", 7.0),
        ],
    );
    assert_eq!(
        exp.get("lifeguard_request_duration_seconds_count", &[]),
        13.0
    );
    assert_series(
        &exp,
        "lifeguard_synthesized_responses_total",
        &[
            ("reason=app_down", 2.0),
            ("reason=app_crashed", 3.0),
            ("reason=timeout", 1.0),
            ("reason=overload", 1.0),
            ("reason=bad_response", 1.0),
        ],
    );
    let e = |kind: &str| format!("endpoint={ep},kind={kind}");
    assert_series(
        &exp,
        "lifeguard_upstream_failures_total",
        &[
            (&e("refused"), 1.0),
            (&e("reset_before_response"), 6.0),
            (&e("reset_after_response"), 1.0),
            (&e("response_timeout"), 1.0),
            (&e("bad_response"), 1.0),
        ],
    );
    assert_eq!(exp.get("lifeguard_outcome_unknown_total", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_app_crashes_total", &[("endpoint", ep)]),
        7.0
    );
    assert_eq!(exp.get("lifeguard_retries_total", &[]), 3.0);
    assert_eq!(exp.get("lifeguard_retry_budget_exhausted_total", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_client_connections_accepted_total", &[]),
        13.0
    );
    assert_eq!(exp.get("lifeguard_client_aborts_total", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_requests_in_flight", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_client_connections_open", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_tunnels_open", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_queue_wait_seconds_count", &[]), 1.0);
    let waited = exp.get("lifeguard_queue_wait_seconds_sum", &[]);
    assert!((0.09..1.0).contains(&waited), "queue wait sum {waited}");
    assert_eq!(
        exp.get("lifeguard_app_endpoint_up", &[("endpoint", ep)]),
        0.0
    );
    assert_series(
        &exp,
        "lifeguard_app_endpoint_state_changes_total",
        &[
            (&format!("endpoint={ep},to=up"), 1.0),
            (&format!("endpoint={ep},to=down"), 1.0),
        ],
    );
    let probe = |r: &str| {
        exp.get(
            "lifeguard_health_probes_total",
            &[("endpoint", ep), ("result", r)],
        )
    };
    assert!(
        probe("healthy") >= 1.0,
        "{:?}",
        exp.all("lifeguard_health_probes_total")
    );
    assert!(
        probe("refused") >= 1.0,
        "{:?}",
        exp.all("lifeguard_health_probes_total")
    );
    for r in ["bad_status", "timeout", "failed"] {
        assert_eq!(probe(r), 0.0, "{r}");
    }
    let probes: f64 = exp.all("lifeguard_health_probes_total").values().sum();
    assert_eq!(
        probes,
        exp.get(
            "lifeguard_health_probe_duration_seconds_count",
            &[("endpoint", ep)]
        ),
        "every probe is timed"
    );
    assert_eq!(exp.get("lifeguard_config_generation", &[]), 1.0);
    assert_eq!(
        exp.get("lifeguard_build_info", &[("version", "0.1.0")]),
        1.0
    );
    assert_eq!(exp.get("lifeguard_draining", &[]), 0.0);
    assert_eq!(exp.get("lifeguard_maintenance", &[]), 0.0);

    // The drain shows.
    let r = raw_exchange(
        admin,
        b"POST /admin/drain HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        5,
    )
    .await
    .response();
    assert_eq!(r.status, 202, "{r:?}");
    let exp = scrape(admin).await;
    assert_eq!(exp.get("lifeguard_draining", &[]), 1.0);
    // Scrapes are not requests.
    assert_eq!(
        exp.get("lifeguard_request_duration_seconds_count", &[]),
        13.0
    );
}

// ---------------------------------------------------------------------------
// /status
// ---------------------------------------------------------------------------

#[tokio::test]
async fn status_reports_config_endpoints_in_flight_and_crashes() {
    let app = ScriptApp::start().await;
    let p = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\"]\nunavailable:\n  hold: 0s\n",
        app.addr
    ))
    .await;
    let (addr, admin) = (p.addr, p.admin);
    wait_ready(admin).await;

    let sha = std::process::Command::new("sha256sum")
        .arg(&p.config_path)
        .output()
        .expect("sha256sum");
    let sha = String::from_utf8_lossy(&sha.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_owned();
    assert_eq!(sha.len(), 64);

    let t_before = unix_now() * 1000.0;
    let s = status_json(admin).await;
    assert_eq!(s["version"], "0.1.0", "{s}");
    assert_eq!(s["phase"], "running", "{s}");
    assert_eq!(s["ready"], true, "{s}");
    assert_eq!(s["config"]["generation"], 1, "{s}");
    assert_eq!(s["config"]["sha256"], sha.as_str(), "{s}");
    assert_eq!(s["in_flight"], 0, "{s}");
    assert_eq!(s["client_connections"], 0, "{s}");
    assert_eq!(s["tunnels"], 0, "{s}");
    assert_eq!(s["drain_outcome"], Value::Null, "{s}");
    assert_eq!(s["recent_crashes"], serde_json::json!([]), "{s}");
    let eps = s["endpoints"].as_array().expect("endpoints");
    assert_eq!(eps.len(), 1, "{s}");
    let e = &eps[0];
    assert_eq!(e["endpoint"], app.addr.to_string(), "{e}");
    assert_eq!(e["state"], "up", "{e}");
    assert_eq!(e["in_flight"], 0, "{e}");
    assert!(e["idle_connections"].as_u64().is_some(), "{e}");
    assert_eq!(e["last_change_reason"], "first probe answered 200", "{e}");
    assert_eq!(e["last_probe"]["result"], "healthy", "{e}");
    assert_eq!(e["last_probe"]["status"], 200, "{e}");
    assert!(
        e["last_probe"]["latency_ms"].as_f64().unwrap() >= 0.0,
        "{e}"
    );
    let probed = e["last_probe"]["at_unix_ms"].as_f64().unwrap();
    assert!(
        probed <= t_before + 1000.0 && probed > t_before - 10_000.0,
        "last probe at {probed}, now {t_before}"
    );
    let changed = e["last_change_unix_ms"].as_f64().unwrap();
    assert!(
        changed <= probed + 1000.0 && changed > t_before - 10_000.0,
        "{e}"
    );

    // A request in flight shows, globally and on its endpoint.
    let slow = tokio::spawn(async move { send(addr, "GET", "/slow/600").await });
    eventually_async(
        Duration::from_secs(3),
        "in flight in /status",
        move || async move {
            let s = status_json(admin).await;
            s["in_flight"] == 1
                && s["endpoints"][0]["in_flight"] == 1
                && s["client_connections"] == 1
        },
    )
    .await;
    assert_eq!(slow.await.unwrap().status, 200);
    eventually_async(
        Duration::from_secs(3),
        "nothing in flight",
        move || async move {
            let s = status_json(admin).await;
            s["in_flight"] == 0 && s["endpoints"][0]["in_flight"] == 0
        },
    )
    .await;

    // A crash is reported with the request that was on the connection.
    let r = send(addr, "POST", "/crash").await;
    assert_eq!(r.status, 503);
    let t_crash = unix_now() * 1000.0;
    let s = status_json(admin).await;
    let crashes = s["recent_crashes"].as_array().expect("recent_crashes");
    assert_eq!(crashes.len(), 1, "{s}");
    let c = &crashes[0];
    assert_eq!(c["endpoint"], app.addr.to_string(), "{c}");
    assert_eq!(c["trigger"], "reset_before_response", "{c}");
    let at = c["at_unix_ms"].as_f64().unwrap();
    assert!(at <= t_crash + 1000.0 && at > t_crash - 5000.0, "{c}");
    let reqs = c["requests"].as_array().expect("requests");
    assert_eq!(reqs.len(), 1, "{c}");
    assert_eq!(reqs[0]["method"], "POST", "{c}");
    assert_eq!(reqs[0]["path"], "/crash", "{c}");
    assert_eq!(reqs[0]["endpoint"], app.addr.to_string(), "{c}");
    assert_eq!(reqs[0]["bytes_sent"], 1, "{c}");
    // The status still reads as a healthy, running proxy.
    assert_eq!(s["phase"], "running");
    assert_eq!(s["config"]["sha256"], sha.as_str());
}
