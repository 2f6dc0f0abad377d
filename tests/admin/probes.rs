//! Probe endpoints: `/livez`, `/readyz`, and unknown paths and methods.

use super::{call, ready_proxy};
use std::time::Duration;
use support::*;

#[tokio::test]
async fn livez_readyz_and_unknown_paths() {
    let (_app, proxy, admin) = ready_proxy("").await;
    assert_eq!(admin_get(admin, "/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(
        admin_get(admin, "/readyz").await,
        (200, "ready\n".to_owned())
    );
    let r = call(admin, "HEAD", "/readyz", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(admin_get(admin, "/nope").await.0, 404);
    assert_eq!(admin_get(admin, "/admin").await.0, 404);
    for (method, path) in [
        ("POST", "/livez"),
        ("DELETE", "/readyz"),
        ("POST", "/metrics"),
        ("PUT", "/admin/drain"),
        ("POST", "/admin/inflight"),
        ("POST", "/admin/drained"),
    ] {
        let r = call(admin, method, path, "").await;
        assert_eq!(r.status, 405, "{method} {path}: {r:?}");
    }
    let r = call(admin, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")),
        "{r:?}"
    );
    // Nothing above started a drain.
    assert_eq!(proxy.running.shared.phase().as_str(), "running");

    // No endpoint up: not ready, but live.
    let dead = Proxy::with_endpoints(&[closed_port()], "").await;
    let admin = dead.admin();
    eventually_async(
        Duration::from_secs(3),
        "the endpoint probed down",
        || async {
            dead.running
                .shared
                .snapshot
                .load()
                .endpoints
                .iter()
                .all(|e| e.is_down())
        },
    )
    .await;
    // ... and says why, naming each endpoint's cause.
    let dead_addr = dead.endpoint(0).name.clone();
    assert_eq!(
        admin_get(admin, "/readyz").await,
        (
            503,
            format!(
                "not ready: no app endpoint is up ({dead_addr}: first probe connection refused)\n"
            )
        )
    );
    assert_eq!(admin_get(admin, "/livez").await.0, 200);

    // ... unless readiness does not require the app.
    let lenient =
        Proxy::with_endpoints(&[closed_port()], "health:\n  ready_requires_app: false\n").await;
    assert_eq!(admin_get(lenient.admin(), "/readyz").await.0, 200);
}
