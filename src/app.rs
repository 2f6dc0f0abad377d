//! Assembles the running proxy: binds listeners, spawns the long-lived tasks,
//! and owns the shutdown sequence (the `Phase` state machine):
//!
//! 1. `Running → Draining` (SIGTERM/SIGINT, `/admin/drain`, `lifeguard
//!    drain`): `/readyz` answers 503 at once; lifeguard keeps accepting and
//!    serving for `drain.delay`, while Kubernetes removes the pod from Service
//!    endpoints.
//! 2. `Closing`: listeners closed; HTTP/1.1 connections get `Connection: close`
//!    on their next response and idle ones are closed, HTTP/2 gets GOAWAY,
//!    WebSockets get a close frame; requests in flight run to completion.
//! 3. `Stopped` as soon as nothing is in flight, or at `drain.timeout`
//!    (counted from the start of the drain), logging what was left.
//!
//! A drain started by a signal ends the process; one started over the admin
//! port leaves it up (drained) until the signal comes, because a native
//! sidecar that exited on its own could be restarted by the kubelet.
//!
//! Long-lived tasks besides the listeners: health probers, idle-connection
//! eviction, the config/certificate poller (`control::reload`), the
//! maintenance flag-file watcher, and SIGHUP (reload) when run as a process.

use crate::admin;
use crate::config::Config;
use crate::control::{drain, eviction, flag_file, probers, reload};
use crate::runtime::Shared;
use crate::server::{listener, tls};
use crate::shutdown::{reached, DrainOutcome, Phase};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// A started proxy.
#[derive(Debug)]
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shared: Arc<Shared>,
}

/// Binds the listeners and starts serving.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let proxy = listener::bind(config.listen, config.client.listen_backlog)
        .with_context(|| format!("cannot listen on {} (listen)", config.listen))?;
    let admin = listener::bind(config.admin.listen, 128)
        .with_context(|| format!("cannot listen on {} (admin.listen)", config.admin.listen))?;
    let proxy_addr = proxy.local_addr()?;
    let admin_addr = admin.local_addr()?;
    for w in config.warnings() {
        tracing::warn!(warning = %w, "config warning");
    }
    let shared = Arc::new(Shared::new(config));
    let connections = shared.connection_slots.clone();
    let tls = match &shared.tls {
        Some(resolver) => Some(tls::acceptor(resolver.clone()).context("setting up TLS")?),
        None => None,
    };
    let https = tls.is_some();

    tokio::spawn(listener::accept_loop(
        proxy,
        shared.clone(),
        connections,
        tls,
    ));
    tokio::spawn(admin::serve(admin, shared.clone()));
    tokio::spawn(eviction::evict_idle_app_connections(
        shared.snapshot.clone(),
        shared.phase.subscribe(),
    ));
    tokio::spawn(drain::drive_drain(shared.clone()));
    tokio::spawn(reload::watch(shared.clone()));
    tokio::spawn(flag_file::watch_flag_file(
        shared.snapshot.clone(),
        shared.maintenance.clone(),
        shared.metrics.clone(),
        shared.phase.subscribe(),
    ));
    probers::spawn_probers(&shared.snapshot, &shared.phase);

    shared.phase.send_replace(Phase::Running);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(listen = %proxy_addr, admin = %admin_addr, tls = https, workers, version = env!("CARGO_PKG_VERSION"), "lifeguard started");
    Ok(Running {
        proxy_addr,
        admin_addr,
        shared,
    })
}

impl Running {
    /// Starts the drain (if not started) and waits for it to end.
    pub async fn drain(&self) -> DrainOutcome {
        self.shared.request_drain("api");
        self.stopped().await
    }

    /// Waits until the drain has ended.
    pub async fn stopped(&self) -> DrainOutcome {
        let mut phase = self.shared.phase.subscribe();
        reached(&mut phase, Phase::Stopped).await;
        self.shared
            .drain_outcome
            .get()
            .copied()
            .unwrap_or(DrainOutcome::Clean)
    }

    /// Gives `/admin/drained` waiters (an app container's preStop hook) up to
    /// a second to receive their answer before the process exits.
    async fn let_waiters_hear(&self) {
        let waiters = self.shared.drained_waiters.until_idle();
        let _ = tokio::time::timeout(Duration::from_secs(1), waiters).await;
        // The answer is written after the handler returns.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Worker threads for the runtime: `TOKIO_WORKER_THREADS` when it is a
/// whole number above 0; else the CPUs this process may use, as
/// `std::thread::available_parallelism` reads them: its CPU affinity and its
/// cgroup's CPU quota (`cpu.max`, v1's `cpu.cfs_quota_us`: a pod's
/// `limits.cpu`), rounded down, at least 1. A sidecar in a pod limited to one
/// CPU on a 64-core node runs one worker, not 64. A bad value is reported
/// and ignored (tokio itself would panic on it).
pub fn worker_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match std::env::var("TOKIO_WORKER_THREADS") {
        Err(std::env::VarError::NotPresent) => cpus,
        Ok(v) if v.trim().parse::<usize>().is_ok_and(|n| n > 0) => v.trim().parse().unwrap_or(cpus),
        Ok(v) => {
            eprintln!("lifeguard: TOKIO_WORKER_THREADS={v:?} is not a whole number above 0; using {cpus} (the CPUs available)");
            cpus
        }
        Err(_) => {
            eprintln!("lifeguard: TOKIO_WORKER_THREADS is not valid UTF-8; using {cpus} (the CPUs available)");
            cpus
        }
    }
}

/// Runs until a signal-initiated drain completes. A second SIGTERM/SIGINT
/// during the drain ends the process at once. Returns the exit code.
pub async fn run(config: Config) -> anyhow::Result<i32> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    // Installed before anything else: SIGHUP's default action ends the process.
    let hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let running = start(config).await?;
    tokio::spawn(reload::on_sighup(running.shared.clone(), hup));
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    if running.shared.phase() == Phase::Stopped {
        tracing::info!(signal = name, "already drained; exiting");
        return Ok(0);
    }
    running.shared.request_drain(name);
    tokio::select! {
        _ = running.stopped() => {}
        _ = term.recv() => { tracing::warn!("second signal during drain: exiting now"); return Ok(1); }
        _ = int.recv() => { tracing::warn!("second signal during drain: exiting now"); return Ok(1); }
    }
    running.let_waiters_hear().await;
    Ok(0)
}
