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
        let (sender, conn) = http1::Builder::new()
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
/// reaches the client even when the app closed before reading our whole
/// request (an early `413`, or Node rejecting a head it cannot parse, then
/// `socket.destroy()`):
///
/// - Closing with unread data makes the app's kernel send a reset. hyper's
///   HTTP/1 client writes the request body and reads the response in one
///   loop; when the reset reaches a body write first, the exchange fails with
///   that write error and the response already in our receive buffer is
///   lost (1 upload in 5 answered `503` instead of the app's `413`). Here a
///   write that meets a reset (or a pipe broken by one) is reported as done
///   and what follows is discarded: hyper goes on to read, and finds the
///   response, or the end of the connection.
/// - A reset read is an end of stream. hyper then sees a truncated message as
///   before (an error before the response head or inside a framed body), but
///   a close-delimited answer (Node's `400` for a head it cannot parse has
///   neither length nor chunking) ends where the app closed instead of
///   failing as a body cut short.
#[derive(Debug)]
struct AppIo {
    inner: TcpStream,
    /// A write met a reset: the app is gone, writes are discarded.
    reset: bool,
}

impl AppIo {
    fn new(inner: TcpStream) -> AppIo {
        AppIo {
            inner,
            reset: false,
        }
    }

    /// Turns a reset met while writing into "all written".
    fn written<T>(&mut self, polled: Poll<io::Result<T>>, all: T) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Err(e)) if is_reset(&e) => {
                self.reset = true;
                Poll::Ready(Ok(all))
            }
            other => other,
        }
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
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
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
        if self.reset {
            return Poll::Ready(Ok(data.len()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.written(polled, data.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let all = bufs.iter().map(|b| b.len()).sum();
        if self.reset {
            return Poll::Ready(Ok(all));
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(polled, all)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.written(polled, ())
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.reset {
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.written(polled, ())
    }
}
