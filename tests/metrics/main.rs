//! Observability: `GET /metrics` (Prometheus text exposition, prefix
//! `lifeguard_`) and `GET /status` (JSON). After a scripted scenario against
//! one app endpoint every counter is asserted to its exact value, and the
//! whole exposition is parsed by a strict hand-written parser
//! (`support::prometheus`: every sample's family has `# HELP` and `# TYPE`,
//! families are contiguous, histograms are cumulative and end with `+Inf`
//! equal to `_count`).

mod counters;
mod parser;
mod series;
mod status;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use support::upstream::{read_request, reset, write_then_reset};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A raw-TCP app answering one request per connection, always with
/// `Connection: close` (so nothing is pooled): `/health` and `/ok` → 200,
/// `/slow/<ms>` → 200 after `<ms>`, `/crash` → RST before any response byte,
/// `/truncate` → response head and part of the body, then RST, `/garbage` →
/// not HTTP, `/stall` → never answers.
struct ScriptApp {
    addr: SocketAddr,
    /// `METHOD target` of every request other than `/health`.
    seen: Arc<Mutex<Vec<String>>>,
    app: RawApp,
}

impl ScriptApp {
    async fn start() -> ScriptApp {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let s2 = seen.clone();
        let app = RawApp::start(move |stream| serve_script(stream, s2.clone())).await;
        ScriptApp {
            addr: app.addr,
            seen,
            app,
        }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// Stops listening and closes every connection: connects are refused.
    async fn stop(&mut self) {
        self.app.stop().await;
    }
}

async fn serve_script(mut s: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let Some(req) = read_request(&mut s).await else {
        return;
    };
    let head = String::from_utf8_lossy(&req).into_owned();
    let mut first = head.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let target = first.next().unwrap_or("").to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    if path != "/health" {
        seen.lock().unwrap().push(format!("{method} {target}"));
    }
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    match path.as_str() {
        "/crash" => reset(s),
        "/stall" => tokio::time::sleep(Duration::from_secs(3600)).await,
        "/garbage" => {
            let _ = s.write_all(b"garbage\r\n\r\n").await;
            let _ = s.shutdown().await;
        }
        "/truncate" => {
            let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
            write_then_reset(s, partial, Duration::from_millis(100)).await;
        }
        p => {
            if let Some(ms) = p.strip_prefix("/slow/").and_then(|m| m.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let _ = s.write_all(ok(&format!("done {p}")).as_bytes()).await;
            let _ = s.shutdown().await;
        }
    }
}

async fn send(addr: SocketAddr, method: &str, path: &str) -> RawResponse {
    let body = if method == "POST" { "x" } else { "" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw_exchange(addr, req.as_bytes(), 10).await.response()
}

/// Whether the response's `Proxy-Status` names `error`.
fn proxy_status_names(r: &RawResponse, error: &str) -> bool {
    r.header("proxy-status").is_some_and(|v| v.contains(error))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
