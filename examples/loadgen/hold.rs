//! `loadgen hold`: opens many client connections and keeps them open, so the
//! benchmark can read what each one costs a proxy (`/proc/PID/status` before,
//! while held, and after they close). With `--request`, each connection first
//! carries one keep-alive `GET /` (an idle keep-alive connection); without,
//! it never sends a byte (a preconnected socket, a port scanner).

use super::loopback_only;
use anyhow::{bail, Context as _};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub(crate) async fn hold(
    target: SocketAddr,
    connections: usize,
    request: bool,
    seconds: f64,
) -> anyhow::Result<()> {
    let target = loopback_only(target)?;
    let mut held = Vec::with_capacity(connections);
    for i in 0..connections {
        let mut stream = TcpStream::connect(target)
            .await
            .with_context(|| format!("connection {i}"))?;
        if request {
            one_request(&mut stream, target)
                .await
                .with_context(|| format!("request on connection {i}"))?;
        }
        held.push(stream);
    }
    // The line the benchmark waits for before it reads the proxy's memory.
    println!("held {connections}");
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    drop(held);
    println!("closed {connections}");
    Ok(())
}

/// `GET /` and its whole response (Content-Length framed), leaving the
/// connection idle and open.
async fn one_request(stream: &mut TcpStream, target: SocketAddr) -> anyhow::Result<()> {
    let req = format!("GET / HTTP/1.1\r\nHost: {target}\r\n\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("closed before the whole response");
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 2") {
            bail!("not a 2xx: {}", head.lines().next().unwrap_or(""));
        }
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no Content-Length")?;
        if buf.len() >= end + 4 + length {
            return Ok(());
        }
    }
}
