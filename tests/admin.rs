//! The admin port: probe endpoints, `/admin/inflight`, `/admin/drain`, and who
//! may call what. `/livez`, `/readyz`, `/metrics`, `/status` and
//! `/admin/drained` are open; `/admin/drain` and `/admin/inflight` are allowed
//! from loopback, or elsewhere with `Authorization: Bearer <admin.token_file>`
//! (403 when no token is configured, 401 + `WWW-Authenticate: Bearer` when it
//! is missing or wrong).
//!
//! Non-loopback access is tested for real: the admin port listens on the
//! wildcard address and the test connects to this machine's own non-loopback
//! address (skipped, with a message, when the machine has none).

use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use support::*;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// One request to `addr` with `method`, `path` and extra header lines.
async fn call(addr: SocketAddr, method: &str, path: &str, headers: &str) -> RawResponse {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    match raw_exchange(addr, req.as_bytes(), 5).await {
        RawOutcome::Response(r) => r,
        other => panic!("{method} {path} on {addr}: {other:?}"),
    }
}

/// This machine's own non-loopback IPv4 address, if it has one. The UDP
/// `connect` only picks a route: no packet is sent.
fn own_non_loopback_ip() -> Option<IpAddr> {
    let routed = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("10.255.255.255:1").map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    routed.or_else(|| {
        let out = std::process::Command::new("hostname")
            .arg("-I")
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|w| w.parse::<IpAddr>().ok())
            .find(|ip| ip.is_ipv4() && !ip.is_loopback())
    })
}

/// The admin port of `proxy` (listening on a wildcard address) as reached
/// from this machine's non-loopback address, or `None` (test skipped).
fn from_outside(proxy: &Proxy, test: &str) -> Option<SocketAddr> {
    match own_non_loopback_ip() {
        Some(ip) => Some(SocketAddr::new(ip, proxy.admin().port())),
        None => {
            eprintln!("SKIPPED {test}: this machine has no non-loopback address to connect from");
            None
        }
    }
}

fn loopback(proxy: &Proxy) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], proxy.admin().port()))
}

fn json(r: &RawResponse) -> Value {
    serde_json::from_str(&r.body_text())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body_text()))
}

// ---------------------------------------------------------------------------
// Probe endpoints
// ---------------------------------------------------------------------------

#[tokio::test]
async fn livez_readyz_and_unknown_paths() {
    let app = TestUpstream::slow().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let admin = proxy.admin();
    wait_ready(admin).await;
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
    assert_eq!(
        admin_get(admin, "/readyz").await,
        (503, "not ready: no app endpoint is up\n".to_owned())
    );
    assert_eq!(admin_get(admin, "/livez").await.0, 200);

    // ... unless readiness does not require the app.
    let lenient =
        Proxy::with_endpoints(&[closed_port()], "health:\n  ready_requires_app: false\n").await;
    assert_eq!(admin_get(lenient.admin(), "/readyz").await.0, 200);
}

// ---------------------------------------------------------------------------
// /admin/inflight
// ---------------------------------------------------------------------------

