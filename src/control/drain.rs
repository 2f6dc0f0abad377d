//! The drain driver: once a drain is requested, runs it to `Stopped`
//! (see `app.rs` for the sequence).

use crate::runtime::Shared;
use crate::shutdown::{reached, DrainOutcome, Phase};
use std::sync::Arc;
use tokio::time::Instant;

/// Waits for a drain request, then runs the drain to `Stopped`.
pub async fn drive_drain(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    reached(&mut phase, Phase::Draining).await;
    let started = Instant::now();
    let drain = shared.snapshot.load().config.drain.clone();
    let deadline = started + drain.timeout;
    tracing::info!(delay = ?drain.delay, timeout = ?drain.timeout, "draining: /readyz is 503; still accepting for drain.delay");
    tokio::time::sleep_until((started + drain.delay).min(deadline)).await;

    shared.phase.send_replace(Phase::Closing);
    tracing::info!(
        in_flight = shared.inflight.len(),
        connections = shared.metrics.connections_open.get(),
        "closing: stopped accepting; connections close as their requests finish"
    );
    let outcome = tokio::select! {
        biased;
        _ = shared.activity.until_idle() => DrainOutcome::Clean,
        _ = tokio::time::sleep_until(deadline) => timed_out(&shared),
    };
    let _ = shared.drain_outcome.set(outcome);
    shared.phase.send_replace(Phase::Stopped);
    tracing::info!(
        ?outcome,
        took_ms = started.elapsed().as_millis() as u64,
        "drained"
    );
}

/// `drain.timeout` came with something still open: say which requests.
fn timed_out(shared: &Shared) -> DrainOutcome {
    let in_flight = shared.inflight.len();
    if in_flight > 0 {
        let left = serde_json::to_string(&shared.inflight.snapshot()).unwrap_or_default();
        tracing::warn!(in_flight, requests = %left, "drain.timeout reached with requests in flight");
    }
    DrainOutcome::Deadline {
        left_in_flight: in_flight,
    }
}
