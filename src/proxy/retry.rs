//! When a request may be sent again, how long to wait first, and the budget
//! that keeps retries from piling onto a sick app.
//!
//! | failure | idempotent (or has the idempotency-key header) | POST, PATCH, … |
//! |---|---|---|
//! | nothing sent (connect refused/timeout, pooled connection closed) | retried | retried |
//! | sent, connection closed/reset before response headers | retried if the body is replayable, within `retry.attempts` and the budget | never |
//! | response timeout, bad response | never (the app may still be working on it) | never |

use crate::error::ProxyError;
use http::{HeaderMap, Method};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Retries allowed per window whatever the traffic, so a quiet app still gets
/// its retries.
pub const BUDGET_FLOOR: u64 = 3;
const WINDOW_SECS: u64 = 10;

/// Whether a request that failed after it was sent may be sent again:
/// only after the connection died before any response header, only for
/// resendable requests (`resendable_method`), only with a replayable body.
pub fn may_resend(kind: ProxyError, resendable: bool, replayable: bool) -> bool {
    kind == ProxyError::AppClosedBeforeResponse && replayable && resendable
}

/// Idempotent by method (RFC 9110 §9.2.2), or made so by the operator's
/// idempotency-key header being present on the request.
pub fn resendable_method(
    method: &Method,
    headers: &HeaderMap,
    key_header: Option<&http::HeaderName>,
) -> bool {
    super::headers::is_idempotent(method) || key_header.is_some_and(|h| headers.contains_key(h))
}

/// Exponential backoff with ±50 % jitter: 25 ms doubling per retry, capped at
/// 250 ms (before jitter).
pub fn backoff(retry: u32) -> Duration {
    let base = 25u64.saturating_mul(1 << retry.min(4)).min(250);
    Duration::from_millis(base).mul_f64(0.5 + fastrand::f64())
}

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

    #[test]
    fn resend_table() {
        let h = HeaderMap::new();
        let crash = ProxyError::AppClosedBeforeResponse;
        let ok = |m: Method,
                  h: &HeaderMap,
                  key: Option<&http::HeaderName>,
                  replayable: bool,
                  kind: ProxyError| {
            may_resend(kind, resendable_method(&m, h, key), replayable)
        };
        assert!(ok(Method::GET, &h, None, true, crash));
        assert!(ok(Method::PUT, &h, None, true, crash));
        assert!(ok(Method::DELETE, &h, None, true, crash));
        assert!(
            !ok(Method::PUT, &h, None, false, crash),
            "streamed body cannot be replayed"
        );
        assert!(!ok(Method::POST, &h, None, true, crash));
        assert!(!ok(Method::PATCH, &h, None, true, crash));
        assert!(!ok(
            Method::GET,
            &h,
            None,
            true,
            ProxyError::ResponseTimeout
        ));
        assert!(!ok(Method::GET, &h, None, true, ProxyError::BadResponse));
        let key = http::HeaderName::from_static("idempotency-key");
        let mut with_key = HeaderMap::new();
        with_key.insert(&key, "abc".parse().unwrap());
        assert!(ok(Method::POST, &with_key, Some(&key), true, crash));
        assert!(
            !ok(Method::POST, &h, Some(&key), true, crash),
            "opt-in needs the header on the request"
        );
        assert!(
            !ok(Method::POST, &with_key, None, true, crash),
            "and the operator's opt-in"
        );
    }

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        for _ in 0..100 {
            let d0 = backoff(0).as_millis();
            assert!((12..=38).contains(&d0), "{d0}");
            let d5 = backoff(5).as_millis();
            assert!((125..=375).contains(&d5), "{d5}");
        }
    }

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
}
