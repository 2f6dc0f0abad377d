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
pub mod headers;
mod maintenance;
mod respond;
pub mod retry;
mod tunnel;

pub use client::{ConnState, Expiry};
pub use exchange::log_crash;
pub use headers::ClientFacts;

use crate::error::{classify_exchange, ProxyError};
use crate::inflight::Entry;
use crate::metrics::SynthReason;
use crate::runtime::{Shared, Snapshot};
use crate::upstream::{self, IndexSet, ReserveError};
use crate::upstream::{StreamingBody, UpstreamBody};
use body::ProxyBody;
use bytes::Bytes;
use exchange::Exchange;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use respond::{error_response, RequestFacts};
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bound on attempts for one request, counting pooled connections found
/// closed and connect failures: a guard against looping.
const MAX_ATTEMPTS: u32 = 8;

/// Serves one client request. Never returns `Err`.
pub async fn handle(
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snap = shared.snapshot.load_full();
    let request_id = shared.ids.for_request(req.headers());
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
            shared.metrics.synthesized(SynthReason::of(err));
            if err.outcome_unknown(facts.idempotent) {
                shared.metrics.outcome_unknown.inc();
            }
            error_response(err, facts, &request_id, snap.config.unavailable.retry_after)
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
    conn: &ConnState,
    mut req: Request<Incoming>,
    x: &mut Exchange,
) -> Result<Response<ProxyBody>, ProxyError> {
    let cfg = &snap.config;
    let upgrade = headers::is_upgrade(req.version(), req.headers());
    let websocket = upgrade
        && req
            .headers()
            .get(http::header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::check_request(&parts)?;
    if let (Some(limit), Some(len)) = (cfg.client.max_body_size, body.size_hint().exact()) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let entry = x.ticket().entry().clone();
    let resendable = retry::resendable_method(
        &parts.method,
        &parts.headers,
        cfg.retry.idempotency_key_header.as_ref(),
    );
    headers::prepare_upstream(&mut parts, &conn.facts, &entry.request_id, upgrade);
    let body = prepare_body(body, resendable, snap, &entry).await?;
    let replayable = !matches!(body, UpstreamBody::Streaming(_));
    let limits = upstream::Limits::from_config(cfg);

    let mut pending = Request::from_parts(parts, body);
    let mut avoid = IndexSet::default(); // failed after sending: prefer others
    let mut exclude = IndexSet::default(); // connect failed twice (not refused): skip for this request
    let mut hold_until = Instant::now() + cfg.unavailable.hold;
    let mut sent_failure: Option<ProxyError> = None;
    let mut connect_failures = 0u32;
    let mut last_err = ProxyError::AppUnavailable;
    for _ in 0..MAX_ATTEMPTS {
        let reserved = upstream::reserve(
            &snap.endpoints,
            &shared.signals,
            avoid,
            exclude,
            &limits,
            hold_until,
            &shared.metrics.queue_wait,
        )
        .await;
        let (i, outstanding) = match reserved {
            Ok(r) => r,
            Err(ReserveError::NoneUp) => return Err(sent_failure.unwrap_or(last_err)),
            Err(ReserveError::Full) => return Err(sent_failure.unwrap_or(ProxyError::Overloaded)),
        };
        let endpoint = outstanding.endpoint().clone();
        entry.start_attempt(endpoint.name.clone());
        let mut pooled = match endpoint.checkout(&snap.pool).await {
            Ok(c) => c,
            Err(err) => {
                // Nothing was sent: any method may be tried again.
                tracing::debug!(endpoint = %endpoint.name, error = err.kind(), "connect failed");
                endpoint.metrics.failure(err.kind());
                if err == ProxyError::AppRefused {
                    endpoint.passive_refused(); // down now; the hold waits for it
                } else {
                    // A timeout is often one dropped SYN (a full accept
                    // queue): prefer another endpoint, but try this one
                    // again once before giving up on it for this request.
                    endpoint.passive_suspect();
                    connect_failures += 1;
                    avoid.insert(i);
                    if connect_failures >= 2 {
                        exclude.insert(i);
                    }
                }
                last_err = err;
                continue;
            }
        };
        // A copy for a resend after a send failure, made only when one could happen.
        let retry_copy = (replayable && resendable && x.retries < cfg.retry.attempts)
            .then(|| clone_request(&pending))
            .flatten();
        let response = await_response(
            pooled.sender.try_send_request(pending),
            &entry,
            cfg.app.response_timeout,
        )
        .await;
        let err = match response {
            Ok(Ok(mut resp)) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client_upgrade) = client_upgrade else {
                        return Err(ProxyError::BadResponse); // an upgrade nobody asked for
                    };
                    tunnel::spawn(
                        client_upgrade,
                        hyper::upgrade::on(&mut resp),
                        websocket,
                        x.shared().clone(),
                        entry.request_id.clone(),
                    );
                    let (mut parts, _) = resp.into_parts();
                    headers::strip_hop_by_hop(&mut parts.headers, true);
                    return Ok(Response::from_parts(parts, ProxyBody::full(Bytes::new())));
                }
                let (mut parts, body) = resp.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers, false);
                x.lease(outstanding, pooled, snap.pool);
                return Ok(Response::from_parts(parts, ProxyBody::upstream(body)));
            }
            Ok(Err(mut err)) => {
                if let Some(unsent) = err.take_message() {
                    // The pooled connection closed before our request went
                    // out: nothing was sent, try again.
                    pending = unsent;
                    continue;
                }
                classify_exchange(err.error(), entry.body_over_limit.load(Ordering::Relaxed))
            }
            Err(timeout) => timeout,
        };
        tracing::debug!(endpoint = %endpoint.name, kind = err.kind(), reused = pooled.reused, "app exchange failed");
        if err.is_upstream() {
            endpoint.metrics.failure(err.kind());
        }
        if err.suggests_crash() {
            endpoint.passive_suspect();
            if let Some(report) = x.ticket().crash_report(err.kind()) {
                endpoint.metrics.crashes.inc();
                log_crash(&report);
            }
        }
        drop(outstanding);
        let Some(copy) = retry_copy.filter(|_| retry::may_resend(err, resendable, replayable))
        else {
            return Err(err);
        };
        if !shared.retry_budget.try_acquire(cfg.retry.budget_percent) {
            shared.metrics.retry_budget_exhausted.inc();
            tracing::warn!(endpoint = %endpoint.name, request_id = ?entry.request_id, "retry budget exhausted; not retrying");
            return Err(err);
        }
        sent_failure = Some(err);
        shared.metrics.retries.inc();
        x.retries += 1;
        avoid.insert(i);
        pending = copy;
        tokio::time::sleep(retry::backoff(x.retries - 1)).await;
        // The same endpoint may serve the retry once it has recovered.
        hold_until = Instant::now() + cfg.unavailable.hold;
    }
    Err(sent_failure.unwrap_or(last_err))
}

type SendResult =
    Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpstreamBody>>>;

/// Waits for the app's response headers. `app.response_timeout` counts from
/// the moment the request body has been fully sent: a slow upload is the
/// client's pace, not the app's silence.
async fn await_response(
    send: impl std::future::Future<Output = SendResult>,
    entry: &Entry,
    timeout: Duration,
) -> Result<SendResult, ProxyError> {
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
        let data = body
            .collect()
            .await
            .map_err(|_| ProxyError::ClientBodyAborted)?
            .to_bytes();
        entry.bytes_sent.store(data.len() as u64, Ordering::Relaxed);
        entry.mark_body_sent();
        return Ok(UpstreamBody::Buffered(Some(data)));
    }
    Ok(UpstreamBody::Streaming(StreamingBody::new(
        body,
        entry.clone(),
        snap.config.client.max_body_size,
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
