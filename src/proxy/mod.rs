//! The request path: one plain sequence per request behind hyper's
//! `service_fn`, which never fails — every failure becomes a response here.
//!
//! `handle` → maintenance (the page, unless bypassed) → check the request →
//! prepare head and body → reserve an endpoint (least outstanding; hold
//! while none is up; queue while all are full) →
//! send → classify any failure (error.rs) → retry where safe (retry.rs), or
//! answer for the app (respond.rs).

mod answer;
pub mod body;
mod client;
mod exchange;
mod failure;
pub mod headers;
mod maintenance;
mod respond;
pub mod retry;
pub(crate) mod tunnel;

pub use client::{ConnState, Expiry, SendWatch};
pub use headers::ClientFacts;

use crate::error::{classify_exchange, ProxyError};
use crate::inflight::{Entry, Ticket};
use crate::metrics::{ClientTimeout, SynthReason};
use crate::runtime::{Shared, Snapshot};
use crate::upstream::{self, Outstanding, PooledConn, StreamingBody, UpstreamBody};
use body::ProxyBody;
use bytes::Bytes;
use exchange::{Exchange, RequestBody};
use failure::{on_app_failure, on_connect_failure};
use http::{Request, Response, StatusCode};
use http_body::Body;
use hyper::body::Incoming;
use respond::{error_response, RequestFacts};
use retry::RetryPlan;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument;

/// Serves one client request. Never returns `Err`.
///
/// Everything logged while serving it sits in a `request` span (id, method).
/// The span is at debug level: disabled, it costs one atomic load; an
/// info-level span would cost a formatted allocation per request, and the
/// events that matter at info (access log, crash report) carry the id.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let request_id = shared.ids.for_request(req.headers());
    let span = tracing::debug_span!("request", id = ?request_id, method = %req.method());
    serve(shared, conn, req, request_id).instrument(span).await
}

async fn serve(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
    request_id: http::HeaderValue,
) -> Result<Response<ProxyBody>, Infallible> {
    let snap = shared.snapshot.load_full();
    let facts = RequestFacts {
        version: req.version(),
        idempotent: retry::resendable_method(
            req.method(),
            req.headers(),
            snap.config.retry.idempotency_key_header.as_ref(),
        ),
        wants_json: headers::prefers_json(req.headers()),
    };
    let ticket = shared.inflight.register(Entry::new(
        request_id.clone(),
        req.method().clone(),
        req.uri().clone(),
        conn.peer,
    ));
    let mut exchange = Exchange::new(shared.clone(), ticket, conn.clone());
    if req.body().is_end_stream() {
        exchange.request_body = RequestBody::Read;
    }
    // One atomic load while maintenance is off; checked only as a request
    // arrives, so requests already in flight finish normally.
    if shared.maintenance.is_on() {
        let m = &snap.config.maintenance;
        if !maintenance::bypassed(m, conn.peer.ip(), req.uri().path(), req.headers()) {
            shared.metrics.synthesized(SynthReason::Maintenance);
            exchange.maintenance = true;
            let mut resp = maintenance::response(m, facts.wants_json, &request_id);
            exchange.status = resp.status().as_u16();
            resp.headers_mut()
                .insert(&headers::X_REQUEST_ID, request_id);
            resp.body_mut().attach(exchange);
            return Ok(resp);
        }
    }
    shared.retry_budget.record_request();

    let mut resp = match forward(&shared, &snap, &conn, req, &mut exchange).await {
        Ok(resp) => resp,
        Err(err) => {
            exchange.error = Some(err);
            if err == ProxyError::ClientBodyTimeout {
                shared.metrics.client_timeout(ClientTimeout::Body);
            }
            shared.metrics.synthesized(SynthReason::of(err));
            if err.outcome_unknown(facts.idempotent) {
                shared.metrics.outcome_unknown.inc();
            }
            // No endpoint up: name why (the health record), not a guess.
            let cause = (err == ProxyError::AppUnavailable)
                .then(|| crate::upstream::why_none_up(&snap.endpoints, false));
            error_response(
                err,
                facts,
                &request_id,
                snap.config.unavailable.retry_after,
                cause.as_deref(),
            )
        }
    };
    exchange.status = resp.status().as_u16();
    resp.headers_mut()
        .insert(&headers::X_REQUEST_ID, request_id);
    resp.body_mut().attach(exchange);
    Ok(resp)
}

