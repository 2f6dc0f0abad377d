//! Binding listeners (with a real backlog), the accept loop, and the file
//! descriptors lifeguard keeps for itself.
//!
//! Every client connection costs a descriptor, and so does every app
//! connection and health probe it causes. Were clients allowed to take the
//! last ones, lifeguard's own connects to a healthy app would fail with
//! EMFILE and its probes would mark the app down. So at startup the soft
//! `RLIMIT_NOFILE` is raised to the hard limit, and a reserve
//! ([`FdBudget`]) is kept: a connection accepted within the reserve of the
//! limit is closed at once (shed) instead of served. When `accept` itself
//! fails for want of a descriptor, a spare one is given up to take one
//! connection off the backlog and close it, and the failure is logged at
//! most once a second with a count of the ones not logged.

use super::conn;
use crate::error::is_fd_exhaustion;
use crate::metrics::{Listener, Metrics, ShedReason};
use crate::runtime::Shared;
use crate::shutdown::Phase;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::Poll;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// Binds a TCP listener. The backlog matters for a sidecar behind a busy
/// Service: the default of 128 overflows under connection bursts.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    TcpListener::from_std(socket.into())
}

/// Accepts client connections until the phase reaches `Closing`. At most
/// `limit` connections are open at once: past that, accepting pauses (the
/// kernel backlog holds newcomers) instead of dropping anyone.
/// With `tls`, every connection is a TLS connection.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
) {
    let mut phase = shared.phase.subscribe();
    let fds = fd_budget();
    fds.publish(&shared.metrics);
    let mut errors = AcceptErrors::new(Listener::Proxy);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p,
            _ = closing(&mut phase) => break,
        };
        let Ok(permit) = permit else { break };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if !fds.admits(&stream, fds.reserve()) => {
                    errors.shed(ShedReason::FdReserve, &shared.metrics);
                }
                Ok((stream, peer)) => {
                    errors.accepted();
                    let shared = shared.clone();
                    let tls = tls.clone();
                    shared.metrics.connections_accepted.inc();
                    shared.metrics.connections_open.inc();
                    shared.activity.enter();
                    // Debug level for the same reason as the request span.
                    let span = tracing::debug_span!("conn", %peer, tls = tls.is_some());
                    let served = async move {
                        // Boxed: a TLS handshake's state is large, and the task
                        // of a plain connection must stay small until its first
                        // byte (`conn::serve_tcp`).
                        match tls {
                            Some(tls) => Box::pin(super::tls::serve(stream, peer, shared.clone(), tls)).await,
                            None => conn::serve_tcp(stream, peer, shared.clone()).await,
                        }
                        shared.metrics.connections_open.dec();
                        shared.activity.leave();
                        drop(permit);
                    };
                    // A disabled span (debug off) would still sit in every
                    // connection's task; leave it out.
                    if span.is_disabled() {
                        tokio::spawn(served);
                    } else {
                        tokio::spawn(served.instrument(span));
                    }
                }
                Err(e) => errors.failed(&listener, e, &shared.metrics).await,
            },
            _ = closing(&mut phase) => break,
        }
    }
    tracing::info!(addr = ?listener.local_addr().ok(), "stopped accepting connections");
}

/// Resolves once the phase reaches `Closing` (or the phase sender is gone).
pub async fn closing(phase: &mut tokio::sync::watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p >= Phase::Closing).await;
}

/// Descriptors kept free for lifeguard itself: 64, or 5 % of a larger
/// limit, but at most a quarter of the limit.
fn reserve_for(limit: u64) -> u64 {
    (limit / 20).max(64).min(limit / 4)
}

/// Admin connections open at once: 256, or a quarter of a small limit, so
/// the admin port can never take the descriptors the proxy serves with.
pub fn admin_connection_cap(limit: u64) -> usize {
    (limit / 4).clamp(1, 256) as usize
}

/// The process's descriptor limit and how close to it connections may come.
/// One per process (descriptors are), made on first use, which also raises
/// the soft limit to the hard one.
pub fn fd_budget() -> &'static FdBudget {
    static BUDGET: OnceLock<FdBudget> = OnceLock::new();
    BUDGET.get_or_init(FdBudget::from_process)
}

/// See [`fd_budget`].
#[derive(Debug)]
pub struct FdBudget {
    limit: u64,
    reserve: u64,
    count: Mutex<FdCount>,
}

/// The last count of open descriptors, and connections admitted since.
#[derive(Debug)]
struct FdCount {
    at: Option<Instant>,
    open: u64,
    admitted_since: u64,
}

/// How long a count of `/proc/self/fd` is trusted (plus what was admitted
/// since): a listing costs tens of microseconds, so at most this often.
const RECOUNT: Duration = Duration::from_millis(100);

impl FdBudget {
    fn from_process() -> FdBudget {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let before = getrlimit(Resource::Nofile);
        let mut soft = before.current;
        if let (Some(cur), Some(max)) = (before.current, before.maximum) {
            if cur < max {
                let raised = Rlimit {
                    current: Some(max),
                    maximum: Some(max),
                };
                match setrlimit(Resource::Nofile, raised) {
                    Ok(()) => soft = Some(max),
                    Err(e) => {
                        tracing::warn!(error = %e, soft = cur, hard = max, "could not raise the file descriptor limit")
                    }
                }
            }
        }
        // No limit at all: nothing to keep in reserve for.
        let limit = soft.unwrap_or(u64::MAX);
        let budget = FdBudget::new(limit);
        tracing::info!(limit, hard = ?before.maximum, was = ?before.current, reserve = budget.reserve, "file descriptor limit");
        budget
    }

