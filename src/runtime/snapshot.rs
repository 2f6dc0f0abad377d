//! The config snapshot: the validated config plus the endpoint objects built
//! from it. A request loads one snapshot and uses it to the end; a reload
//! builds the next one from the previous (endpoints kept by address).

use crate::config::Config;
use crate::metrics::Metrics;
use crate::upstream::{Endpoint, PoolSettings, Signals};
use std::sync::Arc;

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
    /// so their health, pools and counters carry over.
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        generation: u64,
        signals: &Arc<Signals>,
        metrics: &Metrics,
    ) -> Snapshot {
        let endpoints = config
            .app
            .endpoints
            .iter()
            .map(|addr| {
                previous
                    .and_then(|p| p.endpoints.iter().find(|e| e.addr == *addr).cloned())
                    .unwrap_or_else(|| {
                        let m = metrics.register_endpoint(&addr.to_string());
                        Arc::new(Endpoint::new(*addr, signals.clone(), m))
                    })
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
