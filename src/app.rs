//! Assembles the running proxy: binds listeners, spawns the long-lived tasks,
//! and owns the shutdown sequence (the `Phase` state machine).

use crate::config::Config;
use crate::server::{admin, listener};
use crate::shutdown::Phase;
use crate::state::Shared;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// A started proxy.
#[derive(Debug)]
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every request finished.
    Clean,
    /// `drain.timeout` passed with requests still in flight.
    Deadline { left_in_flight: usize },
}

/// Binds the listeners and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let proxy = listener::bind(config.listen, config.client.listen_backlog)
        .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
    let admin = listener::bind(config.admin.listen, 128)
        .with_context(|| format!("cannot listen on {} (admin.listen)", config.admin.listen))?;
    let proxy_addr = proxy.local_addr()?;
    let admin_addr = admin.local_addr()?;
    let max_connections = config.client.max_connections;
    let shared = Arc::new(Shared::new(config));
    let connections = Arc::new(Semaphore::new(max_connections));

    tokio::spawn(listener::accept_loop(
        proxy,
        shared.clone(),
        connections.clone(),
    ));
    tokio::spawn(admin::serve(admin, shared.clone()));
    tokio::spawn(evict_idle_app_connections(shared.clone()));
    spawn_probers(&shared);

    shared.phase.send_replace(Phase::Running);
    tracing::info!(listen = %proxy_addr, admin = %admin_addr, version = env!("CARGO_PKG_VERSION"), "lifeguard started");
    Ok(Running {
        proxy_addr,
        admin_addr,
        shared,
        connections,
        max_connections,
    })
}

/// Starts the health prober of every endpoint in the current snapshot that
/// has none yet (endpoints kept across a reload keep theirs).
pub fn spawn_probers(shared: &Arc<Shared>) {
    for e in &shared.snapshot.load().endpoints {
        if !e
            .prober_started
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tokio::spawn(crate::upstream::probe::run(e.clone(), shared.clone()));
        }
    }
}

/// Closes pooled app connections past `app.pool_idle_timeout`, so sockets are
/// not held open (and closed by the app under us) when traffic is quiet.
async fn evict_idle_app_connections(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    loop {
        let snap = shared.snapshot.load_full();
        let every = (snap.pool.idle_timeout / 2).max(Duration::from_millis(100));
        for e in &snap.endpoints {
            e.evict_idle(snap.pool.idle_timeout);
        }
        drop(snap);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stopped(&mut phase) => return,
        }
    }
}

async fn stopped(phase: &mut tokio::sync::watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Stopped).await;
}

impl Running {
    /// Client connections currently open.
    pub fn open_connections(&self) -> usize {
        self.max_connections - self.connections.available_permits()
    }

    /// The drain sequence: readiness off, keep serving for `drain.delay`, stop
    /// accepting and close connections as their requests finish, and return
    /// as soon as nothing is in flight or at `drain.timeout`.
    pub async fn drain(&self) -> DrainOutcome {
        let drain = self.shared.snapshot.load().config.drain.clone();
        if self.shared.phase() < Phase::Draining {
            self.shared.phase.send_replace(Phase::Draining);
            tracing::info!(delay = ?drain.delay, "draining: readiness off, still accepting during drain.delay");
            tokio::time::sleep(drain.delay).await;
        }
        self.shared.phase.send_replace(Phase::Closing);
        tracing::info!(timeout = ?drain.timeout, in_flight = self.shared.inflight.len(), "closing: stopped accepting, waiting for requests in flight");
        let deadline = Instant::now() + drain.timeout;
        let outcome = loop {
            let in_flight = self.shared.inflight.len();
            if in_flight == 0 && self.open_connections() == 0 {
                break DrainOutcome::Clean;
            }
            if Instant::now() >= deadline {
                if in_flight > 0 {
                    let left =
                        serde_json::to_string(&self.shared.inflight.snapshot()).unwrap_or_default();
                    tracing::warn!(in_flight, requests = %left, "drain.timeout reached with requests in flight");
                }
                break DrainOutcome::Deadline {
                    left_in_flight: in_flight,
                };
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.shared.phase.send_replace(Phase::Stopped);
        tracing::info!(?outcome, "stopped");
        outcome
    }
}

/// Runs until SIGTERM/SIGINT and a completed drain. A second signal during
/// the drain ends the process at once. Returns the exit code.
pub async fn run(config: Config) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let running = start(config).await?;
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "shutdown requested");
    tokio::select! {
        _ = running.drain() => Ok(0),
        _ = term.recv() => { tracing::warn!("second signal: exiting now"); Ok(1) }
        _ = int.recv() => { tracing::warn!("second signal: exiting now"); Ok(1) }
    }
}
