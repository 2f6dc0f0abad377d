//! Drain: the process lifecycle from SIGTERM/SIGINT, `/admin/drain` or
//! `lifeguard drain` to exit. Real child processes, real signals, real
//! sockets: `/readyz` turns 503 at once, lifeguard keeps accepting for
//! `drain.delay`, then refuses new connections, closes keep-alive connections
//! (`Connection: close`, HTTP/2 GOAWAY, WebSocket close frame), lets requests
//! in flight finish, and exits as soon as nothing is left — or at
//! `drain.timeout`, counted from the start of the drain, naming what was left.

mod check;
mod command;
mod http2;
mod signals;
mod websocket;

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::admin::status_json;
use support::client::read_response;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// A child-process lifeguard in front of `app`, ready (its first probe passed).
async fn start_proxy(app: SocketAddr, extra: &str) -> ProxyProcess {
    let p = ProxyProcess::with_endpoints(&[app], extra).await;
    wait_ready(p.admin).await;
    p
}

/// A slow app (`TestUpstream::slow`) and a ready child-process lifeguard in
/// front of it.
async fn slow_proxy(extra: &str) -> (TestUpstream, ProxyProcess) {
    let app = TestUpstream::slow().await;
    let p = start_proxy(app.addr, extra).await;
    (app, p)
}

/// `GET path` through `addr` in the background, waiting up to `secs` for the
/// answer.
fn spawn_get(addr: SocketAddr, path: &str, secs: u64) -> JoinHandle<RawOutcome> {
    let req = get(path);
    tokio::spawn(async move { raw_exchange(addr, req.as_bytes(), secs).await })
}

/// Sends `sig` to `p` and waits (up to `within`) until its phase is `phase`.
async fn signal_until_phase(p: &ProxyProcess, sig: i32, phase_name: &str, within: Duration) {
    p.signal(sig);
    let admin = p.admin;
    eventually_async(within, &format!("phase {phase_name}"), move || async move {
        phase(admin).await == phase_name
    })
    .await;
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

async fn phase(admin: SocketAddr) -> String {
    status_json(admin).await["phase"]
        .as_str()
        .expect("phase")
        .to_owned()
}

/// One request on an open (keep-alive) connection.
async fn request_on(s: &mut TcpStream, path: &str) -> RawResponse {
    s.write_all(get(path).as_bytes()).await.unwrap();
    read_response(s, 10, false).await.response()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_with_message(p: &ProxyProcess, message: &str) -> Option<Value> {
    p.json_logs()
        .into_iter()
        .find(|v| v["message"].as_str() == Some(message))
}

fn connect_refused(r: &std::io::Result<TcpStream>) -> bool {
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}
