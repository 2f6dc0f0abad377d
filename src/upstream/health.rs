//! Per-endpoint health: the rise/fall state machine fed by active probes and
//! passive signals. Pure — time comes in as arguments — so it is tested
//! without sockets or clocks.

use crate::config::{HealthConfig, HealthMode};
use crate::metrics::ProbeResult;
use serde::Serialize;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Not probed yet: routable (try it), but not counted as ready.
    Unknown,
    Up,
    Down,
}

/// What one active probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// A status in `health.expect_status` (0: an accepted TCP connection in
    /// `tcp` mode).
    Healthy(u16),
    /// A status outside `health.expect_status`.
    BadStatus(u16),
    /// Connection refused: nothing listens; no threshold needed to believe it.
    Refused,
    Timeout,
    /// Connect or protocol error other than refused.
    Failed,
}

impl ProbeOutcome {
    /// The metric label set this outcome falls in.
    pub fn result(self) -> ProbeResult {
        match self {
            ProbeOutcome::Healthy(_) => ProbeResult::Healthy,
            ProbeOutcome::BadStatus(_) => ProbeResult::BadStatus,
            ProbeOutcome::Refused => ProbeResult::Refused,
            ProbeOutcome::Timeout => ProbeResult::Timeout,
            ProbeOutcome::Failed => ProbeResult::Failed,
        }
    }

    pub fn label(self) -> &'static str {
        self.result().label()
    }

    /// What the probe found, in words that name the cause: `probe
    /// connection refused`, `GET /health answered 503 (health.expect_status:
    /// 100-499)`.
    pub fn describe(self, cfg: &HealthConfig) -> String {
        match (self, cfg.mode) {
            (ProbeOutcome::Healthy(_), HealthMode::Tcp) => "probe connected".into(),
            (ProbeOutcome::Healthy(s), HealthMode::Http) => format!("probe answered {s}"),
            (ProbeOutcome::BadStatus(s), _) => format!(
                "GET {} answered {s} (health.expect_status: {})",
                cfg.path, cfg.expect_status
            ),
            (ProbeOutcome::Refused, _) => "probe connection refused".into(),
            (ProbeOutcome::Timeout, _) => "probe timed out".into(),
            (ProbeOutcome::Failed, _) => "probe failed".into(),
        }
    }
}

/// A state change and why it happened (logged once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
    pub reason: String,
}

/// The last probe, for `/status`.
#[derive(Debug, Clone, Copy)]
pub struct LastProbe {
    pub outcome: ProbeOutcome,
    pub latency: Duration,
    pub at: Instant,
}

#[derive(Debug, Clone)]
pub struct HealthMachine {
    state: State,
    ok_streak: u32,
    fail_streak: u32,
    pub last_change: Instant,
    pub last_reason: String,
    pub last_probe: Option<LastProbe>,
}

