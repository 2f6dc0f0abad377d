//! One request's accounting from acceptance to the last response byte: its
//! in-flight entry, the endpoint's outstanding count, the app connection to
//! return to the pool, and the single access-log event, written on drop so that
//! every path (success, synthesized error, client gone) logs exactly once.

use super::failure::{on_app_failure, on_cut_after_early_answer};
use super::ConnState;
use crate::error::ProxyError;
use crate::inflight::Ticket;
use crate::runtime::Shared;
use crate::upstream::{Outstanding, PoolSettings, PooledConn};
use std::sync::Arc;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Response not finished yet; if dropped like this, the client went away.
    InProgress,
    Complete,
    /// The app failed after response headers went out; the client saw a truncated body.
    Aborted,
}

/// The app connection serving this request, returned to its pool if the
/// response body completes cleanly.
#[derive(Debug)]
struct Lease {
    outstanding: Outstanding,
    conn: PooledConn,
    settings: PoolSettings,
}

/// How far the client's request body was read (hyper's connection may be
/// let go when idle only once no body is left half read: `server/conn.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// None, or read to the end (buffered).
    Read,
    /// Streamed to the app: read to the end once the app got all of it.
    Streamed,
    /// Not read (answered before the body was looked at).
    Unread,
}

#[derive(Debug)]
pub struct Exchange {
    shared: Arc<Shared>,
    ticket: Ticket,
    conn: Arc<ConnState>,
    started: Instant,
    lease: Option<Lease>,
    outcome: Outcome,
    pub status: u16,
    pub error: Option<ProxyError>,
    pub bytes_out: u64,
    /// Resends after a send failure (for the access log).
    pub retries: u32,
    /// Answered with the maintenance page (logged as `error=maintenance`).
    pub maintenance: bool,
    pub request_body: RequestBody,
}

impl Exchange {
    pub fn new(shared: Arc<Shared>, ticket: Ticket, conn: Arc<ConnState>) -> Exchange {
        conn.request_started();
        shared.metrics.in_flight.inc();
        shared.activity.enter();
        Exchange {
            shared,
            ticket,
            conn,
            started: Instant::now(),
            lease: None,
            outcome: Outcome::InProgress,
            status: 0,
            error: None,
            bytes_out: 0,
            retries: 0,
            maintenance: false,
            request_body: RequestBody::Unread,
        }
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn conn(&self) -> &ConnState {
        &self.conn
    }

    pub fn ticket(&self) -> &Ticket {
        &self.ticket
    }

    /// Keeps the app connection until the response body is done.
    pub fn lease(&mut self, outstanding: Outstanding, conn: PooledConn, settings: PoolSettings) {
        self.lease = Some(Lease {
            outstanding,
            conn,
            settings,
        });
    }

    pub(super) fn body_finished(&mut self) {
        self.outcome = Outcome::Complete;
        if let Some(lease) = self.lease.take() {
            let endpoint = lease.outstanding.endpoint().clone();
            endpoint.checkin(lease.conn.sender, &lease.settings);
        }
    }

    pub(super) fn body_failed(&mut self, err: &hyper::Error) {
        self.outcome = Outcome::Aborted;
        let kind = ProxyError::ResetAfterResponse;
        self.error = Some(kind);
        // The request body was still being sent: the app answered before
        // reading all of it (a 413 after 1 MiB of an upload) and closed. A
        // process that chose to answer and close did not crash; its close
        // only cut the end of its own answer.
        let answered_early = self.ticket.entry().body_sent_at().is_none();
        let request_id = &self.ticket.entry().request_id;
        // The connection is broken: never pool it.
        let Some(lease) = self.lease.take() else {
            return;
        };
        if answered_early {
            tracing::warn!(error = %err, ?request_id, "app closed mid-response after answering before the request body was sent; client response truncated");
            on_cut_after_early_answer(lease.outstanding.endpoint(), kind);
        } else {
            tracing::warn!(error = %err, ?request_id, "app failed mid-response; client response truncated");
            on_app_failure(lease.outstanding.endpoint(), kind, &self.ticket);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        let e = self.ticket.entry();
        let body_read = match self.request_body {
            RequestBody::Read => true,
            RequestBody::Streamed => e.body_sent_at().is_some(),
            RequestBody::Unread => false,
        };
        if !body_read {
            self.conn.keep_buffers();
        }
        self.conn.request_finished();
        let outcome = match self.outcome {
            Outcome::InProgress => "client_gone",
            Outcome::Complete => "complete",
            Outcome::Aborted => "aborted",
        };
        // 499: nginx's convention for "client closed the request before the response".
        let status = if self.status == 0 { 499 } else { self.status };
        let m = &self.shared.metrics;
        m.in_flight.dec();
        self.shared.activity.leave();
        m.observe_request(&e.method, status, self.started.elapsed());
        if self.outcome == Outcome::InProgress {
            m.client_aborts.inc();
        }
        let endpoint = e.endpoint.load();
        tracing::info!(
            target: "access",
            method = %e.method,
            path = e.uri.path(),
            status,
            duration_ms = self.started.elapsed().as_secs_f64() * 1000.0,
            endpoint = endpoint.as_deref().map_or("-", |s| s.as_str()),
            request_id = %String::from_utf8_lossy(e.request_id.as_bytes()),
            error = if self.maintenance { "maintenance" } else { self.error.map_or("-", ProxyError::kind) },
            outcome,
            bytes_in = e.bytes_sent.load(std::sync::atomic::Ordering::Relaxed),
            bytes_out = self.bytes_out,
            retries = self.retries,
            client = %e.client,
        );
    }
}
