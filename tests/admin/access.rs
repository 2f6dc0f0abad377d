//! Access from outside loopback: 403 without a token, 401 without the
//! right one.

use super::{call, from_outside, json, loopback, wildcard_admin};
use std::net::SocketAddr;
use support::*;

#[tokio::test]
async fn outside_loopback_without_a_token_protected_endpoints_are_forbidden() {
    let (_app, proxy, _) = wildcard_admin("0.0.0.0:0", None, "").await;
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

/// Authorization headers that do not carry the token `s3cret-T0ken`.
const WRONG_CREDENTIALS: [(&str, &str); 6] = [
    ("no Authorization", ""),
    ("wrong token", "Authorization: Bearer s3cret-T0keN\r\n"),
    ("token prefix", "Authorization: Bearer s3cret\r\n"),
    ("longer token", "Authorization: Bearer s3cret-T0ken2\r\n"),
    ("other scheme", "Authorization: Basic czNjcmV0LVQwa2Vu\r\n"),
    ("bare token", "Authorization: s3cret-T0ken\r\n"),
];

#[tokio::test]
async fn outside_loopback_the_bearer_token_from_token_file_is_required() {
    let drain = "drain:\n  delay: 0s\n  timeout: 2s\n";
    let (_app, proxy, _dir) = wildcard_admin("0.0.0.0:0", Some("s3cret-T0ken\n"), drain).await;
    let Some(outside) = from_outside(&proxy, "outside_loopback_the_bearer_token") else {
        return;
    };
    wait_ready(loopback(&proxy)).await;

    for (what, header) in WRONG_CREDENTIALS {
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
    let (_app, proxy, _dir) = wildcard_admin("0.0.0.0:0", Some("s3cret-T0ken"), "").await;
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
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("SKIPPED dual_stack_admin_port: no IPv6 on this machine");
        return;
    }
    let (_app, proxy, _) = wildcard_admin("[::]:0", None, "").await;
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
