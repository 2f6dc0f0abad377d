//! The registry of requests in flight, and the crash reports built from it.
//!
//! Every accepted request holds a `Ticket` until its response is finished. When
//! an app connection dies with a request on it, `crash_report` names every
//! request that was in flight on that endpoint at that moment: the list an
//! operator needs to find the request that killed the app, which Node's own
//! crash log cannot give.

use arc_swap::ArcSwapOption;
use http::{HeaderValue, Method, Uri};
use serde::Serialize;
use slab::Slab;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;
use tokio::time::Instant;

/// Shards keep the per-request insert/remove uncontended across cores.
const SHARDS: usize = 16;
/// Crash reports kept for `/status`.
const KEPT_REPORTS: usize = 16;

/// One request in flight. Immutable but for the atomics the request path updates.
#[derive(Debug)]
pub struct Entry {
    pub request_id: HeaderValue,
    pub method: Method,
    pub uri: Uri,
    pub client: SocketAddr,
    pub started: Instant,
    /// The app endpoint the request is (or was last) sent to.
    pub endpoint: ArcSwapOption<String>,
    /// Request body bytes forwarded to the app so far.
    pub bytes_sent: AtomicU64,
    /// When the request body was completely sent, in ms after `started` plus
    /// one (0: not yet).
    body_sent_ms: AtomicU64,
    /// Attempts made so far (each send to an endpoint is one).
    attempt: AtomicU32,
    /// The attempt that appeared in a crash report (`u32::MAX`: none), so the other
    /// requests that die in the same crash do not repeat it, while a retry
    /// that dies in a second crash is reported again.
    reported: AtomicU32,
}

/// A request's place in the registry; dropping it removes the entry.
#[derive(Debug)]
pub struct Ticket {
    registry: Arc<Registry>,
    shard: usize,
    key: usize,
    entry: Arc<Entry>,
}

impl Ticket {
    pub fn entry(&self) -> &Arc<Entry> {
        &self.entry
    }

    /// A crash report for this request's endpoint, unless one already covers it.
    pub fn crash_report(&self, trigger: &'static str) -> Option<CrashReport> {
        self.registry.crash_report(&self.entry, trigger)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.registry.shards[self.shard]).try_remove(self.key);
    }
}

/// A request as shown in `/admin/inflight` and crash reports.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    pub id: String,
    pub method: String,
    pub path: String,
    pub endpoint: Option<String>,
    pub age_ms: u64,
    pub client: String,
    pub bytes_sent: u64,
}

/// The requests that were in flight on an endpoint when its connection died.
#[derive(Debug, Clone, Serialize)]
pub struct CrashReport {
    /// Unix time in milliseconds.
    pub at_unix_ms: u64,
    pub endpoint: String,
    /// What lifeguard saw: `reset_before_response` or `reset_after_response`.
    pub trigger: &'static str,
    pub requests: Vec<RequestView>,
}

#[derive(Debug)]
pub struct Registry {
    shards: Box<[Mutex<Slab<Arc<Entry>>>]>,
    next: AtomicUsize,
    reports: Mutex<VecDeque<CrashReport>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take request accounting down with it.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::new(Slab::new())).collect(),
            next: AtomicUsize::new(0),
            reports: Mutex::new(VecDeque::with_capacity(KEPT_REPORTS)),
        }
    }
}

impl Registry {
    /// Registers a request; it stays listed until the ticket is dropped.
    pub fn register(self: &Arc<Self>, entry: Entry) -> Ticket {
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % SHARDS;
        let entry = Arc::new(entry);
        let key = lock(&self.shards[shard]).insert(entry.clone());
        Ticket {
            registry: self.clone(),
            shard,
            key,
            entry,
        }
    }

