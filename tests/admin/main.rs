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

mod access;
mod drain;
mod inflight;
mod probes;

use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use support::*;

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

/// A slow app behind an in-process proxy on `extra`, ready, and the proxy's
/// admin address.
async fn ready_proxy(extra: &str) -> (TestUpstream, Proxy, SocketAddr) {
    let app = TestUpstream::slow().await;
    let proxy = Proxy::with_endpoints(&[app.addr], extra).await;
    let admin = proxy.admin();
    wait_ready(admin).await;
    (app, proxy, admin)
}

/// A slow app behind an in-process proxy whose admin port listens on the
/// wildcard address `listen`, with `admin.token_file` holding `token` when
/// there is one (in the returned temp dir), then `extra`.
async fn wildcard_admin(
    listen: &str,
    token: Option<&str>,
    extra: &str,
) -> (TestUpstream, Proxy, Option<tempfile::TempDir>) {
    let app = TestUpstream::slow().await;
    let token = token.map(|t| temp_file("token", t));
    let token_line = token.as_ref().map_or(String::new(), |(_, path)| {
        format!("  token_file: \"{}\"\n", path.display())
    });
    let proxy = Proxy::start(&format!(
        "admin:\n  listen: \"{listen}\"\n{token_line}app:\n  endpoints: [\"{}\"]\n{extra}",
        app.addr
    ))
    .await;
    (app, proxy, token.map(|(dir, _)| dir))
}

fn loopback(proxy: &Proxy) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], proxy.admin().port()))
}

fn json(r: &RawResponse) -> Value {
    serde_json::from_str(&r.body_text())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.body_text()))
}
