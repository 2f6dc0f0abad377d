//! Choosing an endpoint for one attempt: least outstanding requests among the
//! routable endpoints with a free slot; waiting (bounded) when none is up
//! (`unavailable.hold`) or all are full (`app.queue_timeout`).

use super::{Endpoint, Outstanding};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// A small set of endpoint indexes (configs hold at most 64 endpoints).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexSet(u64);

impl IndexSet {
    pub fn insert(&mut self, i: usize) {
        self.0 |= 1 << i;
    }
    pub fn contains(self, i: usize) -> bool {
        self.0 & (1 << i) != 0
    }
}

/// Why no endpoint could be reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// No endpoint came up within the hold.
    NoneUp,
    /// Endpoints are up but full, and no slot freed within the queue timeout.
    Full,
}

enum Pick {
    Reserved(usize, Outstanding),
    AllFull,
    NoneUp,
}

/// Limits for one reservation, from the request's config snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_in_flight: usize,
    pub slow_start: Duration,
    pub queue_timeout: Duration,
}

impl Limits {
    pub fn from_config(cfg: &crate::config::Config) -> Limits {
        Limits {
            max_in_flight: cfg.app.max_in_flight,
            slow_start: cfg.health.slow_start,
            queue_timeout: cfg.app.queue_timeout,
        }
    }
}

/// One pass: least outstanding among routable endpoints not in `exclude`,
/// preferring those not in `avoid`; ties rotate via `rotor`.
fn pick(
    endpoints: &[Arc<Endpoint>],
    avoid: IndexSet,
    exclude: IndexSet,
    rotor: &AtomicUsize,
    limits: &Limits,
) -> Pick {
    let n = endpoints.len();
    let start = if n <= 1 {
        0
    } else {
        rotor.fetch_add(1, Ordering::Relaxed) % n
    };
    let mut any_routable = false;
    for prefer_fresh in [true, false] {
        loop {
            let mut best: Option<(usize, usize, usize)> = None; // (index, load, cap)
            for k in 0..n {
                let i = (start + k) % n;
                let e = &endpoints[i];
                if exclude.contains(i) || (prefer_fresh && avoid.contains(i)) || !e.is_routable() {
                    continue;
                }
                any_routable = true;
                let cap = e.capacity(limits.max_in_flight, limits.slow_start);
                let load = e.outstanding();
                if load < cap && best.is_none_or(|(_, b, _)| load < b) {
                    best = Some((i, load, cap));
                }
            }
            let Some((i, _, cap)) = best else { break };
            if let Some(o) = endpoints[i].try_reserve(cap) {
                return Pick::Reserved(i, o);
            }
            // Lost a race for the last slot: look again.
        }
    }
    if any_routable {
        Pick::AllFull
    } else {
        Pick::NoneUp
    }
}

/// Reserves a slot on an endpoint, waiting until `hold_until` for one to come
/// up and up to `limits.queue_timeout` for one to have room.
pub async fn reserve(
    endpoints: &[Arc<Endpoint>],
    signals: &super::Signals,
    avoid: IndexSet,
    exclude: IndexSet,
    limits: &Limits,
    hold_until: Instant,
    queue_wait: &prometheus::Histogram,
) -> Result<(usize, Outstanding), ReserveError> {
    let mut queued_at: Option<Instant> = None;
    let observe = |queued_at: Option<Instant>| {
        if let Some(t) = queued_at {
            queue_wait.observe(t.elapsed().as_secs_f64());
        }
    };
    loop {
        match pick(endpoints, avoid, exclude, &signals.rotor, limits) {
            Pick::Reserved(i, o) => {
                observe(queued_at);
                return Ok((i, o));
            }
            Pick::NoneUp => {
                if Instant::now() >= hold_until {
                    return Err(ReserveError::NoneUp);
                }
                let mut rx = signals.health_changed.subscribe();
                rx.borrow_and_update();
                // A change between the pick and the subscription would be
                // missed: look once more before sleeping.
                if !matches!(pick_peek(endpoints, exclude), Pick::NoneUp) {
                    continue;
                }
                let _ = tokio::time::timeout_at(hold_until, rx.changed()).await;
            }
            Pick::AllFull => {
                let until = *queued_at.get_or_insert_with(Instant::now) + limits.queue_timeout;
                if Instant::now() >= until {
                    observe(queued_at);
                    return Err(ReserveError::Full);
                }
                let _queued = Queued::new(signals);
                let freed = signals.capacity_freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if let Pick::Reserved(i, o) =
                    pick(endpoints, avoid, exclude, &signals.rotor, limits)
                {
                    observe(queued_at);
                    return Ok((i, o));
                }
                // Health changes (an endpoint going down or slow start moving
                // on) also free room; re-check at least every 50 ms.
                let recheck = (Instant::now() + Duration::from_millis(50)).min(until);
                let _ = tokio::time::timeout_at(recheck, freed).await;
            }
        }
    }
}

/// Whether any endpoint outside `exclude` is routable (no reservation).
fn pick_peek(endpoints: &[Arc<Endpoint>], exclude: IndexSet) -> Pick {
    if endpoints
        .iter()
        .enumerate()
        .any(|(i, e)| !exclude.contains(i) && e.is_routable())
    {
        Pick::AllFull
    } else {
        Pick::NoneUp
    }
}

