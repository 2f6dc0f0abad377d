//! The app's endpoints: their health, their capacity (max in flight, slow
//! start), how one is picked (least outstanding requests), and their pooled
//! keep-alive connections.
//!
//! An `Endpoint` is shared by `Arc` between config snapshots, so state keyed by
//! endpoint (health, pool, counters) survives a reload that keeps it.

mod balance;
mod body;
pub mod health;
mod pool;
pub mod probe;

pub use balance::{reserve, IndexSet, Limits, ReserveError};
pub use body::{BoxError, StreamingBody, UpstreamBody};
pub use pool::{PoolSettings, PooledConn};

use crate::config::HealthConfig;
use crate::metrics::EndpointMetrics;
use health::{HealthMachine, ProbeOutcome, State, Transition};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

/// Wake-ups shared by all endpoints: health changes (for requests holding
/// for an endpoint to come up) and freed capacity (for queued requests).
#[derive(Debug)]
pub struct Signals {
    pub health_changed: watch::Sender<u64>,
    pub capacity_freed: Notify,
    /// Requests waiting for capacity; zero means nobody needs a wake-up.
    pub queued: AtomicUsize,
    /// Rotates tie-breaks between equally loaded endpoints.
    pub rotor: AtomicUsize,
    epoch: Instant,
}

impl Default for Signals {
    fn default() -> Self {
        Signals {
            health_changed: watch::Sender::new(0),
            capacity_freed: Notify::new(),
            queued: AtomicUsize::new(0),
            rotor: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

/// One app process (or Node cluster master) lifeguard forwards to.
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `addr` as text, shared with in-flight entries without reallocating.
    pub name: Arc<String>,
    outstanding: AtomicUsize,
    idle: Mutex<Vec<pool::IdleConn>>,
    /// Health state for the request path (lock-free read).
    state: AtomicU8,
    /// When the endpoint last came up from down, in ms since `signals.epoch`
    /// plus one (0: never, no slow start).
    up_since_ms: AtomicU64,
    health: Mutex<HealthMachine>,
    /// Wakes this endpoint's prober for an immediate probe.
    pub probe_now: Notify,
    pub(crate) prober_started: AtomicBool,
    signals: Arc<Signals>,
    pub metrics: EndpointMetrics,
}

/// Why no endpoint is up, in the words of the health record: each
/// endpoint that is not up with the reason it went down (`127.0.0.1:3000:
/// probe connection refused`), or with `addresses` false the distinct
/// reasons only (`probe connection refused`), for pages the public sees.
/// Empty when some endpoint is up.
pub fn why_none_up(endpoints: &[Arc<Endpoint>], addresses: bool) -> String {
    if endpoints.iter().any(|e| e.is_up()) {
        return String::new();
    }
    let mut causes: Vec<String> = Vec::new();
    for e in endpoints {
        let reason = e.health_lock().last_reason.clone();
        let cause = if addresses {
            format!("{}: {reason}", e.name)
        } else {
            reason
        };
        if !causes.contains(&cause) {
            causes.push(cause);
        }
    }
    causes.join("; ")
}

impl Endpoint {
    pub fn new(addr: SocketAddr, signals: Arc<Signals>, metrics: EndpointMetrics) -> Endpoint {
        Endpoint {
            addr,
            name: Arc::new(addr.to_string()),
            outstanding: AtomicUsize::new(0),
            idle: Mutex::new(Vec::new()),
            state: AtomicU8::new(UNKNOWN),
            up_since_ms: AtomicU64::new(0),
            health: Mutex::new(HealthMachine::new(Instant::now())),
            probe_now: Notify::new(),
            prober_started: AtomicBool::new(false),
            signals,
            metrics,
        }
    }

    /// Requests currently sent to (or being sent to) this endpoint.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Acquire) {
            UP => State::Up,
            DOWN => State::Down,
            _ => State::Unknown,
        }
    }

    /// May receive requests (up, or not probed yet).
    pub fn is_routable(&self) -> bool {
        self.state.load(Ordering::Acquire) != DOWN
    }

