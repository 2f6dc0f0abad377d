//! When a request may be sent again, how long to wait first, and the budget
//! that keeps retries from piling onto a sick app.
//!
//! | failure | idempotent (or has the idempotency-key header) | POST, PATCH, … |
//! |---|---|---|
//! | nothing sent (connect refused/timeout, pooled connection closed) | retried | retried |
//! | sent, connection closed/reset before response headers | retried if the body is replayable, within `retry.attempts` and the budget | never |
//! | response timeout, bad response | never (the app may still be working on it) | never |

use crate::config::Config;
use crate::error::ProxyError;
use crate::inflight::Entry;
use crate::metrics::Metrics;
use crate::runtime::{RetryBudget, Shared};
use crate::upstream::{IndexSet, ReserveError};
use http::{HeaderMap, Method};
use std::time::Duration;
use tokio::time::Instant;

/// Bound on attempts for one request, counting pooled connections found
/// closed and connect failures: a guard against looping.
const MAX_ATTEMPTS: u32 = 8;

/// Every retry decision for one request, in one place: which endpoints to
/// avoid or skip, how long to hold for one to come up, whether a failure
/// may be tried again and after what pause, and which error the client gets
/// when lifeguard gives up.
#[derive(Debug)]
pub struct RetryPlan<'a> {
    /// Failed after sending, or a connect timed out: prefer others.
    pub avoid: IndexSet,
    /// Connect failed twice (not refused): skip for this request.
    pub exclude: IndexSet,
    /// How long `reserve` may wait for an endpoint to come up.
    pub hold_until: Instant,
    /// Resends after a send failure so far.
    pub retries: u32,
    budget: &'a RetryBudget,
    metrics: &'a Metrics,
    hold: Duration,
    max_retries: u32,
    budget_percent: u32,
    /// Idempotent (or keyed) and the body is replayable.
    resend_ok: bool,
    attempts: u32,
    connect_failures: u32,
    /// The first failure after sending wins over later connect errors: it is
    /// what the client must hear about (the request may have been processed).
    sent_failure: Option<ProxyError>,
    last_err: ProxyError,
}

impl<'a> RetryPlan<'a> {
    pub fn new(
        config: &Config,
        shared: &'a Shared,
        resendable: bool,
        replayable: bool,
    ) -> RetryPlan<'a> {
        RetryPlan {
            budget: &shared.retry_budget,
            metrics: &shared.metrics,
            avoid: IndexSet::default(),
            exclude: IndexSet::default(),
            hold_until: Instant::now() + config.unavailable.hold,
            retries: 0,
            hold: config.unavailable.hold,
            max_retries: config.retry.attempts,
            budget_percent: config.retry.budget_percent,
            resend_ok: resendable && replayable,
            attempts: 0,
            connect_failures: 0,
            sent_failure: None,
            last_err: ProxyError::AppUnavailable,
        }
    }

    /// Counts one more attempt; false once the bound is reached.
    pub fn next_attempt(&mut self) -> bool {
        self.attempts += 1;
        self.attempts <= MAX_ATTEMPTS
    }

    /// Whether a copy of the request must be kept before sending, because a
    /// send failure could be retried.
    pub fn wants_copy(&self) -> bool {
        self.resend_ok && self.retries < self.max_retries
    }

    /// What the client hears when lifeguard stops trying.
    pub fn give_up(&self) -> ProxyError {
        self.sent_failure.unwrap_or(self.last_err)
    }

    /// No endpoint could be reserved.
    pub fn unreserved(&self, err: ReserveError) -> ProxyError {
        match err {
            ReserveError::NoneUp => self.give_up(),
            ReserveError::Full => self.sent_failure.unwrap_or(ProxyError::Overloaded),
        }
    }

    /// A connect to endpoint `i` failed: nothing was sent, so any method may
    /// be tried again at once. A refusal marks the endpoint down (the hold
    /// waits for it); a timeout is often one dropped SYN (a full accept
    /// queue), so the endpoint is avoided, and skipped after a second one.
    pub fn after_connect_failure(&mut self, i: usize, err: ProxyError) {
        if err != ProxyError::AppRefused {
            self.connect_failures += 1;
            self.avoid.insert(i);
            if self.connect_failures >= 2 {
                self.exclude.insert(i);
            }
        }
        self.last_err = err;
    }

    /// The request failed on endpoint `i` after it was sent. Returns the pause
    /// before a resend, or `None` when it must not be resent (see the table
    /// above) or the retry budget is spent.
    pub fn after_send_failure(
        &mut self,
        i: usize,
        err: ProxyError,
        entry: &Entry,
    ) -> Option<Duration> {
        if !may_resend(err, self.resend_ok, true) || self.retries >= self.max_retries {
            return None;
        }
        if !self.budget.try_acquire(self.budget_percent) {
            self.metrics.retry_budget_exhausted.inc();
            tracing::warn!(endpoint = entry.endpoint.load().as_deref().map_or("-", |s| s.as_str()), request_id = ?entry.request_id, "retry budget exhausted; not retrying");
            return None;
        }
        self.metrics.retries.inc();
        self.sent_failure = Some(err);
        self.retries += 1;
        self.avoid.insert(i);
        let pause = backoff(self.retries - 1);
        // The same endpoint may serve the retry once it has recovered.
        self.hold_until = Instant::now() + pause + self.hold;
        Some(pause)
    }
}

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
}
