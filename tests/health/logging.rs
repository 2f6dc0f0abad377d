//! The state-change log lines.

use super::{assert_unavailable, get, Flip};
use support::net::kill_app;
use support::*;

use std::time::Duration;
use tokio::time::Instant;

/// The "app endpoint up/down" log lines of a child lifeguard.
fn state_changes(p: &ProxyProcess) -> Vec<serde_json::Value> {
    p.json_logs()
        .into_iter()
        .filter(|v| v["message"] == "app endpoint up" || v["message"] == "app endpoint down")
        .collect()
}

/// Waits until at least `n` state-change lines were logged.
async fn wait_for(p: &ProxyProcess, n: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let c = state_changes(p);
        if c.len() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {c:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Every state change is logged exactly once, with its reason: up (first
/// probe), down (refused; many more refused probes and requests follow),
/// up again (after `healthy_threshold` probes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn state_changes_are_logged_once_each() {
    let (flip, app) = Flip::start().await;
    let addr = app.addr;
    let mut proxy = ProxyProcess::with_endpoints(
        &[addr],
        "health:\n  interval: 20ms\n  down_interval: 20ms\nunavailable:\n  hold: 0s\n",
    )
    .await;

    // Up from the first probe; many more probes change nothing.
    wait_for(&proxy, 1, "first up").await;
    let seen = flip.probes();
    eventually(5, "10 more probes", || flip.probes() >= seen + 10).await;
    assert_eq!(get(proxy.addr, "/x").await.status, 200);

    // Down: refused probes and refused/held requests, one log line.
    kill_app(app).await;
    for _ in 0..3 {
        assert_eq!(get(proxy.addr, "/x").await.status, 503);
    }
    wait_for(&proxy, 2, "down").await;
    // ~15 more refused probe periods.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        assert_unavailable(&get(proxy.addr, "/x").await, "down");
    }

    // Up again after two good probes.
    let _app = flip.restart_on(addr).await;
    wait_for(&proxy, 3, "up again").await;
    let seen = flip.probes();
    eventually(5, "10 more probes", || flip.probes() >= seen + 10).await;
    assert_eq!(get(proxy.addr, "/x").await.status, 200);

    let c = state_changes(&proxy);
    let summary: Vec<(String, String, String, String)> = c
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("<missing>").to_owned();
            (s("message"), s("endpoint"), s("from"), s("reason"))
        })
        .collect();
    assert_eq!(summary.len(), 3, "one line per change: {summary:#?}");
    let ep = addr.to_string();
    assert_eq!(
        summary[0],
        (
            "app endpoint up".into(),
            ep.clone(),
            "Unknown".into(),
            "first probe answered 200".into()
        )
    );
    assert_eq!(
        (&summary[1].0, &summary[1].1, &summary[1].2),
        (&"app endpoint down".to_string(), &ep, &"Up".to_string())
    );
    assert!(
        summary[1].3 == "probe connection refused" || summary[1].3 == "request connect refused",
        "down reason: {}",
        summary[1].3
    );
    assert_eq!(
        summary[2],
        (
            "app endpoint up".into(),
            ep,
            "Down".into(),
            "probe answered 200 (2 in a row)".into()
        )
    );
    proxy.signal(libc::SIGKILL);
    let _ = proxy.wait_exit(5).await;
}
