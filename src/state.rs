//! Shared state: the one config snapshot (swapped whole on reload) and the
//! state that outlives snapshots (in-flight registry, phase, id generator).

use crate::config::Config;
use crate::inflight::Registry;
use crate::proxy::RequestIds;
use crate::proxy::RetryBudget;
use crate::shutdown::Phase;
use crate::upstream::{Endpoint, PoolSettings, Signals};
use arc_swap::ArcSwap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use tokio::sync::watch;

/// Everything a request reads from configuration, loaded once per request.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Config,
    pub endpoints: Vec<Arc<Endpoint>>,
    pub pool: PoolSettings,
    pub generation: u64,
}

impl Snapshot {
    /// Builds a snapshot, reusing `previous` endpoints with the same address
    /// so their pools and counters carry over.
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        generation: u64,
        signals: &Arc<Signals>,
    ) -> Snapshot {
        let endpoints = config
            .app
            .endpoints
            .iter()
            .map(|addr| {
                previous
                    .and_then(|p| p.endpoints.iter().find(|e| e.addr == *addr).cloned())
                    .unwrap_or_else(|| Arc::new(Endpoint::new(*addr, signals.clone())))
            })
            .collect();
        let pool = PoolSettings {
            connect_timeout: config.app.connect_timeout,
            idle_timeout: config.app.pool_idle_timeout,
            max_idle: config.app.pool_max_idle_per_endpoint,
        };
        Snapshot {
            config,
            endpoints,
            pool,
            generation,
        }
    }
}

#[derive(Debug)]
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub inflight: Arc<Registry>,
    pub ids: RequestIds,
    /// Rotates tie-breaks between equally loaded endpoints.
    pub rotor: AtomicUsize,
    pub phase: watch::Sender<Phase>,
    /// Health-change and capacity wake-ups shared by all endpoints.
    pub signals: Arc<Signals>,
    pub retry_budget: RetryBudget,
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        let signals = Arc::new(Signals::default());
        Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::build(config, None, 1, &signals)),
            signals,
            retry_budget: RetryBudget::default(),
            inflight: Arc::new(Registry::default()),
            ids: RequestIds::default(),
            rotor: AtomicUsize::new(0),
            phase: watch::Sender::new(Phase::Starting),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Ready for traffic: serving, and (unless `health.ready_requires_app` is
    /// off) at least one app endpoint is up.
    pub fn is_ready(&self) -> bool {
        let snap = self.snapshot.load();
        self.phase() == Phase::Running
            && (!snap.config.health.ready_requires_app || snap.endpoints.iter().any(|e| e.is_up()))
    }
}
