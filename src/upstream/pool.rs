//! Keep-alive connections to one endpoint.
//!
//! Written on hyper's connection API rather than hyper-util's pooled client
//! because the request path must know, for every failure, whether the request
//! left lifeguard: a failed connect hands the request (and its unread streaming
//! body) back so it can go to another endpoint, which the pooled client cannot.
//! Idle connections are kept at most `pool_idle_timeout`, below Node's
//! `keepAliveTimeout` (5 s), so we never write into a socket the app is closing.

use super::Endpoint;
use super::UpstreamBody;
use crate::error::{classify_connect, ProxyError};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub(super) type Sender = http1::SendRequest<UpstreamBody>;

/// Pool limits, taken from the config snapshot of the request.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

#[derive(Debug)]
pub(super) struct IdleConn {
    sender: Sender,
    since: Instant,
}

/// A connection checked out for one exchange.
#[derive(Debug)]
pub struct PooledConn {
    pub sender: Sender,
    /// Whether it carried an earlier exchange (a fresh one cannot be stale).
    pub reused: bool,
}

/// How long a pooled connection may take to become ready for the next request
/// after its previous response finished; past that it is dropped, not waited on.
const READY_WAIT: Duration = Duration::from_millis(50);

impl Endpoint {
    fn idle_list(&self) -> MutexGuard<'_, Vec<IdleConn>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ready connection: the most recently used idle one, or a new one.
    /// Errors only on connect failure, when nothing was sent.
    pub async fn checkout(&self, s: &PoolSettings) -> Result<PooledConn, ProxyError> {
        loop {
            let candidate = self.idle_list().pop();
            let Some(mut idle) = candidate else { break };
            if idle.since.elapsed() >= s.idle_timeout || idle.sender.is_closed() {
                continue; // dropping the sender closes the connection
            }
            if idle.sender.is_ready()
                || matches!(
                    tokio::time::timeout(READY_WAIT, idle.sender.ready()).await,
                    Ok(Ok(()))
                )
            {
                return Ok(PooledConn {
                    sender: idle.sender,
                    reused: true,
                });
            }
        }
        Ok(PooledConn {
            sender: self.connect(s.connect_timeout).await?,
            reused: false,
        })
    }

    /// Returns a connection whose exchange completed cleanly.
    pub fn checkin(&self, sender: Sender, s: &PoolSettings) {
        if sender.is_closed() || s.max_idle == 0 {
            return;
        }
        let mut idle = self.idle_list();
        if idle.len() >= s.max_idle {
            idle.remove(0); // the oldest is the likeliest to be closed by the app
        }
        idle.push(IdleConn {
            sender,
            since: Instant::now(),
        });
    }

    /// Drops idle connections older than `idle_timeout`. Called periodically so
    /// sockets are released even when no request comes to trigger a checkout.
    pub fn evict_idle(&self, idle_timeout: Duration) {
        self.idle_list()
            .retain(|c| c.since.elapsed() < idle_timeout && !c.sender.is_closed());
    }

    /// Number of idle pooled connections.
    pub fn idle_count(&self) -> usize {
        self.idle_list().len()
    }

    async fn connect(&self, timeout: Duration) -> Result<Sender, ProxyError> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Err(_) => return Err(ProxyError::AppConnectTimeout),
            Ok(Err(e)) => return Err(classify_connect(&e)),
            Ok(Ok(stream)) => stream,
        };
        // Small requests and responses: do not let Nagle delay them.
        let _ = stream.set_nodelay(true);
        // hyper's default read buffer grows to ~400 KiB while a slow client
        // holds back a large response; 64 KiB keeps a stuck client's cost
        // near half a MiB (measured) and still fits any real response head.
        let (sender, conn) = http1::Builder::new()
            .max_buf_size(64 * 1024)
            .handshake(TokioIo::new(AppIo::new(stream)))
            .await
            .map_err(|_| ProxyError::AppConnectFailed)?;
        let endpoint = self.name.clone();
        tokio::spawn(async move {
            // Failures are classified by the request that sees them; this is
            // only the connection driver's own view, for debugging.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(endpoint = %endpoint, error = %e, "app connection ended with error");
            }
        });
        Ok(sender)
    }
}

