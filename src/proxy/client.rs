//! What the request path and the connection watchdog know about one client
//! connection: its peer, the facts forwarded to the app, and the counters
//! behind the two client timeouts hyper cannot tell apart
//! (`client.header_timeout` from the first byte of a head, `client.idle_timeout`
//! with nothing in progress).

use super::headers::ClientFacts;
use crate::config::ClientConfig;
use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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
    h2: bool,
}

/// Which client timeout expired.
#[derive(Debug, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    HeaderTimeout,
}

impl ConnState {
    pub fn new(
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
            self.wake_if_earlier(now + self.idle_ms);
        }
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

    /// A watchdog asleep past `deadline` would act late: wake it. Usually it
    /// already wakes earlier (then it just re-reads the state), which keeps
    /// task wake-ups off the per-request path.
    fn wake_if_earlier(&self, deadline: u64) {
        if deadline < self.wake_ms.load(Ordering::SeqCst) {
            self.changed.notify_one();
        }
    }

    /// Which timeout has expired, or when to look again.
    pub fn expiry(&self, idle: Duration, header: Duration) -> Result<Expiry, Instant> {
        if self.active.load(Ordering::Acquire) > 0 {
            return Err(Instant::now() + idle);
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
            Ok(kind)
        } else {
            // Stamps are milliseconds after `epoch` plus one (0 means unset).
            Err(self.epoch + Duration::from_millis(deadline - 1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain_connection() -> ConnState {
        let client = crate::config::Config::from_yaml("", "t").unwrap().client;
        ConnState::new(
            "127.0.0.1:1".parse().unwrap(),
            "http",
            false,
            false,
            &client,
        )
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
}
