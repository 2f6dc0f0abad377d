//! `/admin/drain`.

use super::{call, json, ready_proxy};
use serde_json::Value;
use std::time::Duration;
use support::admin::wait_inflight;
use support::*;

#[tokio::test]
async fn admin_drain_from_loopback_with_get_starts_the_drain_once() {
    let (_app, proxy, admin) = ready_proxy("drain:\n  delay: 100ms\n  timeout: 3s\n").await;
    // A Kubernetes httpGet preStop hook can only GET.
    let r = call(admin, "GET", "/admin/drain", "").await;
    assert_eq!(r.status, 202, "{r:?}");
    let v = json(&r);
    assert_eq!(v["drain_started"], true, "{v}");
    assert_eq!(v["phase"], "draining", "{v}");
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
    let r = call(admin, "POST", "/admin/drain", "").await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(
        json(&r)["drain_started"],
        false,
        "a second call starts nothing"
    );

    let (code, body) = admin_get(admin, "/admin/drained?wait=5s").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["drained"],
        true
    );
    assert_eq!(proxy.running.shared.phase().as_str(), "stopped");
    let st = json(&call(admin, "GET", "/status", "").await);
    assert_eq!(st["phase"], "stopped", "{st}");
    assert_eq!(st["ready"], false, "{st}");
    assert_eq!(st["drain_outcome"]["result"], "clean", "{st}");
    // Drained, not exited: the admin port still answers.
    assert_eq!(admin_get(admin, "/livez").await.0, 200);
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
}

#[tokio::test]
async fn admin_drain_over_http_leaves_the_process_up_until_sigterm() {
    let app = TestUpstream::slow().await;
    let mut p =
        ProxyProcess::with_endpoints(&[app.addr], "drain:\n  delay: 200ms\n  timeout: 5s\n").await;
    let (addr, admin) = (p.addr, p.admin);
    wait_ready(admin).await;
    let slow = tokio::spawn(async move {
        raw_exchange(addr, b"GET /slow/700 HTTP/1.1\r\nHost: a\r\n\r\n", 10).await
    });
    wait_inflight(admin, 1).await;

    let r = call(admin, "POST", "/admin/drain", "").await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(json(&r)["drain_started"], true);
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
    let (code, body) = admin_get(admin, "/admin/drained?wait=10s").await;
    assert_eq!(code, 200, "{body}");
    let r = slow.await.unwrap().response();
    assert_eq!((r.status, r.body_text().as_str()), (200, "done /slow/700"));

    let logs = p.json_logs();
    assert!(
        logs.iter()
            .any(|v| v["message"] == "drain requested: readiness off" && v["by"] == "admin"),
        "{logs:?}"
    );
    // Drained and idle, but up until a signal comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "the process exited after /admin/drain, without a signal"
    );
    let metrics = admin_get(admin, "/metrics").await.1;
    assert!(
        metrics.lines().any(|l| l == "lifeguard_draining 1"),
        "{metrics}"
    );
    p.assert_exits_at_once_on_sigterm().await;
}
