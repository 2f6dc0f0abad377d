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
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;
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
            .handshake(TokioIo::new(stream))
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
