//! The process lifecycle as a state machine, published on a watch channel so
//! every task (accept loops, connections, admin) sees the same phase.

use serde::Serialize;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Listeners are being bound.
    Starting,
    /// Serving; `/readyz` answers 200.
    Running,
    /// Shutdown requested: `/readyz` answers 503 while we keep accepting for
    /// `drain.delay`, since Kubernetes still routes new connections here.
    Draining,
    /// Listeners closed; connections are told to close (HTTP/1.1
    /// `Connection: close`, HTTP/2 GOAWAY) as their requests finish.
    Closing,
    /// Nothing left in flight, or the deadline passed.
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Draining => "draining",
            Phase::Closing => "closing",
            Phase::Stopped => "stopped",
        }
    }
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum DrainOutcome {
    /// Every request finished.
    Clean,
    /// `drain.timeout` passed with requests still in flight.
    Deadline { left_in_flight: usize },
}

/// Resolves once the phase reaches `at` (or the phase sender is gone).
pub async fn reached(phase: &mut watch::Receiver<Phase>, at: Phase) {
    let _ = phase.wait_for(|p| *p >= at).await;
}