/// Counts a queued request while it waits, so freed slots wake it.
struct Queued<'a>(&'a super::Signals);

impl<'a> Queued<'a> {
    fn new(s: &'a super::Signals) -> Self {
        s.queued.fetch_add(1, Ordering::AcqRel);
        Queued(s)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::super::Signals;
    use super::*;
    use crate::upstream::health::ProbeOutcome;
    use std::net::SocketAddr;

    fn eps(n: u16, s: &Arc<Signals>) -> Vec<Arc<Endpoint>> {
        let m = crate::metrics::Metrics::new();
        (0..n)
            .map(|i| {
                let addr = SocketAddr::from(([127, 0, 0, 1], 3000 + i));
                Arc::new(Endpoint::new(
                    addr,
                    s.clone(),
                    m.register_endpoint(&addr.to_string()),
                ))
            })
            .collect()
    }

    fn limits(max: usize) -> Limits {
        Limits {
            max_in_flight: max,
            slow_start: Duration::ZERO,
            queue_timeout: Duration::from_millis(50),
        }
    }

    fn hist() -> prometheus::Histogram {
        prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t")).unwrap()
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn least_outstanding_wins_and_avoid_is_a_preference() {
        let s = Arc::new(Signals::default());
        let e = eps(3, &s);
        let none = IndexSet::default();
        let (a, _ga) = reserve(&e, &s, none, none, &limits(0), far(), &hist())
            .await
            .unwrap();
        let (b, _gb) = reserve(&e, &s, none, none, &limits(0), far(), &hist())
            .await
            .unwrap();
        let (c, _gc) = reserve(&e, &s, none, none, &limits(0), far(), &hist())
            .await
            .unwrap();
        let mut seen = [a, b, c];
        seen.sort();
        assert_eq!(
            seen,
            [0, 1, 2],
            "each endpoint gets one before any gets two"
        );
        let mut avoid = IndexSet::default();
        avoid.insert(0);
        avoid.insert(1);
        avoid.insert(2);
        assert!(
            reserve(&e, &s, avoid, none, &limits(0), far(), &hist())
                .await
                .is_ok(),
            "avoided endpoints are still usable"
        );
        let mut exclude = IndexSet::default();
        for i in 0..3 {
            exclude.insert(i);
        }
        let err = reserve(&e, &s, none, exclude, &limits(0), Instant::now(), &hist())
            .await
            .unwrap_err();
        assert_eq!(err, ReserveError::NoneUp);
    }

    #[tokio::test]
    async fn full_endpoints_queue_then_overflow() {
        let s = Arc::new(Signals::default());
        let e = eps(1, &s);
        let none = IndexSet::default();
        let (_, held) = reserve(&e, &s, none, none, &limits(1), far(), &hist())
            .await
            .unwrap();
        let err = reserve(&e, &s, none, none, &limits(1), far(), &hist())
            .await
            .unwrap_err();
        assert_eq!(err, ReserveError::Full);
        // A freed slot wakes the queued request.
        let e2 = e.clone();
        let s2 = s.clone();
        let waiter = tokio::spawn(async move {
            let l = Limits {
                queue_timeout: Duration::from_secs(5),
                ..limits(1)
            };
            reserve(
                &e2,
                &s2,
                IndexSet::default(),
                IndexSet::default(),
                &l,
                far(),
                &hist(),
            )
            .await
            .map(|(i, _)| i)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(0));
    }

    #[tokio::test]
    async fn hold_waits_for_an_endpoint_to_come_up() {
        let s = Arc::new(Signals::default());
        let e = eps(1, &s);
        e[0].passive_refused();
        assert!(e[0].is_down());
        let (e2, s2) = (e.clone(), s.clone());
        let waiter = tokio::spawn(async move {
            reserve(
                &e2,
                &s2,
                IndexSet::default(),
                IndexSet::default(),
                &limits(0),
                far(),
                &hist(),
            )
            .await
            .map(|(i, _)| i)
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let cfg = crate::config::Config::from_yaml("health:\n  healthy_threshold: 1\n", "t")
            .unwrap()
            .health;
        e[0].record_probe(ProbeOutcome::Healthy(200), Duration::ZERO, &cfg);
        assert_eq!(waiter.await.unwrap(), Ok(0));
    }

    #[test]
    fn slow_start_caps_a_recovered_endpoint() {
        let s = Arc::new(Signals::default());
        let e = eps(1, &s);
        let cfg = crate::config::Config::from_yaml("health:\n  healthy_threshold: 1\n", "t")
            .unwrap()
            .health;
        assert_eq!(
            e[0].capacity(10, Duration::from_secs(10)),
            10,
            "no slow start before any recovery"
        );
        e[0].passive_refused();
        e[0].record_probe(ProbeOutcome::Healthy(200), Duration::ZERO, &cfg);
        assert_eq!(
            e[0].capacity(10, Duration::from_secs(10)),
            1,
            "just recovered: one at a time"
        );
        assert_eq!(e[0].capacity(0, Duration::from_secs(10)), 1);
        assert_eq!(e[0].capacity(10, Duration::ZERO), 10, "slow start off");
    }
}