    fn new(limit: u64) -> FdBudget {
        FdBudget {
            limit,
            reserve: reserve_for(limit),
            count: Mutex::new(FdCount {
                at: None,
                open: 0,
                admitted_since: 0,
            }),
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Descriptors client connections must leave free.
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    fn publish(&self, m: &Metrics) {
        m.fd_limit.set(self.limit.min(i64::MAX as u64) as i64);
        m.fd_reserve.set(self.reserve.min(i64::MAX as u64) as i64);
    }

    /// Whether a connection just accepted (`stream`) may be served while
    /// leaving `headroom` descriptors free; false means: close it now.
    pub fn admits(&self, stream: &TcpStream, headroom: u64) -> bool {
        // Descriptors are allocated lowest-free first, so at least this many
        // are open: no count needed to turn away the obvious.
        let at_least = stream.as_raw_fd().max(0) as u64 + 1;
        let threshold = self.limit.saturating_sub(headroom);
        if at_least > threshold {
            return false;
        }
        let mut c = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        if c.at.is_none_or(|at| at.elapsed() >= RECOUNT) {
            match count_open_fds() {
                Ok(n) => {
                    c.open = n;
                    c.admitted_since = 0;
                    c.at = Some(Instant::now());
                }
                // Not even one to list them with: full.
                Err(e) if is_fd_exhaustion(&e) => return false,
                // No /proc (not Linux): the lower bound is all there is.
                Err(_) => c.at = Some(Instant::now()),
            }
        }
        let open = at_least.max(c.open + c.admitted_since);
        if open > threshold {
            return false;
        }
        c.admitted_since += 1;
        true
    }
}

/// Open descriptors of this process (the listing's own not counted).
fn count_open_fds() -> io::Result<u64> {
    let n = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    Ok(n.saturating_sub(1))
}

/// One line a second at most, saying how many were left out since the last.
#[derive(Debug, Default)]
pub struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// `Some(suppressed)` when a line is due (with the number of events not
    /// logged since the last line); `None` when this one is to be counted
    /// only.
    pub fn hit(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What an accept loop does about failed accepts and shed connections:
/// counts them, logs them at most once a second, sheds one connection off
/// the backlog when out of descriptors, and backs off.
#[derive(Debug)]
pub struct AcceptErrors {
    listener: Listener,
    /// Held so that one can be given up to accept (and close) a connection
    /// when `accept` fails for want of a descriptor.
    spare: Option<std::fs::File>,
    backoff: Duration,
    failures: RateLimitedLog,
    sheds: RateLimitedLog,
}

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl AcceptErrors {
    pub fn new(listener: Listener) -> AcceptErrors {
        AcceptErrors {
            listener,
            spare: std::fs::File::open("/dev/null").ok(),
            backoff: BACKOFF_MIN,
            failures: RateLimitedLog::default(),
            sheds: RateLimitedLog::default(),
        }
    }

    /// A connection was accepted: the trouble, if any, is over.
    pub fn accepted(&mut self) {
        self.backoff = BACKOFF_MIN;
    }

    /// A connection accepted and closed at once (dropped by the caller).
    pub fn shed(&mut self, reason: ShedReason, m: &Metrics) {
        m.connection_shed(self.listener, reason);
        if let Some(suppressed) = self.sheds.hit() {
            tracing::warn!(
                listener = self.listener.label(),
                reason = reason.label(),
                suppressed,
                "connection closed at accept"
            );
        }
    }

    /// `accept` failed with `e`.
    pub async fn failed(&mut self, listener: &TcpListener, e: io::Error, m: &Metrics) {
        m.accept_error(self.listener);
        if let Some(suppressed) = self.failures.hit() {
            tracing::warn!(listener = self.listener.label(), error = %e, suppressed, "accept failed");
        }
        if is_fd_exhaustion(&e) && self.shed_one(listener) {
            self.shed(ShedReason::FdExhausted, m);
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    /// Gives up the spare descriptor to take one waiting connection off the
    /// backlog and close it (a client told "no" at once rather than left
    /// hanging), then takes the spare back.
    fn shed_one(&mut self, listener: &TcpListener) -> bool {
        let Some(spare) = self.spare.take() else {
            self.spare = std::fs::File::open("/dev/null").ok();
            return false;
        };
        drop(spare);
        let waker = std::task::Waker::noop();
        let shed = matches!(
            listener.poll_accept(&mut std::task::Context::from_waker(waker)),
            Poll::Ready(Ok(_))
        );
        self.spare = std::fs::File::open("/dev/null").ok();
        shed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_and_admin_cap_follow_the_limit() {
        assert_eq!(reserve_for(256), 64);
        assert_eq!(reserve_for(128), 32, "at most a quarter");
        assert_eq!(reserve_for(1024), 64);
        assert_eq!(reserve_for(1 << 20), 52428, "5 % of a large limit");
        assert_eq!(admin_connection_cap(256), 64);
        assert_eq!(admin_connection_cap(1 << 20), 256);
        assert_eq!(admin_connection_cap(2), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_line_a_second_with_the_count_left_out() {
        let mut log = RateLimitedLog::default();
        assert_eq!(log.hit(), Some(0));
        for _ in 0..566 {
            assert_eq!(log.hit(), None);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(log.hit(), Some(566));
        assert_eq!(log.hit(), None);
    }

    #[tokio::test]
    async fn a_budget_sheds_within_its_reserve() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let open = count_open_fds().unwrap();
        let roomy = FdBudget::new(open + 1000);
        assert!(roomy.admits(&c, 64));
        let tight = FdBudget::new(open + 10);
        assert!(!tight.admits(&c, 64), "{open} open, limit {}", open + 10);
    }
}
