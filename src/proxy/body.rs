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
use crate::inflight::Entry;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body sent to the app.
#[derive(Debug)]
pub enum UpstreamBody {
    Empty,
    /// A fully read body, replayable on retry (cloning `Bytes` is cheap).
    Buffered(Option<Bytes>),
    Streaming(StreamingBody),
}

/// The client's body, streamed to the app.
#[derive(Debug)]
pub struct StreamingBody {
    inner: Incoming,
    entry: Arc<Entry>,
    limit: u64,
}

impl StreamingBody {
    pub fn new(inner: Incoming, entry: Arc<Entry>, limit: Option<u64>) -> Self {
        StreamingBody {
            inner,
            entry,
            limit: limit.unwrap_or(u64::MAX),
        }
    }
}

/// The request body went over `client.max_body_size` while streaming.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds client.max_body_size")]
pub struct BodyTooLarge;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut *self {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Buffered(data) => Poll::Ready(data.take().map(|b| Ok(Frame::data(b)))),
            UpstreamBody::Streaming(s) => {
                let frame = match Pin::new(&mut s.inner).poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(None) => {
                        s.entry.mark_body_sent();
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(Some(Ok(frame))) => frame,
                };
                if let Some(data) = frame.data_ref() {
                    let total = s
                        .entry
                        .bytes_sent
                        .fetch_add(data.len() as u64, Ordering::Relaxed)
                        + data.len() as u64;
                    if total > s.limit {
                        s.entry.body_over_limit.store(true, Ordering::Relaxed);
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                }
                // hyper stops polling once the body says it is done, so the
                // final `None` may never come: mark completion here too.
                if s.inner.is_end_stream() {
                    s.entry.mark_body_sent();
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Empty => true,
            UpstreamBody::Buffered(data) => data.is_none(),
            UpstreamBody::Streaming(s) => s.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Buffered(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64))
            }
            UpstreamBody::Streaming(s) => s.inner.size_hint(),
        }
    }
}

/// The response body sent to the client.
#[derive(Debug)]
pub struct ProxyBody {
    inner: ResponseInner,
    exchange: Option<Exchange>,
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
        }
    }

    /// The app's response body, streamed.
    pub fn upstream(body: Incoming) -> Self {
        ProxyBody {
            inner: ResponseInner::Upstream(body),
            exchange: None,
        }
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
                    x.body_failed(e);
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
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
