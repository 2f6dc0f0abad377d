//! What outlives one request: the config snapshot store, the in-flight
//! registry, the phase, health wake-ups, the retry budget, request ids, the
//! maintenance switches, the reload record, the served certificate and the
//! connection slots. Long-lived tasks (`control`) and the request path
//! (`proxy`) read it; nothing here runs on its own.

mod certs;
mod ids;
mod maintenance;
mod reload;
mod retry_budget;
mod snapshot;

pub use certs::CertResolver;
pub use ids::{RequestIds, X_REQUEST_ID};
pub use maintenance::{Maintenance, Source};
pub use reload::{unix_ms, Memory, Outcome, ReloadResult, ReloadState, ReloadStatus, Trigger};
pub use retry_budget::{RetryBudget, BUDGET_FLOOR};
pub use snapshot::Snapshot;

use crate::config::Config;
use crate::inflight::Registry;
use crate::metrics::Metrics;
use crate::shutdown::{Activity, Phase};
use crate::upstream::Signals;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::{watch, Semaphore};

/// The snapshot store, shared by `Arc` so a task can hold just this.
pub type Snapshots = Arc<ArcSwap<Snapshot>>;

#[derive(Debug)]
pub struct Shared {
    /// The config snapshot store; tasks that need only this get a clone.
    pub snapshot: Snapshots,
    pub inflight: Arc<Registry>,
    pub ids: RequestIds,
    pub phase: watch::Sender<Phase>,
    /// Health-change and capacity wake-ups shared by all endpoints.
    pub signals: Arc<Signals>,
    pub retry_budget: RetryBudget,
    pub metrics: Metrics,
    /// What a drain waits for: open client connections, tunnels and
    /// requests in flight.
    pub activity: Activity,
    /// Requests waiting on `/admin/drained`: the process lets them be
    /// answered before it exits.
    pub drained_waiters: Activity,
    /// Set once when the drain ends.
    pub drain_outcome: std::sync::OnceLock<crate::shutdown::DrainOutcome>,
    /// Maintenance switches (config, flag file, admin); the request path
    /// reads one atomic.
    pub maintenance: Arc<Maintenance>,
    /// Reloads: one at a time, the last outcome, fields awaiting a restart.
    pub reload: ReloadState,
    /// The certificate served on the main listener (TLS on/off needs a
    /// restart, so this is fixed at startup; the key inside is swapped).
    pub tls: Option<Arc<CertResolver>>,
    /// Client connection slots (`client.max_connections`, resized on reload).
    pub connection_slots: Arc<Semaphore>,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let signals = Arc::new(Signals::default());
        let metrics = Metrics::new();
        metrics.config_generation.set(1);
        metrics.last_reload_success.set(unix_now());
        metrics.last_reload_successful.set(1);
        metrics.config_in_force(&config.source_hash, None);
        metrics.declare_reload_results(ReloadResult::ALL.map(ReloadResult::as_str));
        let maintenance = Arc::new(Maintenance::default());
        maintenance.set(
            maintenance::Source::Config,
            config.maintenance.enabled,
            &metrics,
        );
        let tls = config
            .tls
            .as_ref()
            .map(|t| Arc::new(CertResolver::new(t.key.clone(), t.files_sha256.clone())));
        let connection_slots = Arc::new(Semaphore::new(config.client.max_connections));
        Shared {
            maintenance,
            reload: ReloadState::default(),
            tls,
            connection_slots,
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot::build(
                config, None, 1, &signals, &metrics,
            ))),
            signals,
            metrics,
            retry_budget: RetryBudget::default(),
            inflight: Arc::new(Registry::default()),
            ids: RequestIds::default(),
            phase: watch::Sender::new(Phase::Starting),
            activity: Activity::default(),
            drained_waiters: Activity::default(),
            drain_outcome: std::sync::OnceLock::new(),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Starts the drain (SIGTERM, `/admin/drain`, `lifeguard drain`); a no-op
    /// once draining. Returns whether this call started it.
    pub fn request_drain(&self, by: &str) -> bool {
        let started = self.phase.send_if_modified(|p| {
            if *p <= Phase::Running {
                *p = Phase::Draining;
                true
            } else {
                false
            }
        });
        if started {
            self.metrics.draining.set(1);
            tracing::info!(by, "drain requested: readiness off");
        }
        started
    }

    /// Ready for traffic: serving, and (unless `health.ready_requires_app` is
    /// off) at least one app endpoint is up. During maintenance the pod serves
    /// its maintenance page whatever the app's state, so it is ready unless
    /// `maintenance.ready` is off.
    pub fn is_ready(&self) -> bool {
        let snap = self.snapshot.load();
        if self.phase() != Phase::Running {
            return false;
        }
        if self.maintenance.is_on() {
            return snap.config.maintenance.ready;
        }
        !snap.config.health.ready_requires_app || snap.endpoints.iter().any(|e| e.is_up())
    }
}

/// Seconds since the Unix epoch, as a float (for timestamps in metrics).
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