    pub fn is_up(&self) -> bool {
        self.state.load(Ordering::Acquire) == UP
    }

    pub fn is_down(&self) -> bool {
        self.state.load(Ordering::Acquire) == DOWN
    }

    /// A copy of the health record, for `/status`.
    pub fn health(&self) -> HealthMachine {
        self.health_lock().clone()
    }

    fn health_lock(&self) -> MutexGuard<'_, HealthMachine> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Feeds an active probe result.
    pub fn record_probe(&self, outcome: ProbeOutcome, latency: Duration, cfg: &HealthConfig) {
        self.metrics.probe(outcome.result(), latency);
        let t = self
            .health_lock()
            .on_probe(outcome, latency, Instant::now(), cfg);
        if let Some(t) = t {
            self.apply(t);
        }
    }

    /// A request's connect was refused: down at once, and probe right away so
    /// recovery is seen as soon as the app listens again.
    pub fn passive_refused(&self) {
        let t = self.health_lock().on_refused(Instant::now());
        if let Some(t) = t {
            self.apply(t);
        }
        self.probe_now.notify_one();
    }

    /// Something suggests the app may have crashed: probe now.
    pub fn passive_suspect(&self) {
        self.probe_now.notify_one();
    }

    fn apply(&self, t: Transition) {
        let code = match t.to {
            State::Up => UP,
            State::Down => DOWN,
            State::Unknown => UNKNOWN,
        };
        if t.from == State::Down && t.to == State::Up {
            let ms = self.signals.epoch.elapsed().as_millis() as u64 + 1;
            self.up_since_ms.store(ms, Ordering::Release);
        }
        self.state.store(code, Ordering::Release);
        self.metrics.state_change(t.to == State::Up);
        match t.to {
            State::Down => {
                tracing::warn!(endpoint = %self.name, from = ?t.from, reason = %t.reason, "app endpoint down")
            }
            _ => {
                tracing::info!(endpoint = %self.name, from = ?t.from, reason = %t.reason, "app endpoint up")
            }
        }
        self.signals.health_changed.send_modify(|n| *n += 1);
    }

    /// How long since the endpoint came back up from down (None if it never
    /// went down).
    fn up_for(&self) -> Option<Duration> {
        match self.up_since_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(
                self.signals
                    .epoch
                    .elapsed()
                    .saturating_sub(Duration::from_millis(ms - 1)),
            ),
        }
    }

    /// The number of requests this endpoint may have in flight now:
    /// `max_in_flight` (0 = unlimited), lowered by slow start after recovery.
    pub fn capacity(&self, max_in_flight: usize, slow_start: Duration) -> usize {
        let limit = if max_in_flight == 0 {
            usize::MAX
        } else {
            max_in_flight
        };
        // With no configured limit, slow start ramps towards this many
        // concurrent requests, then lifts the cap.
        let full = if max_in_flight == 0 {
            SLOW_START_CEILING
        } else {
            max_in_flight
        };
        match health::slow_start_cap(self.up_for(), slow_start, full) {
            Some(cap) => cap.min(limit),
            None => limit,
        }
    }

    /// Takes one slot if fewer than `cap` requests are outstanding.
    fn try_reserve(self: &Arc<Self>, cap: usize) -> Option<Outstanding> {
        self.outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| Outstanding(self.clone()))
    }
}

/// Slow start's ramp target when `app.max_in_flight` is 0 (unlimited).
pub const SLOW_START_CEILING: usize = 64;

/// Holds one unit of an endpoint's outstanding count.
#[derive(Debug)]
pub struct Outstanding(Arc<Endpoint>);

impl Outstanding {
    pub fn endpoint(&self) -> &Arc<Endpoint> {
        &self.0
    }
}

impl Drop for Outstanding {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::AcqRel);
        if self.0.signals.queued.load(Ordering::Acquire) > 0 {
            self.0.signals.capacity_freed.notify_one();
        }
    }
}