    /// Every request in flight, oldest first.
    pub fn snapshot(&self) -> Vec<RequestView> {
        let now = Instant::now();
        let mut all: Vec<(Instant, RequestView)> = Vec::new();
        for shard in self.shards.iter() {
            for (_, e) in lock(shard).iter() {
                all.push((e.started, view(e, now)));
            }
        }
        all.sort_by_key(|(t, _)| *t);
        all.into_iter().map(|(_, v)| v).collect()
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Builds a crash report for the endpoint `victim` was sent to, unless
    /// `victim` is already part of one (the same crash, seen by another request).
    pub fn crash_report(&self, victim: &Entry, trigger: &'static str) -> Option<CrashReport> {
        // One lock around check-and-mark: two requests dying in the same crash
        // on different threads must not both see themselves unreported.
        let mut kept = lock(&self.reports);
        let attempt = victim.attempt.load(Ordering::SeqCst);
        if victim.reported.load(Ordering::SeqCst) == attempt {
            return None; // this attempt is already in a report
        }
        let endpoint = victim.endpoint.load_full()?;
        let now = Instant::now();
        let mut requests: Vec<(Instant, RequestView)> = Vec::new();
        let mut victim_listed = false;
        for shard in self.shards.iter() {
            for (_, e) in lock(shard).iter() {
                if e.mark_reported(&endpoint) {
                    victim_listed |= std::ptr::eq(&**e, victim);
                    requests.push((e.started, view(e, now)));
                }
            }
        }
        if !victim_listed {
            // The victim is no longer registered under this endpoint (racing a
            // retry): report it anyway, it is the request that saw the crash.
            victim.reported.store(attempt, Ordering::SeqCst);
            requests.push((victim.started, view(victim, now)));
        }
        requests.sort_by_key(|(t, _)| *t);
        let report = CrashReport {
            at_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            endpoint: endpoint.to_string(),
            trigger,
            requests: requests.into_iter().map(|(_, v)| v).collect(),
        };
        if kept.len() == KEPT_REPORTS {
            kept.pop_front();
        }
        kept.push_back(report.clone());
        Some(report)
    }

    /// The most recent crash reports, newest last.
    pub fn recent_crashes(&self) -> Vec<CrashReport> {
        lock(&self.reports).iter().cloned().collect()
    }
}

fn view(e: &Entry, now: Instant) -> RequestView {
    RequestView {
        id: String::from_utf8_lossy(e.request_id.as_bytes()).into_owned(),
        method: e.method.to_string(),
        path: e
            .uri
            .path_and_query()
            .map_or_else(|| e.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        endpoint: e.endpoint.load().as_deref().cloned(),
        age_ms: now.saturating_duration_since(e.started).as_millis() as u64,
        client: e.client.to_string(),
        bytes_sent: e.bytes_sent.load(Ordering::Relaxed),
    }
}

impl Entry {
    pub fn new(request_id: HeaderValue, method: Method, uri: Uri, client: SocketAddr) -> Entry {
        Entry {
            request_id,
            method,
            uri,
            client,
            started: Instant::now(),
            endpoint: ArcSwapOption::empty(),
            bytes_sent: AtomicU64::new(0),
            body_sent_ms: AtomicU64::new(0),
            attempt: AtomicU32::new(0),
            reported: AtomicU32::new(u32::MAX),
        }
    }
}

impl Entry {
    /// Records the endpoint of a new attempt. A request retried elsewhere may
    /// die in a second crash: that one is reported too.
    pub fn start_attempt(&self, endpoint: Arc<String>) {
        // Endpoint first, then the attempt number: a crash scan that still
        // sees the old endpoint also sees the old attempt (see `mark_reported`).
        self.endpoint.store(Some(endpoint));
        self.attempt.fetch_add(1, Ordering::SeqCst);
    }

    /// Marks the current attempt as reported if it is still on `endpoint`;
    /// false if it is not (or it moved on meanwhile).
    fn mark_reported(&self, endpoint: &str) -> bool {
        let before = self.attempt.load(Ordering::SeqCst);
        let on_it = self
            .endpoint
            .load()
            .as_deref()
            .is_some_and(|e| e.as_str() == endpoint);
        if !on_it || self.attempt.load(Ordering::SeqCst) != before {
            return false;
        }
        self.reported.store(before, Ordering::SeqCst);
        true
    }

    /// Records that the whole request body has gone to the app.
    pub fn mark_body_sent(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        let _ = self
            .body_sent_ms
            .compare_exchange(0, ms, Ordering::AcqRel, Ordering::Acquire);
    }

    /// When the whole request body had gone to the app, if it has.
    pub fn body_sent_at(&self) -> Option<Instant> {
        match self.body_sent_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.started + std::time::Duration::from_millis(ms - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(reg: &Arc<Registry>, path: &str, ep: &str) -> Ticket {
        let t = reg.register(Entry::new(
            HeaderValue::from_static("id"),
            Method::POST,
            path.parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
        ));
        t.entry().start_attempt(Arc::new(ep.to_owned()));
        t
    }

    #[test]
    fn one_report_per_crash_naming_every_request_on_the_endpoint() {
        let reg = Arc::new(Registry::default());
        let a = entry(&reg, "/a", "127.0.0.1:3000");
        let b = entry(&reg, "/b", "127.0.0.1:3000");
        let _other = entry(&reg, "/c", "127.0.0.1:3001");
        let report = reg
            .crash_report(a.entry(), "reset_before_response")
            .unwrap();
        let paths: Vec<_> = report.requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/a", "/b"]);
        assert!(reg
            .crash_report(b.entry(), "reset_before_response")
            .is_none());
        // `b` is retried on another endpoint, which crashes too: reported again.
        b.entry()
            .start_attempt(Arc::new("127.0.0.1:3001".to_owned()));
        let again = reg
            .crash_report(b.entry(), "reset_before_response")
            .unwrap();
        let paths: Vec<_> = again.requests.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/b", "/c"]);
        assert_eq!(reg.recent_crashes().len(), 2);
        drop(a);
        drop(b);
        assert_eq!(reg.len(), 1);
    }
}
