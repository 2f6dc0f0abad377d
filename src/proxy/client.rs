//! What the request path and the connection watchdog know about one client
//! connection: its peer, the facts forwarded to the app, and the counters
//! behind the client timeouts hyper cannot express: `client.header_timeout`
//! from the first byte of a head, `client.idle_timeout` with nothing in
//! progress, and `client.send_timeout` while the client accepts no response
//! byte — a write to its socket blocked (`server/io.rs`), or, on HTTP/2, a
//! response chunk handed to hyper that its stream never takes because the
//! client keeps the flow-control window shut ([`SendWatch`]).

use super::headers::ClientFacts;
use crate::config::ClientConfig;
use crate::metrics::{ClientTimeout, Metrics};
use atomic_waker::AtomicWaker;
use http::HeaderValue;
use prometheus::IntCounter;
use slab::Slab;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

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
    send_ms: u64,
    h2: bool,
    /// When a write to the client socket last returned `Pending` with no byte
    /// accepted since, in ms since `epoch` plus one (0: not blocked).
    write_blocked_ms: AtomicU64,
    /// HTTP/2: one stamp per streamed response body, set while a chunk it
    /// handed to hyper waits for the stream to take it (same units; 0: none
    /// waiting).
    handed: Mutex<Slab<Arc<AtomicU64>>>,
    header_timeouts: IntCounter,
    send_timeouts: IntCounter,
    /// HTTP/1: how long a keep-alive connection stays idle before its hyper
    /// connection (and the buffers hyper keeps for it) is let go, in ms;
    /// 0: never (HTTP/2).
    release_ms: u64,
    /// A request ended with its body not read to the end (hyper may still
    /// be reading it): this connection's hyper state is never let go.
    keep_buffers: AtomicBool,
    /// HTTP/1: the response body waiting for the client's socket to take
    /// bytes again ([`Self::poll_write_room`]).
    write_room: AtomicWaker,
}

/// How long an HTTP/1 connection stays idle before its buffers are released
/// (`server/conn.rs`): long enough that a busy connection never pays for a
/// new hyper connection, short enough that an idle pool costs little.
pub(super) const RELEASE_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Which client timeout expired.
#[derive(Debug, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    HeaderTimeout,
    /// `client.send_timeout`: the client took no response byte for that long.
    SendTimeout,
}

