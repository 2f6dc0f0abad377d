//! One client connection: protocol detection (HTTP/2 prior knowledge or
//! HTTP/1.1), hyper's connection driver, and a watchdog for the two client
//! timeouts hyper cannot tell apart: `client.header_timeout` (from the first
//! byte of a request head to its end: slowloris) and `client.idle_timeout` (a
//! keep-alive connection with nothing in progress). hyper's own header timer
//! also runs while a connection is idle, so it is off and this replaces it.

use super::io::{TrackedIo, PREFACE_LEN};
use crate::config::ClientConfig;
use crate::proxy::{self, ConnState, Expiry};
use crate::runtime::Shared;
use crate::shutdown::Phase;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one plain-TCP client connection until it closes.
pub(super) async fn serve_tcp(mut stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let client = shared.snapshot.load().config.client.clone();
    let _ = stream.set_nodelay(true);
    let mut prefix = [0u8; PREFACE_LEN];
    let mut phase = shared.phase.subscribe();
    let Some(n) = sniff(&mut stream, &mut prefix, &client, &mut phase).await else {
        return;
    };
    let h2 = n == PREFACE_LEN && prefix == *PREFACE;
    serve_io(stream, prefix, n, h2, peer, "http", shared, client).await;
}

/// Reads just enough to tell the HTTP/2 preface from an HTTP/1 request line.
/// `None`: the client closed or sent nothing in time — or nothing before the
/// process started closing: a connection with no request is idle, and like
/// an idle keep-alive connection it must not hold up the drain.
async fn sniff(
    stream: &mut TcpStream,
    buf: &mut [u8; PREFACE_LEN],
    client: &ClientConfig,
    phase: &mut watch::Receiver<Phase>,
) -> Option<usize> {
    let first = tokio::select! {
        r = tokio::time::timeout(client.idle_timeout, stream.read(buf)) => r,
        _ = phase.wait_for(|p| *p >= Phase::Closing) => return None,
    };
    let mut n = match first {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
        Ok(Ok(n)) => n,
    };
    while n < PREFACE_LEN && buf[..n] == PREFACE[..n] {
        match tokio::time::timeout(client.header_timeout, stream.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(more)) => n += more,
        }
    }
    Some(n)
}

/// Serves a connection over any transport (plain TCP, or TLS later).
#[allow(clippy::too_many_arguments)]
pub(super) async fn serve_io<I>(
    io: I,
    prefix: [u8; PREFACE_LEN],
    prefix_len: usize,
    h2: bool,
    peer: SocketAddr,
    proto: &'static str,
    shared: Arc<Shared>,
    client: ClientConfig,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = Arc::new(ConnState::new(
        peer,
        proto,
        h2,
        prefix_len > 0,
        &client,
        &shared.metrics, // client_timeouts_total (issue 10)
    ));
    let io = TokioIo::new(TrackedIo::new(io, state.clone(), prefix, prefix_len));
    let phase = shared.phase.subscribe();
    let svc_state = state.clone();
    let svc = service_fn(move |req| proxy::handle(shared.clone(), svc_state.clone(), req));
    if h2 {
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .max_concurrent_streams(client.http2_max_streams)
            .max_header_list_size(client.max_header_size as u32);
        let conn = b.serve_connection(io, svc);
        drive(conn, |c| c.graceful_shutdown(), &state, &client, phase).await;
    } else {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(None)
            .max_header_size(client.max_header_size)
            .keep_alive(true);
        let conn = b.serve_connection(io, svc).with_upgrades();
        drive(conn, |c| c.graceful_shutdown(), &state, &client, phase).await;
    }
}

/// Runs a hyper connection to completion, closing it when idle too long, when
/// a request head is too slow, or (gracefully) when the process is closing.
async fn drive<C>(
    conn: C,
    shutdown: impl Fn(Pin<&mut C>),
    state: &ConnState,
    client: &ClientConfig,
    mut phase: watch::Receiver<Phase>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    let mut closing = false;
    if *phase.borrow_and_update() >= Phase::Closing {
        shutdown(conn.as_mut());
        closing = true;
    }
    loop {
        state.watchdog_awake();
        let wake = match state.expiry(client.idle_timeout, client.header_timeout) {
            Ok(Expiry::HeaderTimeout) => {
                tracing::debug!(peer = %state.peer, "request head not received within client.header_timeout; closing");
                return; // dropping the connection closes the socket
            }
            // Issue 10: the client took no response byte for client.send_timeout.
            Ok(Expiry::SendTimeout) => {
                tracing::debug!(peer = %state.peer, "client accepted no response bytes within client.send_timeout; closing");
                return;
            }
            Ok(Expiry::Idle) if closing => return,
            Ok(Expiry::Idle) => {
                shutdown(conn.as_mut());
                closing = true;
                Instant::now() + client.idle_timeout
            }
            Err(at) => at,
        };
        state.sleeping_until(wake);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %state.peer, error = %e, "client connection ended with error");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = state.deadline_moved() => {}
            changed = phase.changed(), if !closing => {
                if changed.is_err() || *phase.borrow_and_update() >= Phase::Closing {
                    shutdown(conn.as_mut());
                    closing = true;
                }
            }
        }
    }
}
