//! The request path: one plain sequence per request behind hyper's
//! `service_fn`, which never fails — every failure becomes a response here.
//!
//! `handle` → check the request → prepare head and body → pick the endpoint with
//! the fewest outstanding requests → send → classify any failure (error.rs) →
//! retry where safe, or answer for the app (respond.rs).

pub mod body;
mod exchange;
pub mod headers;
mod respond;
mod tunnel;

pub use exchange::log_crash;
pub use headers::{ClientFacts, RequestIds};

use crate::error::{classify_exchange, ProxyError};
use crate::inflight::Entry;
use crate::server::ConnState;
use crate::state::{Shared, Snapshot};
use crate::upstream::{self, IndexSet};
use body::{ProxyBody, StreamingBody, UpstreamBody};
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
use std::time::Instant;

/// Bound on connection attempts for one request, counting pooled connections
/// found closed: a guard against looping, never reached in normal operation.
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
        idempotent: headers::is_idempotent(req.method()),
        wants_json: headers::prefers_json(req.headers()),
    };
    let ticket = shared.inflight.register(Entry::new(
        request_id.clone(),
        req.method().clone(),
        req.uri().clone(),
        conn.peer,
    ));
    let mut exchange = Exchange::new(ticket, conn.clone());

    let mut resp = match forward(&shared, &snap, &conn, req, &mut exchange).await {
        Ok(resp) => resp,
        Err(err) => {
            exchange.error = Some(err);
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
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    headers::check_request(&parts)?;
    if let (Some(limit), Some(len)) = (cfg.client.max_body_size, body.size_hint().exact()) {
        if len > limit {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let entry = x.ticket().entry().clone();
    headers::prepare_upstream(&mut parts, &conn.facts, &entry.request_id, upgrade);
    let idempotent = headers::is_idempotent(&parts.method);
    let body = prepare_body(body, idempotent, snap, &entry).await?;
    let replayable = !matches!(body, UpstreamBody::Streaming(_));

    let mut pending = Request::from_parts(parts, body);
    let mut tried = IndexSet::default();
    let mut sent_failure: Option<ProxyError> = None;
    let mut last_err = ProxyError::AppRefused;
    for _ in 0..MAX_ATTEMPTS {
        let Some(i) = upstream::pick(&snap.endpoints, tried, &shared.rotor) else {
            break;
        };
        let endpoint = &snap.endpoints[i];
        entry.start_attempt(endpoint.name.clone());
        let outstanding = endpoint.begin();
        let mut pooled = match endpoint.checkout(&snap.pool).await {
            Ok(c) => c,
            Err(err) => {
                // Nothing was sent: any method may go to the next endpoint.
                tracing::debug!(endpoint = %endpoint.name, error = err.kind(), "connect failed");
                tried.insert(i);
                last_err = err;
                continue;
            }
        };
        // A copy for one retry after a send failure, made only when a retry is
        // possible: idempotent, replayable body, another endpoint to go to.
        let retry_copy =
            (idempotent && replayable && sent_failure.is_none() && snap.endpoints.len() > 1)
                .then(|| clone_request(&pending))
                .flatten();
        let sent_at = Instant::now();
        let response = await_response(
            pooled.sender.try_send_request(pending),
            &entry,
            cfg.app.response_timeout,
            sent_at,
        )
        .await;
        match response {
            Ok(Ok(mut resp)) => {
                if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    let Some(client_upgrade) = client_upgrade else {
                        return Err(ProxyError::BadResponse); // an upgrade nobody asked for
                    };
                    tunnel::spawn(client_upgrade, hyper::upgrade::on(&mut resp), entry.clone());
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
                    // The pooled connection closed before our request went out:
                    // nothing was sent, try again (the same endpoint is fine).
                    pending = unsent;
                    continue;
                }
                let kind =
                    classify_exchange(err.error(), entry.body_over_limit.load(Ordering::Relaxed));
                tracing::debug!(endpoint = %endpoint.name, error = %err.error(), kind = kind.kind(), reused = pooled.reused, "app exchange failed");
                if kind.suggests_crash() {
                    if let Some(report) = x.ticket().crash_report(kind.kind()) {
                        log_crash(&report);
                    }
                }
                tried.insert(i);
                match retry_copy {
                    Some(copy) if kind == ProxyError::AppClosedBeforeResponse => {
                        sent_failure = Some(kind);
                        x.retries += 1;
                        pending = copy;
                    }
                    _ => return Err(kind),
                }
            }
            Err(timeout) => return Err(timeout),
        }
    }
    // A failure after sending says more than a later refused retry.
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
    timeout: std::time::Duration,
    sent_at: Instant,
) -> Result<SendResult, ProxyError> {
    tokio::pin!(send);
    let mut deadline = sent_at + timeout;
    loop {
        tokio::select! {
            r = &mut send => return Ok(r),
            _ = tokio::time::sleep_until(deadline.into()) => {
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
/// replayed on retry (idempotent requests of known small size), or a stream.
async fn prepare_body(
    body: Incoming,
    idempotent: bool,
    snap: &Snapshot,
    entry: &Arc<Entry>,
) -> Result<UpstreamBody, ProxyError> {
    if body.is_end_stream() {
        entry.mark_body_sent();
        return Ok(UpstreamBody::Empty);
    }
    let small = body
        .size_hint()
        .exact()
        .is_some_and(|n| n <= snap.config.retry.buffer_limit);
    if idempotent && small && snap.endpoints.len() > 1 {
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
