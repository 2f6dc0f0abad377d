//! The process lifecycle as a state machine, published on a watch channel so
//! every task (accept loops, connections, admin) sees the same phase.

use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{watch, Notify};

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

/// A count of things a drain must wait for (open client connections,
/// tunnels, requests in flight; or `/admin/drained` callers still to be
/// answered) that wakes whoever waits for it to reach zero, so a drain
/// ends the moment the last one finishes instead of on a polling tick.
#[derive(Debug, Default)]
pub struct Activity {
    count: AtomicUsize,
    idle: Notify,
}

impl Activity {
    pub fn enter(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    pub fn leave(&self) {
        if self.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// `enter` now, `leave` when the guard drops (also on panic or cancel).
    pub fn hold(&self) -> Held<'_> {
        self.enter();
        Held(self)
    }

    /// As `hold`, unless `max` are held already (then `None`, and nothing
    /// changes): a cap on how many may wait at once.
    pub fn try_hold(&self, max: usize) -> Option<Held<'_>> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Held(self))
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Resolves once the count is zero.
    pub async fn until_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a `leave` between the check
            // and the await is not missed.
            notified.as_mut().enable();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// One unit of `Activity`, left when dropped.
#[derive(Debug)]
pub struct Held<'a>(&'a Activity);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn try_hold_is_capped() {
        let a = Activity::default();
        let held: Vec<_> = (0..3).filter_map(|_| a.try_hold(2)).collect();
        assert_eq!(held.len(), 2);
        assert_eq!(a.count(), 2);
        drop(held);
        assert_eq!(a.count(), 0);
        assert!(a.try_hold(2).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn activity_wakes_at_zero() {
        let a = Arc::new(Activity::default());
        a.until_idle().await; // idle from the start
        a.enter();
        let held = a.hold();
        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.until_idle().await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished(), "one left");
        a.leave();
        tokio::time::timeout(Duration::from_millis(1), waiter)
            .await
            .expect("woken at zero")
            .unwrap();
    }
}
