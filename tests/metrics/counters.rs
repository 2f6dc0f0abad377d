//! `/metrics`: every counter after a scripted scenario, exactly.

use super::{proxy_status_names, send, ScriptApp};
use std::time::Duration;
use support::prometheus::{assert_series, scrape};
use support::*;

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
    assert!(proxy_status_names(&r, "connection_terminated"), "{r:?}");
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
    assert!(proxy_status_names(&r, "connection_limit_reached"), "{r:?}");
    let r = stall.await.unwrap();
    assert_eq!(r.status, 504, "{r:?}");

    let before = scrape(admin).await;
    assert_eq!(
        before.get("lifeguard_app_endpoint_up", &[("upstream", ep)]),
        1.0
    );

    // The app goes away: the next request's connect is refused, the one
    // after is answered without a connect (the endpoint is known down).
    app.stop().await;
    let r = send(addr, "GET", "/ok?refused").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(proxy_status_names(&r, "connection_refused"), "{r:?}");
    let r = send(addr, "GET", "/ok?down").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(proxy_status_names(&r, "destination_unavailable"), "{r:?}");

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
                &[("upstream", ep)],
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
    let e = |kind: &str| format!("kind={kind},upstream={ep}");
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
        exp.get("lifeguard_app_crashes_total", &[("upstream", ep)]),
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
        exp.get("lifeguard_app_endpoint_up", &[("upstream", ep)]),
        0.0
    );
    assert_series(
        &exp,
        "lifeguard_app_endpoint_state_changes_total",
        &[
            (&format!("to=up,upstream={ep}"), 1.0),
            (&format!("to=down,upstream={ep}"), 1.0),
        ],
    );
    let probe = |r: &str| {
        exp.get(
            "lifeguard_health_probes_total",
            &[("upstream", ep), ("result", r)],
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
            &[("upstream", ep)]
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
