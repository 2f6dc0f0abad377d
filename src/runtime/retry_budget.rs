//! The retry budget: resends may be at most a share of recent requests, so
//! retries never pile onto a sick app.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::Instant;

/// Retries allowed per window whatever the traffic, so a quiet app still gets
/// its retries.
pub const BUDGET_FLOOR: u64 = 3;
const WINDOW_SECS: u64 = 10;

/// Retries may be at most `percent` of the requests seen in the last ~10 s
/// (with a floor of `BUDGET_FLOOR`). Counted in one-second buckets.
#[derive(Debug)]
pub struct RetryBudget {
    epoch: Instant,
    buckets: [Bucket; WINDOW_SECS as usize],
}

#[derive(Debug, Default)]
struct Bucket {
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            epoch: Instant::now(),
            buckets: Default::default(),
        }
    }
}

impl RetryBudget {
    fn bucket(&self, now: Instant) -> &Bucket {
        let second = now.saturating_duration_since(self.epoch).as_secs() + 1;
        let b = &self.buckets[(second % WINDOW_SECS) as usize];
        let seen = b.second.load(Ordering::Acquire);
        if seen != second
            && b.second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Release);
            b.retries.store(0, Ordering::Release);
        }
        b
    }

    fn totals(&self, now: Instant) -> (u64, u64) {
        let second = now.saturating_duration_since(self.epoch).as_secs() + 1;
        self.buckets
            .iter()
            .filter(|b| second.saturating_sub(b.second.load(Ordering::Acquire)) < WINDOW_SECS)
            .fold((0, 0), |(r, t), b| {
                (
                    r + b.requests.load(Ordering::Relaxed),
                    t + b.retries.load(Ordering::Relaxed),
                )
            })
    }

    pub fn record_request(&self) {
        self.bucket(Instant::now())
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget, if there is one left.
    pub fn try_acquire(&self, percent: u32) -> bool {
        let now = Instant::now();
        let (requests, retries) = self.totals(now);
        let allowed = (requests * u64::from(percent) / 100).max(BUDGET_FLOOR);
        if retries >= allowed {
            return false;
        }
        self.bucket(now).retries.fetch_add(1, Ordering::Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn budget_has_a_floor_and_a_share() {
        let b = RetryBudget::default();
        for _ in 0..BUDGET_FLOOR {
            assert!(b.try_acquire(0));
        }
        assert!(!b.try_acquire(0), "floor exhausted");
        for _ in 0..100 {
            b.record_request();
        }
        // 20 % of 100 requests = 20 retries, 3 already used.
        let granted = (0..50).filter(|_| b.try_acquire(20)).count();
        assert_eq!(granted, 17);
    }

    /// The window slides on tokio's clock: what was spent more than ten
    /// seconds ago is available again, and old requests stop counting.
    #[tokio::test(start_paused = true)]
    async fn window_slides() {
        let b = RetryBudget::default();
        for _ in 0..100 {
            b.record_request();
        }
        assert_eq!((0..50).filter(|_| b.try_acquire(10)).count(), 10);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!b.try_acquire(10), "still inside the window");
        tokio::time::advance(Duration::from_secs(WINDOW_SECS)).await;
        // The 100 requests aged out with the retries: only the floor is left.
        let granted = (0..50).filter(|_| b.try_acquire(10)).count();
        assert_eq!(granted as u64, BUDGET_FLOOR);
    }
}
