//! Active health probers: one task per endpoint, probing every
//! `health.interval`, or `health.down_interval` while the endpoint is down so
//! a restarted app gets traffic back within a fraction of a second. Passive
//! signals (a refused or reset request) wake the task for an immediate probe.

use crate::runtime::Snapshots;
use crate::shutdown::Phase;
use crate::upstream::probe::probe_once;
use crate::upstream::Endpoint;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::Instant;

/// Starts the health prober of every endpoint in the current snapshot that
/// has none yet (endpoints kept across a reload keep theirs).
pub fn spawn_probers(snapshots: &Snapshots, phase: &watch::Sender<Phase>) {
    for e in &snapshots.load().endpoints {
        if !e.prober_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(e.clone(), snapshots.clone(), phase.subscribe()));
        }
    }
}

/// Probes `endpoint` until it leaves the config or the process stops.
async fn run(endpoint: Arc<Endpoint>, snapshots: Snapshots, mut phase: watch::Receiver<Phase>) {
    loop {
        if !snapshots
            .load()
            .endpoints
            .iter()
            .any(|e| Arc::ptr_eq(e, &endpoint))
        {
            tracing::debug!(endpoint = %endpoint.name, "endpoint removed from config; probes stop");
            return;
        }
        let cfg = snapshots.load().config.health.clone();
        let started = Instant::now();
        let outcome = probe_once(endpoint.addr, &cfg).await;
        endpoint.record_probe(outcome, started.elapsed(), &cfg);

        let base = if endpoint.is_down() {
            cfg.down_interval
        } else {
            cfg.interval
        };
        // ±10 % jitter so probes of many pods do not line up.
        let wait = base.mul_f64(0.9 + fastrand::f64() * 0.2);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = endpoint.probe_now.notified() => {}
            _ = phase.wait_for(|p| *p == Phase::Stopped) => return,
        }
    }
}
