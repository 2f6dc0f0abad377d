//! The request body sent to the app: streamed as frames arrive (counting
//! bytes for crash reports and enforcing `client.max_body_size`), or replayed
//! from a small buffer so an idempotent request can be retried.

use crate::error::BodyTooLarge;
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
