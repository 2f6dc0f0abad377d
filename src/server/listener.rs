//! Binding listeners (with a real backlog) and the accept loop.

use super::conn;
use crate::runtime::Shared;
use crate::shutdown::Phase;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

/// Binds a TCP listener. The backlog matters for a sidecar behind a busy
/// Service: the default of 128 overflows under connection bursts.
pub fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    TcpListener::from_std(socket.into())
}

/// Accepts client connections until the phase reaches `Closing`. At most
/// `limit` connections are open at once: past that, accepting pauses (the
/// kernel backlog holds newcomers) instead of dropping anyone.
/// With `tls`, every connection is a TLS connection.
pub async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    tls: Option<TlsAcceptor>,
) {
    let mut phase = shared.phase.subscribe();
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p,
            _ = closing(&mut phase) => break,
        };
        let Ok(permit) = permit else { break };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    let tls = tls.clone();
                    shared.metrics.connections_accepted.inc();
                    shared.metrics.connections_open.inc();
                    shared.activity.enter();
                    // Debug level for the same reason as the request span.
                    let span = tracing::debug_span!("conn", %peer, tls = tls.is_some());
                    tokio::spawn(async move {
                        match tls {
                            Some(tls) => super::tls::serve(stream, peer, shared.clone(), tls).await,
                            None => conn::serve_tcp(stream, peer, shared.clone()).await,
                        }
                        shared.metrics.connections_open.dec();
                        shared.activity.leave();
                        drop(permit);
                    }.instrument(span));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = closing(&mut phase) => break,
        }
    }
    tracing::info!(addr = ?listener.local_addr().ok(), "stopped accepting connections");
}

/// Resolves once the phase reaches `Closing` (or the phase sender is gone).
pub async fn closing(phase: &mut tokio::sync::watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p >= Phase::Closing).await;
}