impl ConnState {
    pub fn new(
        peer: SocketAddr,
        proto: &'static str,
        h2: bool,
        head_started: bool,
        client: &ClientConfig,
        metrics: &Metrics,
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
            send_ms: client.send_timeout.as_millis() as u64,
            h2,
            write_blocked_ms: AtomicU64::new(0),
            handed: Mutex::new(Slab::new()),
            header_timeouts: metrics.client_timeout_counter(ClientTimeout::Header),
            send_timeouts: metrics.client_timeout_counter(ClientTimeout::Send),
            release_ms: if h2 {
                0
            } else {
                RELEASE_IDLE_AFTER.as_millis() as u64
            },
            keep_buffers: AtomicBool::new(false),
            write_room: AtomicWaker::new(),
        }
    }

    /// The watchdog is awake: every state change until `sleeping_until`
    /// notifies (the permit makes the next sleep return at once), so none is
    /// missed between reading the state and publishing the new wake time.
    /// SeqCst pairs these with the state writers' loads of `wake_ms`.
    pub fn watchdog_awake(&self) {
        self.wake_ms.store(u64::MAX, Ordering::SeqCst);
    }

    /// The watchdog will sleep until `wake` unless notified.
    pub fn sleeping_until(&self, wake: Instant) {
        let ms = wake.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        self.wake_ms.store(ms, Ordering::SeqCst);
    }

    /// Resolves when a deadline moved earlier than the watchdog's wake time.
    pub async fn deadline_moved(&self) {
        self.changed.notified().await;
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
            let next = match self.releasable() {
                true => self.release_ms.min(self.idle_ms),
                false => self.idle_ms,
            };
            self.wake_if_earlier(now + next);
        }
    }

    /// A request ends before hyper read its body to the end: hyper's state
    /// of this connection must be kept as it is (see [`Self::release_at`]).
    pub fn keep_buffers(&self) {
        self.keep_buffers.store(true, Ordering::Release);
    }

    fn releasable(&self) -> bool {
        self.release_ms != 0 && !self.keep_buffers.load(Ordering::Acquire)
    }

    /// HTTP/1: when this connection's hyper connection may be let go and
    /// rebuilt on the next byte — only while truly idle: no request active,
    /// no head arriving, no write blocked (hyper's write buffer is empty),
    /// and every request body read to the end. `None`: not now.
    pub fn release_at(&self) -> Option<Instant> {
        if !self.releasable()
            || self.active.load(Ordering::Acquire) > 0
            || self.head_started_ms.load(Ordering::SeqCst) != 0
            || self.write_blocked_ms.load(Ordering::SeqCst) != 0
        {
            return None;
        }
        let since = self.idle_since_ms.load(Ordering::SeqCst).max(1);
        Some(self.at(since + self.release_ms))
    }

    /// When an idle connection is closed: `idle` after the last request
    /// ended (or after it opened).
    pub fn idle_deadline(&self, idle: Duration) -> Instant {
        let since = self.idle_since_ms.load(Ordering::SeqCst).max(1);
        self.at(since + idle.as_millis() as u64)
    }

    /// The instant of a stamp (milliseconds after `epoch`, plus one).
    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms.saturating_sub(1))
    }

    /// Called on every read from the client socket.
    pub fn bytes_arrived(&self) {
        if !self.h2
            && self.active.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Acquire) == 0
        {
            let now = self.now_ms();
            self.head_started_ms.store(now, Ordering::SeqCst);
            self.wake_if_earlier(now + self.header_ms);
        }
    }

    /// A write to the client socket could not proceed (its buffer is full:
    /// the client is not reading). Called on every `Pending` write.
    pub fn write_blocked(&self) {
        if self.write_blocked_ms.load(Ordering::Relaxed) == 0 {
            let now = self.now_ms();
            self.write_blocked_ms.store(now, Ordering::SeqCst);
            self.wake_if_earlier(now + self.send_ms);
        }
    }

    /// The client socket accepted bytes. Called on every successful write.
    pub fn write_progressed(&self) {
        if self.write_blocked_ms.load(Ordering::Relaxed) != 0 {
            self.write_blocked_ms.store(0, Ordering::SeqCst);
            self.write_room.wake();
        }
    }

    /// HTTP/1 backpressure: `Pending` while a write to the client is
    /// blocked. hyper takes the next chunk of a response body whenever its
    /// own write queue has room (up to hundreds of KiB), whether or not the
    /// socket does; a client that stops reading would make lifeguard hold
    /// that much of the app's response for it. Holding the body back
    /// instead keeps the app's bytes in the kernel's socket buffers, and
    /// the app connection's flow control does the rest.
    pub fn poll_write_room(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.h2 || self.write_blocked_ms.load(Ordering::SeqCst) == 0 {
            return std::task::Poll::Ready(());
        }
        self.write_room.register(cx.waker());
        if self.write_blocked_ms.load(Ordering::SeqCst) == 0 {
            return std::task::Poll::Ready(());
        }
        std::task::Poll::Pending
    }

    /// The send clock of one streamed response body on an HTTP/2
    /// connection (`None` on HTTP/1, where blocked writes tell).
    pub fn watch_send(self: &Arc<Self>) -> Option<SendWatch> {
        if !self.h2 {
            return None;
        }
        let stamp = Arc::new(AtomicU64::new(0));
        let key = self.handed_list().insert(stamp.clone());
        Some(SendWatch {
            conn: self.clone(),
            key,
            stamp,
        })
    }

    fn handed_list(&self) -> std::sync::MutexGuard<'_, Slab<Arc<AtomicU64>>> {
        self.handed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Since when (ms stamp) the client has been taking no response byte,
    /// if it is not: the oldest blocked write or waiting HTTP/2 chunk.
    fn send_stalled_since(&self) -> Option<u64> {
        let blocked = self.write_blocked_ms.load(Ordering::SeqCst);
        let mut oldest = (blocked != 0).then_some(blocked);
        if self.h2 {
            for (_, stamp) in self.handed_list().iter() {
                let t = stamp.load(Ordering::SeqCst);
                if t != 0 && oldest.is_none_or(|o| t < o) {
                    oldest = Some(t);
                }
            }
        }
        oldest
    }

    /// A watchdog asleep past `deadline` would act late: wake it. Usually it
    /// already wakes earlier (then it just re-reads the state), which keeps
    /// task wake-ups off the per-request path.
    fn wake_if_earlier(&self, deadline: u64) {
        if deadline < self.wake_ms.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    /// Which timeout has expired, or when to look again. The watchdog acts
    /// on an expiry at once (closing the connection), so the header and send
    /// timeouts are counted here.
    pub fn expiry(&self, idle: Duration, header: Duration) -> Result<Expiry, Instant> {
        // A response the client does not take: whether or not a request is
        // still active (its last bytes may sit in a blocked write).
        let send_deadline = self.send_stalled_since().map(|t| t + self.send_ms);
        if send_deadline.is_some_and(|d| self.now_ms() >= d) {
            self.send_timeouts.inc();
            return Ok(Expiry::SendTimeout);
        }
        let at = |ms: u64| self.at(ms);
        let earliest = |wake: Instant| send_deadline.map_or(wake, |d| wake.min(at(d)));
        if self.active.load(Ordering::Acquire) > 0 {
            return Err(earliest(Instant::now() + idle));
        }
        let now = self.now_ms();
        let head = self.head_started_ms.load(Ordering::SeqCst);
        let (deadline, kind) = if head != 0 {
            (head + header.as_millis() as u64, Expiry::HeaderTimeout)
        } else {
            // 0: no request yet, idle since the connection opened (stamp 1).
            let since = self.idle_since_ms.load(Ordering::SeqCst).max(1);
            (since + idle.as_millis() as u64, Expiry::Idle)
        };
        if now >= deadline {
            if kind == Expiry::HeaderTimeout {
                self.header_timeouts.inc();
            }
            Ok(kind)
        } else {
            // Stamps are milliseconds after `epoch` plus one (0 means unset).
            Err(earliest(at(deadline)))
        }
    }
}