async fn forward(
    shared: &Shared,
    snap: &Snapshot,
    conn: &Arc<ConnState>,
    req: Request<Incoming>,
    x: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    let entry = x.ticket().entry().clone();
    let (pending, upgrade, resendable) = prepare(snap, conn, req, &entry).await?;
    let replayable = !matches!(pending.body(), UpstreamBody::Streaming(_));
    x.request_body = match replayable {
        true => RequestBody::Read,
        false => RequestBody::Streamed,
    };
    let request_stalled = pending.body().stall_flag();
    let mut plan = RetryPlan::new(&snap.config, shared, resendable, replayable);
    let sent = send(shared, snap, pending, &mut plan, x.ticket()).await;
    x.retries = plan.retries;
    let (resp, outstanding, pooled) = sent?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // An upgrade nobody asked for is a bad response.
        let client = upgrade.client.ok_or(ProxyError::BadResponse)?;
        return Ok(tunnel_response(resp, client, upgrade.websocket, x));
    }
    let (mut parts, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, false);
    x.lease(outstanding, pooled, snap.pool);
    let mut body = ProxyBody::upstream(body);
    body.watch_request_body(request_stalled);
    body.watch_send(conn.watch_send());
    Ok(Response::from_parts(parts, body))
}

/// The client's side of a protocol upgrade: taken before the request is
/// consumed, used only if the app answers `101`.
struct Upgrade {
    client: Option<hyper::upgrade::OnUpgrade>,
    websocket: bool,
}

/// Checks the request and turns it into the one sent to the app: headers
/// rewritten, body buffered (replayable) or streamed. Also says whether the
/// request may be resent after it reached the app (decided once, here).
async fn prepare(
    snap: &Snapshot,
    conn: &ConnState,
    mut req: Request<Incoming>,
    entry: &Arc<Entry>,
) -> Result<(Request<UpstreamBody>, Upgrade, bool), ProxyError> {
    let cfg = &snap.config;
    let is_upgrade = headers::is_upgrade(req.version(), req.headers());
    let upgrade = Upgrade {
        websocket: is_upgrade
            && req
                .headers()
                .get(http::header::UPGRADE)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket")),
        client: is_upgrade.then(|| hyper::upgrade::on(&mut req)),
    };
    let (mut parts, body) = req.into_parts();
    headers::check_request(&parts)?;
    if let (Some(limit), Some(len)) = (cfg.client.max_body_size, body.size_hint().exact()) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let resendable = retry::resendable_method(
        &parts.method,
        &parts.headers,
        cfg.retry.idempotency_key_header.as_ref(),
    );
    headers::prepare_upstream(&mut parts, &conn.facts, &entry.request_id, is_upgrade);
    headers::frame_unsized_body(&mut parts, &body);
    let body = prepare_body(body, resendable, snap, entry).await?;
    Ok((Request::from_parts(parts, body), upgrade, resendable))
}

/// Sends the request until the app answers with response headers, or the
/// retry plan gives up. Each failure is reported once (`failure.rs`).
async fn send(
    shared: &Shared,
    snap: &Snapshot,
    mut pending: Request<UpstreamBody>,
    plan: &mut RetryPlan<'_>,
    ticket: &Ticket,
) -> Result<(Response<Incoming>, Outstanding, PooledConn), ProxyError> {
    let entry = ticket.entry();
    let limits = upstream::Limits::from_config(&snap.config);
    while plan.next_attempt() {
        let (i, outstanding) = upstream::reserve(
            &snap.endpoints,
            &shared.signals,
            plan.avoid,
            plan.exclude,
            &limits,
            plan.hold_until,
            &shared.metrics.queue_wait,
        )
        .await
        .map_err(|e| plan.unreserved(e))?;
        let endpoint = outstanding.endpoint().clone();
        entry.start_attempt(endpoint.name.clone());
        let mut pooled = match endpoint.checkout(&snap.pool).await {
            Ok(c) => c,
            // Out of descriptors is lifeguard's trouble, not the app's: no
            // failure recorded against it, and no other endpoint would fare
            // better.
            Err(ProxyError::FdExhausted) => {
                tracing::debug!(endpoint = %endpoint.name, "cannot connect to the app: out of file descriptors");
                shared.metrics.connect_fd_exhausted.inc();
                return Err(ProxyError::FdExhausted);
            }
            Err(err) => {
                on_connect_failure(&endpoint, err);
                plan.after_connect_failure(i, err);
                continue;
            }
        };
        // A copy for a resend after a send failure, made only when one could happen.
        let copy = plan.wants_copy().then(|| clone_request(&pending)).flatten();
        let stalled = pending.body().stall_flag();
        let send = pooled.sender.try_send_request(pending);
        let (err, cause) = match await_response(send, entry, snap.config.app.response_timeout).await
        {
            Ok(Ok(resp)) => return Ok((resp, outstanding, pooled)),
            Ok(Err(mut failed)) => match failed.take_message() {
                // The pooled connection closed before our request went out:
                // nothing was sent, try again.
                Some(unsent) => {
                    pending = unsent;
                    continue;
                }
                // The client's body stalled (`client.body_timeout`): hyper
                // abandoned the app connection because of us, not the app.
                None if stalled.is_some_and(|s| s.load(Ordering::Acquire)) => {
                    (ProxyError::ClientBodyTimeout, Some(failed.into_error()))
                }
                None => {
                    let cause = failed.into_error();
                    (classify_exchange(&cause), Some(cause))
                }
            },
            Err(timeout) => (timeout, None),
        };
        tracing::debug!(endpoint = %endpoint.name, kind = err.kind(), reused = pooled.reused, ?cause, "app exchange failed");
        on_app_failure(&endpoint, err, ticket);
        drop(outstanding);
        let Some(copy) = copy else { return Err(err) };
        let Some(pause) = plan.after_send_failure(i, err, entry) else {
            return Err(err);
        };
        pending = copy;
        tokio::time::sleep(pause).await;
    }
    Err(plan.give_up())
}

