//! The request body sent to the app: streamed as frames arrive (counting
//! bytes for crash reports and enforcing `client.max_body_size`), or replayed
//! from a small buffer so an idempotent request can be retried.
//!
//! Both ways are bounded by `client.body_timeout`, the longest time without
//! a new body byte ([`BodyClock`]): a stalled stream ends in an error
//! ([`BodyStalled`]) that makes hyper abandon the app connection, and a
//! shared flag ([`UpstreamBody::stall_flag`]) tells the request path (and the
//! response, if one started) that the client, not the app, was at fault.

use crate::error::{BodyTooLarge, ProxyError};
use crate::inflight::Entry;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

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
    clock: BodyClock,
    /// Set when the body yields [`BodyStalled`].
    stalled: Arc<AtomicBool>,
}

impl StreamingBody {
    pub fn new(inner: Incoming, entry: Arc<Entry>, limit: Option<u64>, timeout: Duration) -> Self {
        StreamingBody {
            inner,
            entry,
            limit: limit.unwrap_or(u64::MAX),
            clock: BodyClock::new(timeout),
            stalled: Arc::default(),
        }
    }
}

/// The request body made no progress for `client.body_timeout`: the error
/// our request body yields to hyper, which then abandons the app connection.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled past client.body_timeout")]
struct BodyStalled;

/// The `client.body_timeout` clock of one request body: how long since the
/// last new body byte (or since the body was first wanted). One timer per
/// body, moved only when the body has nothing new to give, so a body that
/// flows costs a clock read per frame and no timer updates.
#[derive(Debug)]
struct BodyClock {
    timeout: Duration,
    last_progress: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl BodyClock {
    fn new(timeout: Duration) -> BodyClock {
        BodyClock {
            timeout,
            last_progress: None,
            sleep: None,
        }
    }

    /// New body bytes arrived.
    fn progress(&mut self) {
        self.last_progress = Some(Instant::now());
    }

    /// The body has nothing new: `Ready` once `timeout` has passed since the
    /// last progress (the clock starts at the first call if none came yet),
    /// else `Pending` with a wake-up registered for that moment.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let since = *self.last_progress.get_or_insert_with(Instant::now);
        let deadline = since + self.timeout;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() != deadline {
            sleep.as_mut().reset(deadline);
        }
        sleep.as_mut().poll(cx)
    }
}

impl UpstreamBody {
    /// Reads a whole (small) body into memory, allowing at most `timeout`
    /// between new bytes: `ClientBodyTimeout` when it stalls,
    /// `ClientBodyAborted` when it fails.
    pub async fn collect_within<B>(body: B, timeout: Duration) -> Result<Bytes, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
    {
        collect_within(body, timeout).await
    }

    /// Set once a streamed body stalled past `client.body_timeout` (read
    /// with `Acquire`; it outlives the body, which hyper drops). `None` for
    /// a body that cannot stall.
    pub fn stall_flag(&self) -> Option<Arc<AtomicBool>> {
        match self {
            UpstreamBody::Streaming(s) => Some(s.stalled.clone()),
            UpstreamBody::Empty | UpstreamBody::Buffered(_) => None,
        }
    }
}

async fn collect_within<B>(mut body: B, timeout: Duration) -> Result<Bytes, ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut clock = BodyClock::new(timeout);
    let mut buf = BytesMut::new();
    std::future::poll_fn(|cx| loop {
        match Pin::new(&mut body).poll_frame(cx) {
            Poll::Pending => {
                ready!(clock.poll_expired(cx));
                return Poll::Ready(Err(ProxyError::ClientBodyTimeout));
            }
            Poll::Ready(None) => return Poll::Ready(Ok(())),
            Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(ProxyError::ClientBodyAborted)),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref().filter(|d| !d.is_empty()) {
                    buf.extend_from_slice(data);
                    clock.progress();
                }
                if body.is_end_stream() {
                    return Poll::Ready(Ok(()));
                }
            }
        }
    })
    .await?;
    Ok(buf.freeze())
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
                    Poll::Pending => {
                        ready!(s.clock.poll_expired(cx));
                        s.stalled.store(true, Ordering::Release);
                        return Poll::Ready(Some(Err(Box::new(BodyStalled))));
                    }
                    Poll::Ready(None) => {
                        s.entry.mark_body_sent();
                        return Poll::Ready(None);
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(Some(Ok(frame))) => frame,
                };
                if let Some(data) = frame.data_ref() {
                    if !data.is_empty() {
                        s.clock.progress();
                    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that yields `chunks`, each after its pause (tokio's clock).
    struct Trickle {
        chunks: Vec<(Duration, &'static [u8])>,
        sleep: Option<Pin<Box<Sleep>>>,
    }

    impl Trickle {
        fn new(mut chunks: Vec<(Duration, &'static [u8])>) -> Trickle {
            chunks.reverse();
            Trickle {
                chunks,
                sleep: None,
            }
        }
    }

    impl Body for Trickle {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            let Some(&(pause, data)) = self.chunks.last() else {
                return Poll::Ready(None);
            };
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(pause)));
            ready!(sleep.as_mut().poll(cx));
            self.sleep = None;
            self.chunks.pop();
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(data)))))
        }

        fn is_end_stream(&self) -> bool {
            self.chunks.is_empty()
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    /// Each byte inside the timeout keeps the body alive, however long the
    /// whole upload takes; one pause longer than the timeout ends it at
    /// exactly `timeout` after the last byte.
    #[tokio::test(start_paused = true)]
    async fn timeout_counts_from_the_last_byte() {
        let start = Instant::now();
        let slow_but_steady = Trickle::new(vec![(MS(400), b"a"); 10]);
        let got = collect_within(slow_but_steady, MS(500)).await;
        assert_eq!(got, Ok(Bytes::from_static(b"aaaaaaaaaa")));
        assert_eq!(start.elapsed(), MS(4000));

        let start = Instant::now();
        let stalls = Trickle::new(vec![(MS(400), b"a"), (MS(400), b"b"), (MS(3600), b"c")]);
        assert_eq!(
            collect_within(stalls, MS(500)).await,
            Err(ProxyError::ClientBodyTimeout)
        );
        assert_eq!(start.elapsed(), MS(1300), "800 ms of bytes, then 500 ms");
    }

    /// Headers and then no byte at all: the clock starts when the body is
    /// first wanted.
    #[tokio::test(start_paused = true)]
    async fn no_body_at_all_times_out() {
        let start = Instant::now();
        let never = Trickle::new(vec![(Duration::from_secs(3600), b"x")]);
        assert_eq!(
            collect_within(never, MS(500)).await,
            Err(ProxyError::ClientBodyTimeout)
        );
        assert_eq!(start.elapsed(), MS(500));
    }

    /// The clock itself: pending within the timeout, ready after it, moved
    /// by progress.
    #[tokio::test(start_paused = true)]
    async fn clock_moves_with_progress() {
        let mut clock = BodyClock::new(MS(500));
        let expired = |clock: &mut BodyClock| {
            let waker = std::task::Waker::noop();
            clock
                .poll_expired(&mut Context::from_waker(waker))
                .is_ready()
        };
        assert!(!expired(&mut clock));
        tokio::time::advance(MS(400)).await;
        assert!(!expired(&mut clock));
        clock.progress();
        tokio::time::advance(MS(400)).await;
        assert!(!expired(&mut clock), "400 ms since the last byte");
        tokio::time::advance(MS(100)).await;
        assert!(expired(&mut clock));
    }
}