#[tokio::test]
async fn admin_inflight_lists_each_request_in_flight() {
    let app = TestUpstream::slow().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let (addr, admin) = (proxy.addr(), proxy.admin());
    wait_ready(admin).await;
    let r = call(admin, "GET", "/admin/inflight", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(json(&r), serde_json::json!([]));

    let slow = tokio::spawn(async move {
        raw_exchange(
            addr,
            b"POST /slow/800?q=1 HTTP/1.1\r\nHost: a\r\nX-Request-Id: inflight-test-1\r\nContent-Length: 5\r\n\r\nhello",
            10,
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    let list = loop {
        let v = json(&call(admin, "GET", "/admin/inflight", "").await);
        let list = v.as_array().cloned().unwrap_or_default();
        if list.len() == 1 && list[0]["bytes_sent"] == 5 {
            break list;
        }
        assert!(Instant::now() < deadline, "one request listed: {v}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let e = &list[0];
    assert_eq!(e["id"], "inflight-test-1", "{e}");
    assert_eq!(e["method"], "POST", "{e}");
    assert_eq!(e["path"], "/slow/800?q=1", "{e}");
    assert_eq!(e["endpoint"], app.addr.to_string(), "{e}");
    assert!(e["age_ms"].as_u64().is_some(), "{e}");
    let client: SocketAddr = e["client"].as_str().unwrap().parse().unwrap();
    assert!(client.ip().is_loopback(), "{e}");

    let r = slow.await.unwrap().response();
    assert_eq!(r.status, 200);
    let r = call(admin, "GET", "/admin/inflight", "").await;
    assert_eq!(json(&r), serde_json::json!([]));
}

// ---------------------------------------------------------------------------
// /admin/drain
// ---------------------------------------------------------------------------

#[tokio::test]
async fn admin_drain_from_loopback_with_get_starts_the_drain_once() {
    let app = TestUpstream::slow().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "drain:\n  delay: 100ms\n  timeout: 3s\n").await;
    let admin = proxy.admin();
    wait_ready(admin).await;
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
    let mut p = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\"]\ndrain:\n  delay: 200ms\n  timeout: 5s\n",
        app.addr
    ))
    .await;
    let (addr, admin) = (p.addr, p.admin);
    wait_ready(admin).await;
    let slow = tokio::spawn(async move {
        raw_exchange(addr, b"GET /slow/700 HTTP/1.1\r\nHost: a\r\n\r\n", 10).await
    });
    eventually_async(
        Duration::from_secs(3),
        "request in flight",
        move || async move {
            admin_get(admin, "/admin/inflight")
                .await
                .1
                .contains("/slow/700")
        },
    )
    .await;

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
    let t = Instant::now();
    p.signal(libc::SIGTERM);
    let st = p.wait_exit(3).await.expect("exits on SIGTERM");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "already drained, but exit took {:?}",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------
// Access from outside loopback
// ---------------------------------------------------------------------------

#[tokio::test]
async fn outside_loopback_without_a_token_protected_endpoints_are_forbidden() {
    let app = TestUpstream::slow().await;
    let proxy = Proxy::start(&format!(
        "admin:\n  listen: \"0.0.0.0:0\"\napp:\n  endpoints: [\"{}\"]\n",
        app.addr
    ))
    .await;
    let Some(outside) = from_outside(&proxy, "outside_loopback_without_a_token") else {
        return;
    };
    wait_ready(loopback(&proxy)).await;

    for (method, path) in [
        ("GET", "/admin/drain"),
        ("POST", "/admin/drain"),
        ("GET", "/admin/inflight"),
    ] {
        let r = call(outside, method, path, "").await;
        assert_eq!(r.status, 403, "{method} {path} from {outside}: {r:?}");
        // A token sent anyway does not help when none is configured.
        let r = call(outside, method, path, "Authorization: Bearer anything\r\n").await;
        assert_eq!(r.status, 403, "{method} {path} with a token: {r:?}");
    }
    assert_eq!(proxy.running.shared.phase().as_str(), "running");

    // Open endpoints answer anyone.
    assert_eq!(call(outside, "GET", "/livez", "").await.status, 200);
    assert_eq!(call(outside, "GET", "/readyz", "").await.status, 200);
    let r = call(outside, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert!(r.body_text().contains("lifeguard_build_info"));
    let r = call(outside, "GET", "/status", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["phase"], "running");
    let r = call(outside, "GET", "/admin/drained", "").await;
    assert_eq!(r.status, 503, "open, and not drained: {r:?}");
    assert_eq!(json(&r)["drained"], false);

    // Loopback is still allowed.
    let r = call(loopback(&proxy), "GET", "/admin/inflight", "").await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn outside_loopback_the_bearer_token_from_token_file_is_required() {
    let app = TestUpstream::slow().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-T0ken\n").unwrap();
    let proxy = Proxy::start(&format!(
        "admin:\n  listen: \"0.0.0.0:0\"\n  token_file: \"{}\"\napp:\n  endpoints: [\"{}\"]\ndrain:\n  delay: 0s\n  timeout: 2s\n",
        token_file.display(),
        app.addr
    ))
    .await;
    let Some(outside) = from_outside(&proxy, "outside_loopback_the_bearer_token") else {
        return;
    };
    wait_ready(loopback(&proxy)).await;

    for (what, header) in [
        ("no Authorization", ""),
        ("wrong token", "Authorization: Bearer s3cret-T0keN\r\n"),
        ("token prefix", "Authorization: Bearer s3cret\r\n"),
        ("longer token", "Authorization: Bearer s3cret-T0ken2\r\n"),
        ("other scheme", "Authorization: Basic czNjcmV0LVQwa2Vu\r\n"),
        ("bare token", "Authorization: s3cret-T0ken\r\n"),
    ] {
        for (method, path) in [
            ("GET", "/admin/inflight"),
            ("POST", "/admin/drain"),
            ("GET", "/admin/drain"),
        ] {
            let r = call(outside, method, path, header).await;
            assert_eq!(r.status, 401, "{what}: {method} {path}: {r:?}");
            assert_eq!(
                r.header("www-authenticate"),
                Some("Bearer"),
                "{what}: {r:?}"
            );
        }
    }
    assert_eq!(proxy.running.shared.phase().as_str(), "running");

    let auth = "Authorization: Bearer s3cret-T0ken\r\n";
    let r = call(outside, "GET", "/admin/inflight", auth).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(json(&r).is_array());
    // Loopback needs no token even when one is configured.
    assert_eq!(
        call(loopback(&proxy), "GET", "/admin/inflight", "")
            .await
            .status,
        200
    );
    let r = call(outside, "POST", "/admin/drain", auth).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(json(&r)["drain_started"], true);
    let (code, _) = admin_get(loopback(&proxy), "/readyz").await;
    assert_eq!(code, 503);
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive, so
/// `bearer <token>` is the same credential as `Bearer <token>`.
#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let app = TestUpstream::slow().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-T0ken").unwrap();
    let proxy = Proxy::start(&format!(
        "admin:\n  listen: \"0.0.0.0:0\"\n  token_file: \"{}\"\napp:\n  endpoints: [\"{}\"]\n",
        token_file.display(),
        app.addr
    ))
    .await;
    let Some(outside) = from_outside(&proxy, "bearer_scheme_is_case_insensitive") else {
        return;
    };
    for header in [
        "Authorization: bearer s3cret-T0ken\r\n",
        "Authorization: BEARER s3cret-T0ken\r\n",
    ] {
        let r = call(outside, "GET", "/admin/inflight", header).await;
        assert_eq!(r.status, 200, "{header:?}: {r:?}");
    }
}

#[tokio::test]
async fn dual_stack_admin_port_tells_mapped_loopback_from_outside() {
    let app = TestUpstream::slow().await;
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("SKIPPED dual_stack_admin_port: no IPv6 on this machine");
        return;
    }
    let proxy = Proxy::start(&format!(
        "admin:\n  listen: \"[::]:0\"\napp:\n  endpoints: [\"{}\"]\n",
        app.addr
    ))
    .await;
    // 127.0.0.1 arrives as ::ffff:127.0.0.1: loopback.
    let r = call(loopback(&proxy), "GET", "/admin/inflight", "").await;
    assert_eq!(r.status, 200, "IPv4-mapped loopback: {r:?}");
    let r = call(
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], proxy.admin().port())),
        "GET",
        "/admin/inflight",
        "",
    )
    .await;
    assert_eq!(r.status, 200, "::1: {r:?}");
    let Some(outside) = from_outside(&proxy, "dual_stack_admin_port") else {
        return;
    };
    let r = call(outside, "GET", "/admin/inflight", "").await;
    assert_eq!(r.status, 403, "IPv4-mapped {outside}: {r:?}");
}
