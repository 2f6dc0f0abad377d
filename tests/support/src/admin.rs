//! Admin calls: over loopback (a real socket), or as if from another host —
//! the admin connection handler served over an in-memory pipe with a chosen
//! peer address, so access rules for non-loopback callers are tested without
//! sending traffic to any other address.

use crate::api::{serve_admin_connection, Shared};
use crate::client::{raw_exchange, RawOutcome};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;

/// `method path` on the admin port over loopback, with extra header lines
/// (each ending in CRLF). Returns (status, body).
pub async fn admin_call(
    admin: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> (u16, String) {
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n{headers}\r\n"
    );
    match raw_exchange(admin, req.as_bytes(), 10).await {
        RawOutcome::Response(r) => (r.status, r.body_text()),
        other => panic!("admin {method} {path}: {other:?}"),
    }
}

/// `method path` as if the caller were at `peer`, with optional bearer token.
pub async fn admin_call_from(
    shared: &Arc<Shared>,
    peer: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let peer: SocketAddr = peer.parse().unwrap();
    tokio::spawn(serve_admin_connection(server, peer, shared.clone()));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "admin");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The value of an unlabelled metric line (e.g. `lifeguard_config_generation`
/// or `lifeguard_config_reloads_total{result="invalid"}`), 0 when absent.
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (_, text) = crate::admin_get(admin, "/metrics").await;
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `GET /status` as JSON.
pub async fn status_json(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = crate::admin_get(admin, "/status").await;
    assert_eq!(code, 200, "/status: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// The requests lifeguard lists as in flight (`GET /admin/inflight`, from
/// loopback).
pub async fn inflight(admin: SocketAddr) -> Vec<serde_json::Value> {
    let (code, body) = crate::admin_get(admin, "/admin/inflight").await;
    assert_eq!(code, 200, "/admin/inflight: {body}");
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("/admin/inflight is not a JSON array ({e}): {body}"))
}

/// Waits (up to 5 s) until exactly `n` requests are listed in flight.
pub async fn wait_inflight(admin: SocketAddr, n: usize) {
    crate::eventually_async(
        std::time::Duration::from_secs(5),
        &format!("{n} request(s) in flight"),
        move || async move { inflight(admin).await.len() == n },
    )
    .await;
}

/// Waits (up to 3 s) until the series `series` (see [`metric`]) reads
/// `value`.
pub async fn wait_metric(admin: SocketAddr, series: &str, value: f64) {
    crate::eventually_async(
        std::time::Duration::from_secs(3),
        &format!("{series} {value}"),
        move || async move { metric(admin, series).await == value },
    )
    .await;
}
