//! `/status`: config, endpoints, requests in flight and recent crashes.

use super::{send, unix_now, ScriptApp};
use serde_json::Value;
use std::time::Duration;
use support::admin::status_json;
use support::*;

#[tokio::test]
async fn status_reports_config_endpoints_in_flight_and_crashes() {
    let app = ScriptApp::start().await;
    let p = ProxyProcess::with_endpoints(&[app.addr], "unavailable:\n  hold: 0s\n").await;
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