/// The app socket as hyper's client sees it, so that an answer the app sent
/// reaches the client when the app closed before reading our whole request
/// (an early `413`; Node rejecting a head it cannot parse, then
/// `socket.destroy()`): closing with unread data makes the app's kernel
/// reset the connection, and a reset is not always a crash.
///
/// - hyper's HTTP/1 client writes the request body and reads the response in
///   one loop, and fails the whole exchange on a write error. When the reset
///   reached a body write before hyper had read (or finished handing on) the
///   response already in our receive buffer, that response was lost (on
///   main, 1 upload in 5 answered `503` instead of the app's `413`). Now the
///   write that meets the reset is reported as done and later writes wait:
///   the write side is dead, and nothing more of the upload is taken from
///   the client. The read side decides how the exchange ends, reading what
///   is left straight from the socket (data, then the end): the response,
///   complete or cut short by its own framing, or nothing (a crash: the
///   `503` as before). A write still waiting after `ANSWERED_HOLD` (hyper
///   reads no more) is discarded, so the connection task always ends.
/// - A reset read right after a complete message head or chunked body (the
///   last bytes read were `CRLF CRLF`) is an end of stream: nothing of a body
///   was cut there. Node's `400` for a head it cannot parse has neither
///   length nor chunking (its end is the close); a reset right after that
///   head no longer turns an empty answer into a body cut short (and a
///   crash report). Any other reset stays an error, so a body cut short
///   still looks cut short (RFC 9112 §8).
#[derive(Debug)]
struct AppIo {
    inner: TcpStream,
    write: WriteState,
    /// The last four bytes read.
    tail: [u8; 4],
}

/// The write side, once the app has reset the connection.
#[derive(Debug)]
enum WriteState {
    Open,
    /// A write met the reset: writes wait (at most until the sleep ends).
    Reset(Pin<Box<tokio::time::Sleep>>),
    /// Writes are discarded.
    Discarding,
}

/// How long writes wait after the reset for hyper's read side to end the
/// exchange before they are discarded.
const ANSWERED_HOLD: Duration = Duration::from_secs(2);

impl AppIo {
    fn new(inner: TcpStream) -> AppIo {
        AppIo {
            inner,
            write: WriteState::Open,
            tail: [0; 4],
        }
    }

    /// Writes through `write` unless the app reset the connection (see the
    /// type's doc); `all` is what "done" reports.
    fn write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        all: T,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match &mut self.write {
            WriteState::Open => match write(Pin::new(&mut self.inner), cx) {
                Poll::Ready(Err(e)) if is_reset(&e) => {
                    self.write = WriteState::Reset(Box::pin(tokio::time::sleep(ANSWERED_HOLD)));
                    // Back to hyper's loop, which reads first.
                    cx.waker().wake_by_ref();
                    Poll::Ready(Ok(all))
                }
                other => other,
            },
            WriteState::Reset(hold) => match hold.as_mut().poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    self.write = WriteState::Discarding;
                    Poll::Ready(Ok(all))
                }
            },
            WriteState::Discarding => Poll::Ready(Ok(all)),
        }
    }

    fn saw(&mut self, data: &[u8]) {
        let n = data.len().min(4);
        self.tail.rotate_left(n);
        self.tail[4 - n..].copy_from_slice(&data[data.len() - n..]);
    }
}

fn is_reset(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

impl AsyncRead for AppIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = match this.write {
            WriteState::Open => Pin::new(&mut this.inner).poll_read(cx, buf),
            // The connection is dead and what is left of it sits in the
            // receive queue: read it straight away (tokio's read would wait
            // for a readiness event the reactor may not have seen yet, while
            // nothing else would wake the task).
            WriteState::Reset(_) | WriteState::Discarding => {
                let dst = buf.initialize_unfilled();
                match io::Read::read(&mut &*socket2::SockRef::from(&this.inner), dst) {
                    Ok(n) => {
                        buf.advance(n);
                        Poll::Ready(Ok(()))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Pin::new(&mut this.inner).poll_read(cx, buf)
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
        };
        match polled {
            Poll::Ready(Err(e))
                if e.kind() == io::ErrorKind::ConnectionReset && this.tail == *b"\r\n\r\n" =>
            {
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => {
                this.saw(&buf.filled()[before..]);
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for AppIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, data.len(), |io, cx| io.poll_write(cx, data))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let all = bufs.iter().map(|b| b.len()).sum();
        self.write_with(cx, all, |io, cx| io.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.write {
            WriteState::Open => Pin::new(&mut self.inner).poll_flush(cx),
            // Nothing is buffered here: the writes say how things stand.
            WriteState::Reset(_) | WriteState::Discarding => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.write {
            WriteState::Open => match Pin::new(&mut self.inner).poll_shutdown(cx) {
                Poll::Ready(Err(e)) if is_reset(&e) => Poll::Ready(Ok(())),
                other => other,
            },
            WriteState::Reset(_) | WriteState::Discarding => Poll::Ready(Ok(())),
        }
    }
}
