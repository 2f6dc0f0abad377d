//! `lifeguard drain`: for a `preStop` exec hook in the lifeguard container.
//! Asks the running lifeguard (over its admin port, from loopback) to start
//! draining, then waits until it has drained, so the kubelet's SIGTERM comes
//! only when nothing is in flight.

use crate::config::Config;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::net::TcpStream;

/// The admin address as reachable from this host: a wildcard listen address
/// becomes loopback.
pub fn admin_target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

/// Starts the drain and (with `wait`) waits for it to end. Returns whether
/// lifeguard reports itself drained.
pub async fn run(config: &Config, wait: bool) -> anyhow::Result<bool> {
    let target = admin_target(config.admin.listen);
    let token = config.admin.token.as_ref().map(|t| t.expose());
    let (status, body) = call(target, Method::POST, "/admin/drain", token).await?;
    if status != StatusCode::ACCEPTED {
        anyhow::bail!("{target}: /admin/drain answered {status}: {body}");
    }
    eprintln!("lifeguard drain: started ({body})", body = body.trim());
    if !wait {
        return Ok(true);
    }
    // Past the drain deadline lifeguard is drained whatever is in flight.
    let wait_for = config.drain.timeout + Duration::from_secs(5);
    let path = format!("/admin/drained?wait={}ms", wait_for.as_millis());
    let (status, body) = call(target, Method::GET, &path, token).await?;
    eprintln!("lifeguard drain: {}", body.trim());
    Ok(status == StatusCode::OK)
}

async fn call(
    target: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, String)> {
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach lifeguard's admin port at {target}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, target.to_string())
        .header(header::CONNECTION, "close");
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::new()))?)
        .await?;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
