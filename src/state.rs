//! Shared state: the one config snapshot (swapped whole on reload) and the
//! state that outlives snapshots (in-flight registry, phase, id generator).

use crate::config::Config;
use crate::inflight::Registry;
use crate::proxy::RequestIds;
use crate::shutdown::Phase;
use crate::upstream::{Endpoint, PoolSettings};
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
    pub fn build(config: Config, previous: Option<&Snapshot>, generation: u64) -> Snapshot {
        let endpoints = config
            .app
            .endpoints
            .iter()
            .map(|addr| {
                previous
                    .and_then(|p| p.endpoints.iter().find(|e| e.addr == *addr).cloned())
                    .unwrap_or_else(|| Arc::new(Endpoint::new(*addr)))
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
}

impl Shared {
    pub fn new(config: Config) -> Shared {
        Shared {
            snapshot: ArcSwap::from_pointee(Snapshot::build(config, None, 1)),
            inflight: Arc::new(Registry::default()),
            ids: RequestIds::default(),
            rotor: AtomicUsize::new(0),
            phase: watch::Sender::new(Phase::Starting),
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }
}
