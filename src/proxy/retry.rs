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
use std::time::Duration;

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