/// The app agreed to switch protocols: splice the two upgraded connections
/// (in the background) and pass the `101` on.
fn tunnel_response(
    mut resp: Response<Incoming>,
    client: hyper::upgrade::OnUpgrade,
    websocket: bool,
    x: &Exchange,
) -> Response<ProxyBody> {
    tunnel::spawn(
        client,
        hyper::upgrade::on(&mut resp),
        websocket,
        x.shared().clone(),
        x.ticket().entry().request_id.clone(),
    );
    let (mut parts, _) = resp.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, true);
    Response::from_parts(parts, ProxyBody::full(Bytes::new()))
}

/// Waits for the app's response headers. `app.response_timeout` counts from
/// the moment the request body has been fully sent: a slow upload is the
/// client's pace, not the app's silence.
async fn await_response<T>(
    send: impl std::future::Future<Output = T>,
    entry: &Entry,
    timeout: Duration,
) -> Result<T, ProxyError> {
    tokio::pin!(send);
    let mut deadline = Instant::now() + timeout;
    loop {
        tokio::select! {
            r = &mut send => return Ok(r),
            _ = tokio::time::sleep_until(deadline) => {
                match entry.body_sent_at() {
                    Some(done) if done + timeout <= Instant::now() => return Err(ProxyError::ResponseTimeout),
                    Some(done) => deadline = done + timeout,
                    None => deadline = Instant::now() + timeout,
                }
            }
        }
    }
}

/// Chooses how the request body travels: nothing, a small buffer that can be
/// replayed on retry (resendable requests of known small size), or a stream.
/// Either way at most `client.body_timeout` may pass without a new body byte.
async fn prepare_body(
    body: Incoming,
    resendable: bool,
    snap: &Snapshot,
    entry: &Arc<Entry>,
) -> Result<UpstreamBody, ProxyError> {
    if body.is_end_stream() {
        entry.mark_body_sent();
        return Ok(UpstreamBody::Empty);
    }
    let retry = &snap.config.retry;
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= retry.buffer_limit);
    if resendable && small && retry.attempts > 0 {
        let data = UpstreamBody::collect_within(body, snap.config.client.body_timeout).await?;
        entry.bytes_sent.store(data.len() as u64, Ordering::Relaxed);
        entry.mark_body_sent();
        return Ok(UpstreamBody::Buffered(Some(data)));
    }
    Ok(UpstreamBody::Streaming(StreamingBody::new(
        body,
        entry.clone(),
        snap.config.client.max_body_size,
        snap.config.client.body_timeout,
    )))
}

fn clone_request(req: &Request<UpstreamBody>) -> Option<Request<UpstreamBody>> {
    let body = match req.body() {
        UpstreamBody::Empty => UpstreamBody::Empty,
        UpstreamBody::Buffered(data) => UpstreamBody::Buffered(data.clone()),
        UpstreamBody::Streaming(_) => return None,
    };
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    Some(copy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry::new(
            http::HeaderValue::from_static("t"),
            http::Method::POST,
            http::Uri::from_static("/"),
            "127.0.0.1:1".parse().unwrap(),
        )
    }

    /// `app.response_timeout` counts from the end of the request body, not
    /// from the start of the send: a slow upload is not the app's silence.
    #[tokio::test(start_paused = true)]
    async fn response_timeout_counts_from_the_end_of_the_body() {
        let e = entry();
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        let upload_then_answer = async {
            tokio::time::sleep(Duration::from_secs(25)).await; // slow upload
            e.mark_body_sent();
            tokio::time::sleep(Duration::from_secs(9)).await; // app answers in 9 s
            "response"
        };
        let r = await_response(upload_then_answer, &e, timeout).await;
        assert_eq!(r, Ok("response"));
        assert_eq!(start.elapsed(), Duration::from_secs(34));
    }

    #[tokio::test(start_paused = true)]
    async fn silent_app_times_out_after_the_body() {
        let e = entry();
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        let upload_then_silence = async {
            tokio::time::sleep(Duration::from_secs(25)).await;
            e.mark_body_sent();
            std::future::pending::<()>().await;
        };
        let r = await_response(upload_then_silence, &e, timeout).await;
        assert_eq!(r, Err(ProxyError::ResponseTimeout));
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_secs(35) && waited < Duration::from_secs(36),
            "{waited:?}"
        );
    }
}
