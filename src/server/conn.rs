//! One client connection: protocol detection (HTTP/2 prior knowledge or
//! HTTP/1.1), hyper's connection driver, and a watchdog for the two client
//! timeouts hyper cannot tell apart: `client.header_timeout` (from the first
//! byte of a request head to its end: slowloris) and `client.idle_timeout` (a
//! keep-alive connection with nothing in progress). hyper's own header timer
//! also runs while a connection is idle, so it is off and this replaces it.

use super::io::{TrackedIo, PREFACE_LEN};
use crate::config::ClientConfig;
use crate::proxy::{self, ClientFacts};
use crate::shutdown::Phase;
use crate::state::Shared;
use http::HeaderValue;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};

const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the request path and the watchdog know about one client connection.
#[derive(Debug)]
pub struct ConnState {
    pub peer: SocketAddr,
    pub facts: ClientFacts,
    epoch: Instant,
    /// Requests whose response is not finished.
    active: AtomicU32,
    /// When `active` last fell to 0, in ms since `epoch`.
    idle_since_ms: AtomicU64,
    /// When a request head started arriving on an idle connection, in ms since
    /// `epoch` plus one (0: none).
    head_started_ms: AtomicU64,
    /// Wakes the watchdog when a deadline moves earlier than the one it
    /// sleeps on (a request finished, or a head started on an idle connection).
    changed: Notify,
    /// When the watchdog will next wake, in ms since `epoch`.
    wake_ms: AtomicU64,
    idle_ms: u64,
    header_ms: u64,
    h2: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum Expiry {
    Idle,
    HeaderTimeout,
}

impl ConnState {
    fn new(
        peer: SocketAddr,
        proto: &'static str,
        h2: bool,
        head_started: bool,
        client: &ClientConfig,
    ) -> ConnState {
        let peer_ip = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or(HeaderValue::from_static("unknown"));
        ConnState {
            peer,
            facts: ClientFacts { peer_ip, proto },
            epoch: Instant::now(),
            active: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(if head_started && !h2 { 1 } else { 0 }),
            changed: Notify::new(),
            wake_ms: AtomicU64::new(u64::MAX),
            idle_ms: client.idle_timeout.as_millis() as u64,
            header_ms: client.header_timeout.as_millis() as u64,
            h2,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn request_started(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
    }

    pub fn request_finished(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = self.now_ms();
            self.idle_since_ms.store(now, Ordering::SeqCst);
            self.wake_if_earlier(now + self.idle_ms);
        }
    }

    /// Called on every read from the client socket.
    pub(super) fn bytes_arrived(&self) {
        if !self.h2
            && self.active.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Acquire) == 0
        {
            let now = self.now_ms();
            self.head_started_ms.store(now, Ordering::SeqCst);
            self.wake_if_earlier(now + self.header_ms);
        }
    }

    /// A watchdog asleep past `deadline` would act late: wake it. Usually it
    /// already wakes earlier (then it just re-reads the state), which keeps
    /// task wake-ups off the per-request path.
    fn wake_if_earlier(&self, deadline: u64) {
        if deadline < self.wake_ms.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    /// Which timeout has expired, or when to look again.
    fn expiry(&self, idle: Duration, header: Duration) -> Result<Expiry, Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return Err(Instant::now() + idle);
        }
        let now = self.now_ms();
        let head = self.head_started_ms.load(Ordering::SeqCst);
        let (deadline, kind) = if head != 0 {
            (head + header.as_millis() as u64, Expiry::HeaderTimeout)
        } else {
            (
                self.idle_since_ms.load(Ordering::SeqCst) + idle.as_millis() as u64,
                Expiry::Idle,
            )
        };
        if now >= deadline {
            Ok(kind)
        } else {
            Err(self.epoch + Duration::from_millis(deadline))
        }
    }
}

/// Serves one plain-TCP client connection until it closes.
pub async fn serve_tcp(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let client = shared.snapshot.load().config.client.clone();
    let _ = stream.set_nodelay(true);
    let mut prefix = [0u8; PREFACE_LEN];
    let mut phase = shared.phase.subscribe();
    let Some(n) = sniff(&mut stream, &mut prefix, &client, &mut phase).await else {
        return;
    };
    let h2 = n == PREFACE_LEN && prefix == *PREFACE;
    serve_io(stream, prefix, n, h2, peer, "http", shared, client).await;
}

