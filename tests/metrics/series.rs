//! `/metrics`: every series exists from the start, at zero.

use super::{unix_now, ScriptApp};
use std::collections::BTreeSet;
use support::prometheus::{assert_series, scrape};
use support::*;

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
                &[("upstream", ep), ("kind", k)]
            ),
            0.0
        );
    }
    assert_eq!(
        exp.get("lifeguard_app_crashes_total", &[("upstream", ep)]),
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