/// The send clock of one streamed response body on an HTTP/2 connection.
///
/// hyper polls a response body for its next chunk only once the previous
/// one went out, which needs flow-control window: a client that keeps the
/// window shut leaves the chunk waiting and the body unpolled, holding the
/// app connection behind it. The body stamps each chunk it hands over and
/// clears the stamp when polled again; the connection's watchdog closes the
/// connection once a stamp is `client.send_timeout` old (hyper offers no way
/// to reset one stream from outside its task), which ends every stream on it
/// and releases their app connections.
#[derive(Debug)]
pub struct SendWatch {
    conn: Arc<ConnState>,
    key: usize,
    stamp: Arc<AtomicU64>,
}

impl SendWatch {
    /// hyper came back for more: the last chunk was taken.
    pub fn taken(&self) {
        if self.stamp.load(Ordering::Relaxed) != 0 {
            self.stamp.store(0, Ordering::SeqCst);
        }
    }

    /// A chunk was handed to hyper for the client.
    pub fn handed(&self) {
        let now = self.conn.now_ms();
        self.stamp.store(now, Ordering::SeqCst);
        self.conn.wake_if_earlier(now + self.conn.send_ms);
    }
}

impl Drop for SendWatch {
    fn drop(&mut self) {
        self.conn.handed_list().try_remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(h2: bool) -> ConnState {
        let client = crate::config::Config::from_yaml("", "t").unwrap().client;
        ConnState::new(
            "127.0.0.1:1".parse().unwrap(),
            "http",
            h2,
            false,
            &client,
            &Metrics::new(),
        )
    }

    fn plain_connection() -> ConnState {
        connection(false)
    }

    #[tokio::test(start_paused = true)]
    async fn idle_then_header_timeout() {
        let s = plain_connection();
        let idle = Duration::from_secs(60);
        let header = Duration::ZERO;
        assert!(
            s.expiry(idle, header).is_err(),
            "fresh connection is within idle time"
        );
        s.bytes_arrived();
        tokio::time::advance(Duration::from_millis(2)).await;
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

    /// The watchdog's deadline moves with the connection's state, on
    /// tokio's clock: idle time counts from the last finished request, and a
    /// head that starts arriving gets `header_timeout` from its first byte.
    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_clock() {
        let s = plain_connection();
        let idle = Duration::from_secs(60);
        let header = Duration::from_secs(10);
        let start = Instant::now();
        assert_eq!(s.expiry(idle, header), Err(start + idle));
        tokio::time::advance(Duration::from_secs(30)).await;
        s.request_started();
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(s.expiry(idle, header).is_err(), "busy for 50 s: not idle");
        s.request_finished();
        let done = Instant::now();
        assert_eq!(
            s.expiry(idle, header),
            Err(done + idle),
            "idle counts from the end"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        s.bytes_arrived();
        let head = Instant::now();
        assert_eq!(s.expiry(idle, header), Err(head + header));
        tokio::time::advance(header).await;
        assert_eq!(s.expiry(idle, header), Ok(Expiry::HeaderTimeout));
    }

    /// `client.send_timeout` (30 s by default) counts from the moment a write
    /// blocks, resets when the socket takes bytes, and applies whether or
    /// not a request is still active.
    #[tokio::test(start_paused = true)]
    async fn blocked_writes_expire_after_send_timeout() {
        let s = plain_connection();
        let (idle, header) = (Duration::from_secs(60), Duration::from_secs(10));
        let send = Duration::from_secs(30);
        s.request_started();
        s.write_blocked();
        let blocked = Instant::now();
        assert_eq!(s.expiry(idle, header), Err(blocked + send));
        tokio::time::advance(Duration::from_secs(20)).await;
        s.write_blocked(); // still blocked: the clock keeps its start
        s.write_progressed();
        assert_eq!(s.expiry(idle, header), Err(Instant::now() + idle));
        s.write_blocked();
        let again = Instant::now();
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(s.expiry(idle, header), Err(again + send));
        s.request_finished(); // the last bytes are still not taken
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(s.expiry(idle, header), Ok(Expiry::SendTimeout));
    }

    /// HTTP/2: the oldest chunk waiting for its stream decides; a body that
    /// is polled again (or dropped) no longer counts.
    #[tokio::test(start_paused = true)]
    async fn waiting_http2_chunks_expire_after_send_timeout() {
        let s = Arc::new(connection(true));
        let (idle, header) = (Duration::from_secs(60), Duration::from_secs(10));
        let send = Duration::from_secs(30);
        s.request_started();
        let (a, b) = (s.watch_send().unwrap(), s.watch_send().unwrap());
        a.handed();
        let first = Instant::now();
        tokio::time::advance(Duration::from_secs(10)).await;
        b.handed();
        assert_eq!(s.expiry(idle, header), Err(first + send));
        a.taken();
        assert_eq!(
            s.expiry(idle, header),
            Err(first + Duration::from_secs(10) + send)
        );
        tokio::time::advance(Duration::from_secs(29)).await;
        drop(b);
        assert_eq!(s.expiry(idle, header), Err(Instant::now() + idle));
        a.handed();
        tokio::time::advance(send).await;
        assert_eq!(s.expiry(idle, header), Ok(Expiry::SendTimeout));
        assert!(plain_connection_has_no_watch());
    }

    fn plain_connection_has_no_watch() -> bool {
        Arc::new(plain_connection()).watch_send().is_none()
    }
}