/// Reads just enough to tell the HTTP/2 preface from an HTTP/1 request line.
/// `None`: the client closed or sent nothing in time — or nothing before the
/// process started closing: a connection with no request is idle, and like
/// an idle keep-alive connection it must not hold up the drain.
async fn sniff(
    stream: &mut TcpStream,
    buf: &mut [u8; PREFACE_LEN],
    client: &ClientConfig,
    phase: &mut watch::Receiver<Phase>,
) -> Option<usize> {
    let first = tokio::select! {
        r = tokio::time::timeout(client.idle_timeout, stream.read(buf)) => r,
        _ = phase.wait_for(|p| *p >= Phase::Closing) => return None,
    };
    let mut n = match first {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
        Ok(Ok(n)) => n,
    };
    while n < PREFACE_LEN && buf[..n] == PREFACE[..n] {
        match tokio::time::timeout(client.header_timeout, stream.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(more)) => n += more,
        }
    }
    Some(n)
}

/// Serves a connection over any transport (plain TCP, or TLS later).
#[allow(clippy::too_many_arguments)]
pub async fn serve_io<I>(
    io: I,
    prefix: [u8; PREFACE_LEN],
    prefix_len: usize,
    h2: bool,
    peer: SocketAddr,
    proto: &'static str,
    shared: Arc<Shared>,
    client: ClientConfig,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new(peer, proto, h2, prefix_len > 0, &client));
    let io = TokioIo::new(TrackedIo::new(io, state.clone(), prefix, prefix_len));
    let phase = shared.phase.subscribe();
    let svc_state = state.clone();
    let svc = service_fn(move |req| proxy::handle(shared.clone(), svc_state.clone(), req));
    if h2 {
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(client.http2_max_streams)
            .max_header_list_size(client.max_header_size as u32);
        let conn = b.serve_connection(io, svc);
        drive(conn, |c| c.graceful_shutdown(), &state, &client, phase).await;
    } else {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_header_size(client.max_header_size)
            .keep_alive(true);
        let conn = b.serve_connection(io, svc).with_upgrades();
        drive(conn, |c| c.graceful_shutdown(), &state, &client, phase).await;
    }
}

/// Runs a hyper connection to completion, closing it when idle too long, when
/// a request head is too slow, or (gracefully) when the process is closing.
async fn drive<C>(
    conn: C,
    shutdown: impl Fn(Pin<&mut C>),
    state: &ConnState,
    client: &ClientConfig,
    mut phase: watch::Receiver<Phase>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    let mut closing = false;
    if *phase.borrow_and_update() >= Phase::Closing {
        shutdown(conn.as_mut());
        closing = true;
    }
    loop {
        // While awake, every state change notifies (the permit makes the next
        // sleep return at once), so none is missed between reading the state
        // and publishing the new wake time. SeqCst pairs these with the
        // state writers' loads of `wake_ms`.
        state.wake_ms.store(u64::MAX, Ordering::SeqCst);
        let wake = match state.expiry(client.idle_timeout, client.header_timeout) {
            Ok(Expiry::HeaderTimeout) => {
                tracing::debug!(peer = %state.peer, "request head not received within client.header_timeout; closing");
                return; // dropping the connection closes the socket
            }
            Ok(Expiry::Idle) if closing => return,
            Ok(Expiry::Idle) => {
                shutdown(conn.as_mut());
                closing = true;
                Instant::now() + client.idle_timeout
            }
            Err(at) => at,
        };
        let wake_ms = wake.saturating_duration_since(state.epoch).as_millis() as u64 + 1;
        state.wake_ms.store(wake_ms, Ordering::SeqCst);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %state.peer, error = %e, "client connection ended with error");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
            _ = state.changed.notified() => {}
            changed = phase.changed(), if !closing => {
                if changed.is_err() || *phase.borrow_and_update() >= Phase::Closing {
                    shutdown(conn.as_mut());
                    closing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // a plain unit test, no runtime to stall
    fn idle_then_header_timeout() {
        let client = crate::config::Config::from_yaml("", "t").unwrap().client;
        let s = ConnState::new(
            "127.0.0.1:1".parse().unwrap(),
            "http",
            false,
            false,
            &client,
        );
        let idle = Duration::from_secs(60);
        let header = Duration::ZERO;
        assert!(
            s.expiry(idle, header).is_err(),
            "fresh connection is within idle time"
        );
        s.bytes_arrived();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(s.expiry(idle, header), Ok(Expiry::HeaderTimeout));
        s.request_started();
        assert!(
            s.expiry(Duration::ZERO, header).is_err(),
            "active requests never expire"
        );
        s.request_finished();
        assert_eq!(
            s.expiry(Duration::ZERO, Duration::from_secs(60)),
            Ok(Expiry::Idle)
        );
    }
}
