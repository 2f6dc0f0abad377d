//! Body types on both sides of the proxy. Neither buffers a streaming body:
//! frames pass through as they arrive.
//!
//! `UpstreamBody` carries the client's request to the app: streamed (counting
//! bytes for crash reports and enforcing `client.max_body_size`), or replayed
//! from a small buffer so an idempotent request can be retried.
//!
//! `ProxyBody` carries the response to the client and owns the request's
//! `Exchange`, so accounting (in-flight entry, access log, returning the app
//! connection to the pool) happens exactly when the response is finished.

use super::exchange::Exchange;
use super::SendWatch;
use crate::error::ProxyError;
use crate::metrics::ClientTimeout;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

/// The response body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    inner: ResponseInner,
    exchange: Option<Exchange>,
    /// Set if the request body (still streaming to the app while this
    /// response runs) stalled past `client.body_timeout`.
    request_stalled: Option<Arc<AtomicBool>>,
    /// HTTP/2: stamps chunks handed to hyper until it comes back for more
    /// (`client.send_timeout`).
    send_watch: Option<SendWatch>,
}

#[derive(Debug)]
enum ResponseInner {
    Full(Option<Bytes>),
    Upstream(Incoming),
}

impl ProxyBody {
    /// A body lifeguard wrote itself.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data: Bytes = data.into();
        ProxyBody {
            inner: ResponseInner::Full((!data.is_empty()).then_some(data)),
            exchange: None,
            request_stalled: None,
            send_watch: None,
        }
    }

    /// The app's response body, streamed.
    pub fn upstream(body: Incoming) -> Self {
        ProxyBody {
            inner: ResponseInner::Upstream(body),
            exchange: None,
            request_stalled: None,
            send_watch: None,
        }
    }

    /// The app may answer before the request body has all arrived; if that
    /// body then stalls, hyper abandons the app connection and this body
    /// fails. `stalled` tells that apart from the app failing.
    pub fn watch_request_body(&mut self, stalled: Option<Arc<AtomicBool>>) {
        self.request_stalled = stalled;
    }

    /// On HTTP/2, the send clock of this body (see `SendWatch`).
    pub fn watch_send(&mut self, watch: Option<SendWatch>) {
        self.send_watch = watch;
    }

    /// Attaches the exchange; it is finished when this body ends or is dropped.
    pub fn attach(&mut self, exchange: Exchange) {
        if self.is_end_stream() {
            // hyper may never poll an empty body (HEAD, 204, 304): finish now.
            let mut exchange = exchange;
            exchange.body_finished();
            return;
        }
        self.exchange = Some(exchange);
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if let Some(w) = &this.send_watch {
            w.taken();
        }
        if let (ResponseInner::Upstream(_), Some(x)) = (&this.inner, &this.exchange) {
            ready!(x.conn().poll_write_room(cx));
        }
        let polled = match &mut this.inner {
            ResponseInner::Full(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            ResponseInner::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(None) => {
                if let Some(mut x) = this.exchange.take() {
                    x.body_finished();
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(mut x) = this.exchange.take() {
                    let stalled = this.request_stalled.as_ref();
                    if stalled.is_some_and(|s| s.load(Ordering::Acquire)) {
                        // The client's fault: abort, never an app failure.
                        // Dropping the exchange drops the broken app connection.
                        x.error = Some(ProxyError::ClientBodyTimeout);
                        x.shared().metrics.client_timeout(ClientTimeout::Body);
                        tracing::debug!(request_id = ?x.ticket().entry().request_id, "request body stalled after the response started; aborting");
                    } else {
                        x.body_failed(e);
                    }
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(w), Some(data)) = (&this.send_watch, frame.data_ref()) {
                    if !data.is_empty() {
                        w.handed();
                    }
                }
                if let (Some(x), Some(data)) = (&mut this.exchange, frame.data_ref()) {
                    x.bytes_out += data.len() as u64;
                }
                // hyper stops polling once the body says it is done, so the
                // final `None` may never come.
                let done = match &this.inner {
                    ResponseInner::Full(data) => data.is_none(),
                    ResponseInner::Upstream(body) => body.is_end_stream(),
                };
                if done {
                    if let Some(mut x) = this.exchange.take() {
                        x.body_finished();
                    }
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            ResponseInner::Full(data) => data.is_none(),
            ResponseInner::Upstream(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            ResponseInner::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseInner::Upstream(body) => body.size_hint(),
        }
    }
}
