//! Test support: lifeguard in-process or as a real child process, test
//! upstreams on port 0 (a hyper app, and a scripted raw-TCP peer that
//! misbehaves on cue), and a raw HTTP/1 client that can tell "closed without a
//! response" apart from any status. No fixed ports, no sleeps as sync.
//!
//! A library crate of its own (`lifeguard-test-support`, a dev-dependency
//! named `support`): each test binary `use`s what it needs. The library's
//! own items are reached through [`api`] only.
//!
//! - [`Proxy`] (here) and [`process::ProxyProcess`]: lifeguard in-process or
//!   as a child process; [`child`]: piped child processes.
//! - [`upstream`]: `TestUpstream`, `RawApp`, `ScriptedUpstream`; [`doomed`]:
//!   apps that die; [`node`]: Node.js apps.
//! - [`client`] and [`raw`]: raw HTTP/1 over a socket; [`h2`]: raw HTTP/2
//!   frames; [`tls`]: a test CA and an HTTPS client.
//! - [`admin`]: admin calls; [`prometheus`]: the strict `/metrics` parser;
//!   [`synth`]: what lifeguard's own answers say.
//! - [`configmap`], [`net`]: a ConfigMap-style directory, port waits.

pub mod admin;
pub mod api;
pub mod child;
pub mod client;
pub mod configmap;
pub mod doomed;
pub mod h2;
pub mod net;
pub mod node;
pub mod process;
pub mod prometheus;
pub mod raw;
pub mod synth;
pub mod tls;
pub mod tools;
pub mod upstream;

pub use client::{raw_exchange, RawOutcome, RawResponse};
pub use process::ProxyProcess;
pub use upstream::{closed_port, RawApp, Script, ScriptedUpstream, TestUpstream};

use api::{Config, Running};
use std::net::SocketAddr;

/// lifeguard running inside the test's tokio runtime.
#[derive(Debug)]
pub struct Proxy {
    pub running: Running,
}

impl Proxy {
    /// Starts lifeguard with `yaml` (listen addresses default to port 0 on
    /// loopback unless `yaml` sets them).
    pub async fn start(yaml: &str) -> Proxy {
        let mut text = String::new();
        if !yaml.contains("\nlisten:") && !yaml.starts_with("listen:") {
            text.push_str("listen: \"127.0.0.1:0\"\n");
        }
        if !yaml.contains("admin:") {
            text.push_str("admin:\n  listen: \"127.0.0.1:0\"\n");
        }
        text.push_str(yaml);
        let config = Config::from_yaml(&text, "test")
            .unwrap_or_else(|e| panic!("bad test config: {e}\n{text}"));
        init_logging();
        let running = api::start(config).await.expect("lifeguard starts");
        Proxy { running }
    }

    /// A config with one or more endpoints and otherwise defaults.
    pub async fn with_endpoints(endpoints: &[SocketAddr], extra: &str) -> Proxy {
        Proxy::start(&endpoints_yaml(endpoints, extra)).await
    }

    /// A scripted app (`ScriptedUpstream`) and a proxy in front of it.
    pub async fn scripted(script: Script, extra: &str) -> (ScriptedUpstream, Proxy) {
        let app = ScriptedUpstream::start(script).await;
        let proxy = Proxy::with_endpoints(&[app.addr], extra).await;
        (app, proxy)
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.proxy_addr
    }

    pub fn admin(&self) -> SocketAddr {
        self.running.admin_addr
    }

    /// Endpoint `i` once a probe found it up (`what` names the wait).
    pub async fn endpoint_up(&self, i: usize, what: &str) -> std::sync::Arc<api::Endpoint> {
        let e = self.endpoint(i);
        eventually(5, what, || e.is_up()).await;
        e
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    /// The proxy's view of endpoint `i` (public library API).
    pub fn endpoint(&self, i: usize) -> std::sync::Arc<api::Endpoint> {
        self.running.shared.snapshot.load().endpoints[i].clone()
    }
}

/// `app.endpoints` set to `endpoints`, then `extra`, which may go on with
/// more of the `app:` section (indented lines) or start other sections.
pub fn endpoints_yaml(endpoints: &[SocketAddr], extra: &str) -> String {
    let list: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    format!("app:\n  endpoints: [{}]\n{extra}", list.join(", "))
}

fn init_logging() {
    use std::sync::Once;
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let level = std::env::var("LIFEGUARD_TEST_LOG").unwrap_or_else(|_| "warn".into());
        // Kept for the whole test process: dropping it would stop the log writer.
        std::mem::forget(api::init_logging(&api::LogConfig {
            format: api::LogFormat::Text,
            level,
        }));
    });
}

/// A file named `name` holding `content` in a new temp dir (kept as long as
/// the returned guard): a token, a page, a config.
pub fn temp_file(name: &str, content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

/// Waits until `cond` holds, polling every 10 ms, failing after `secs`.
pub async fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits until the async `cond` holds, polling every 10 ms, failing after
/// `limit`. Returns how long it took.
pub async fn eventually_async<F, Fut>(
    limit: std::time::Duration,
    what: &str,
    mut cond: F,
) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits (up to 5 s) until the admin port answers `/readyz` with 200.
pub async fn wait_ready(admin: SocketAddr) {
    eventually_async(
        std::time::Duration::from_secs(5),
        "/readyz 200",
        move || async move { admin_get(admin, "/readyz").await.0 == 200 },
    )
    .await;
}

/// A plain HTTP/1.1 GET on the admin port, returning (status, body).
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n");
    match raw_exchange(admin, req.as_bytes(), 5).await {
        RawOutcome::Response(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
        other => panic!("admin {path}: {other:?}"),
    }
}
