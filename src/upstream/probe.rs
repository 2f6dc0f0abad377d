//! Active health probes: one task per endpoint, `GET health.path` on a fresh
//! connection (so a probe tests the app's accept path too); the answer's
//! status must be in `health.expect_status`, by default anything below 500:
//! an app that answers at all is alive, even without a health route (404).
//! A probe runs every
//! `health.interval`, or `health.down_interval` while the endpoint is down so
//! a restarted app gets traffic back within a fraction of a second. Passive
//! signals (a refused or reset request) wake the task for an immediate probe.

use super::health::ProbeOutcome;
use crate::config::{HealthConfig, HealthMode};
use bytes::Bytes;
use http::{header, HeaderValue, Request};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use std::io;
use std::net::SocketAddr;
use tokio::net::TcpStream;

/// One probe, bounded by `health.timeout`.
pub async fn probe_once(addr: SocketAddr, cfg: &HealthConfig) -> ProbeOutcome {
    match tokio::time::timeout(cfg.timeout, probe_inner(addr, cfg)).await {
        Ok(outcome) => outcome,
        Err(_) => ProbeOutcome::Timeout,
    }
}

async fn probe_inner(addr: SocketAddr, cfg: &HealthConfig) -> ProbeOutcome {
    let stream = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return ProbeOutcome::Refused,
        Err(_) => return ProbeOutcome::Failed,
    };
    if cfg.mode == HealthMode::Tcp {
        return ProbeOutcome::Healthy(0);
    }
    let _ = stream.set_nodelay(true);
    let Ok((mut sender, conn)) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    else {
        return ProbeOutcome::Failed;
    };
    let driver = tokio::spawn(conn);
    let host =
        HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("localhost"));
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = cfg.path.clone().into();
    let h = req.headers_mut();
    h.insert(header::HOST, host);
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static("lifeguard-health"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    let outcome = match sender.send_request(req).await {
        Ok(resp) if cfg.expect_status.contains(resp.status().as_u16()) => {
            ProbeOutcome::Healthy(resp.status().as_u16())
        }
        Ok(resp) => ProbeOutcome::BadStatus(resp.status().as_u16()),
        Err(_) => ProbeOutcome::Failed,
    };
    driver.abort();
    outcome
}