impl HealthMachine {
    pub fn new(now: Instant) -> Self {
        HealthMachine {
            state: State::Unknown,
            ok_streak: 0,
            fail_streak: 0,
            last_change: now,
            last_reason: "not probed yet".into(),
            last_probe: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Feeds one probe result. `healthy_threshold`/`unhealthy_threshold` are
    /// the consecutive results needed to go up/down; the very first probe
    /// decides at once, and a refused connection takes an endpoint down at
    /// once.
    pub fn on_probe(
        &mut self,
        outcome: ProbeOutcome,
        latency: Duration,
        now: Instant,
        cfg: &HealthConfig,
    ) -> Option<Transition> {
        let (rise, fall) = (cfg.healthy_threshold, cfg.unhealthy_threshold);
        self.last_probe = Some(LastProbe {
            outcome,
            latency,
            at: now,
        });
        let healthy = matches!(outcome, ProbeOutcome::Healthy(_));
        if healthy {
            self.ok_streak += 1;
            self.fail_streak = 0;
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
        }
        let to = match (self.state, healthy) {
            (State::Unknown, true) => State::Up,
            (State::Unknown, false) => State::Down,
            (State::Down, true) if self.ok_streak >= rise => State::Up,
            (State::Up, false) if outcome == ProbeOutcome::Refused || self.fail_streak >= fall => {
                State::Down
            }
            _ => return None,
        };
        let streak = if healthy {
            self.ok_streak
        } else {
            self.fail_streak
        };
        let reason = match self.state {
            State::Unknown => format!("first {}", outcome.describe(cfg)),
            _ if outcome == ProbeOutcome::Refused => outcome.describe(cfg),
            _ => format!("{} ({streak} in a row)", outcome.describe(cfg)),
        };
        Some(self.set(to, reason, now))
    }

    /// A live request's connect was refused: the process is not listening.
    pub fn on_refused(&mut self, now: Instant) -> Option<Transition> {
        if self.state == State::Down {
            return None;
        }
        self.ok_streak = 0;
        Some(self.set(State::Down, "request connect refused".into(), now))
    }

    fn set(&mut self, to: State, reason: String, now: Instant) -> Transition {
        let t = Transition {
            from: self.state,
            to,
            reason: reason.clone(),
        };
        self.state = to;
        self.last_change = now;
        self.last_reason = reason;
        t
    }
}

/// The concurrency cap of an endpoint in slow start: a linear ramp from 1 to
/// `full` over `ramp` since it came up. `None`: no cap from slow start.
pub fn slow_start_cap(up_for: Option<Duration>, ramp: Duration, full: usize) -> Option<usize> {
    let up_for = up_for?;
    if ramp.is_zero() || up_for >= ramp {
        return None;
    }
    let frac = up_for.as_secs_f64() / ramp.as_secs_f64();
    Some(1 + ((full.saturating_sub(1)) as f64 * frac) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn cfg(rise: u32, fall: u32) -> HealthConfig {
        let yaml = format!("health:\n  healthy_threshold: {rise}\n  unhealthy_threshold: {fall}\n");
        crate::config::Config::from_yaml(&yaml, "t").unwrap().health
    }

    #[test]
    fn first_probe_decides_then_thresholds_apply() {
        let t = Instant::now();
        let mut m = HealthMachine::new(t);
        let tr = m
            .on_probe(ProbeOutcome::Healthy(200), MS, t, &cfg(2, 2))
            .unwrap();
        assert_eq!((tr.from, tr.to), (State::Unknown, State::Up));
        assert!(
            m.on_probe(ProbeOutcome::BadStatus(500), MS, t, &cfg(2, 2))
                .is_none(),
            "one failure is not enough"
        );
        let tr = m
            .on_probe(ProbeOutcome::Timeout, MS, t, &cfg(2, 2))
            .unwrap();
        assert_eq!(tr.to, State::Down);
        assert_eq!(tr.reason, "probe timed out (2 in a row)");
        assert!(
            m.on_probe(ProbeOutcome::Healthy(204), MS, t, &cfg(2, 2))
                .is_none(),
            "one success is not enough"
        );
        assert_eq!(
            m.on_probe(ProbeOutcome::Healthy(301), MS, t, &cfg(2, 2))
                .unwrap()
                .to,
            State::Up
        );
    }

    #[test]
    fn flapping_below_thresholds_changes_nothing() {
        let t = Instant::now();
        let mut m = HealthMachine::new(t);
        m.on_probe(ProbeOutcome::Healthy(200), MS, t, &cfg(3, 3));
        for _ in 0..10 {
            assert!(m
                .on_probe(ProbeOutcome::BadStatus(503), MS, t, &cfg(3, 3))
                .is_none());
            assert!(m
                .on_probe(ProbeOutcome::Healthy(200), MS, t, &cfg(3, 3))
                .is_none());
        }
        assert_eq!(m.state(), State::Up);
    }

    #[test]
    fn refused_is_believed_at_once() {
        let t = Instant::now();
        let mut m = HealthMachine::new(t);
        m.on_probe(ProbeOutcome::Healthy(200), MS, t, &cfg(2, 5));
        assert_eq!(
            m.on_probe(ProbeOutcome::Refused, MS, t, &cfg(2, 5))
                .unwrap()
                .to,
            State::Down
        );
        let mut m = HealthMachine::new(t);
        m.on_probe(ProbeOutcome::Healthy(200), MS, t, &cfg(2, 5));
        assert_eq!(m.on_refused(t).unwrap().reason, "request connect refused");
        assert!(m.on_refused(t).is_none(), "logged once");
    }

    #[test]
    fn reasons_name_the_cause() {
        let t = Instant::now();
        let c = cfg(2, 2);
        let mut m = HealthMachine::new(t);
        let tr = m.on_probe(ProbeOutcome::BadStatus(503), MS, t, &c).unwrap();
        assert_eq!(
            tr.reason,
            "first GET /health answered 503 (health.expect_status: 100-499)"
        );
        let mut m = HealthMachine::new(t);
        let tr = m.on_probe(ProbeOutcome::Healthy(404), MS, t, &c).unwrap();
        assert_eq!(tr.reason, "first probe answered 404");
        assert_eq!(tr.to, State::Up);
    }

    #[test]
    fn slow_start_ramps_linearly() {
        let ramp = Duration::from_secs(10);
        assert_eq!(slow_start_cap(None, ramp, 100), None);
        assert_eq!(slow_start_cap(Some(Duration::ZERO), ramp, 100), Some(1));
        assert_eq!(
            slow_start_cap(Some(Duration::from_secs(5)), ramp, 101),
            Some(51)
        );
        assert_eq!(
            slow_start_cap(Some(Duration::from_secs(10)), ramp, 100),
            None
        );
        assert_eq!(
            slow_start_cap(Some(Duration::from_secs(1)), Duration::ZERO, 100),
            None
        );
    }
}
