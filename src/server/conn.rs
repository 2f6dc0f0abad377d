//! One client connection: protocol detection (HTTP/2 prior knowledge or
//! HTTP/1.1), hyper's connection driver, and a watchdog for the two client
//! timeouts hyper cannot tell apart: `client.header_timeout` (from the first
//! byte of a request head to its end: slowloris) and `client.idle_timeout` (a
//! keep-alive connection with nothing in progress). hyper's own header timer
//! also runs while a connection is idle, so it is off and this replaces it.
//!
//! hyper owns the socket while it serves; it is lent (`Lent`) and comes
//! back when hyper's connection is dropped, for what hyper cannot do: the
//! `408` of a head cut by the header timeout, and a lingering close (the
//! client may still be sending when lifeguard closes: closing then would
//! reset the connection and lose the answer just written). Connection-level
//! rejections (hyper's parser 400/431/414, the 408, an HTTP/2 reset flood)
//! get an access-log line and `lifeguard_client_protocol_errors_total`.

use super::io::{TrackedIo, PREFACE_LEN};
use crate::config::ClientConfig;
use crate::metrics::{ClientProtocolError, Metrics};
use crate::proxy::{self, ConnState, Expiry};
use crate::runtime::Shared;
use crate::shutdown::Phase;
use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch, Notify};
use tokio::time::Instant;

const PREFACE: &[u8; PREFACE_LEN] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves one plain-TCP client connection until it closes.
///
/// Until its first bytes arrive, a connection costs its socket, a 24-byte
/// buffer and a timer: everything else (the connection's state, hyper and
/// its buffers) is built, boxed, once there is something to serve, so a
/// client that connects and sends nothing (a preconnecting browser, a
/// health checker, a scanner) holds almost nothing.
///
/// A plain function returning an `async move` block, not an `async fn`: an
/// `async fn` keeps its arguments twice in its state (as captured and as
/// locals), 72 bytes more in every waiting connection.
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(super) fn serve_tcp(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    async move {
        let (idle, header) = {
            let snap = shared.snapshot.load();
            (
                snap.config.client.idle_timeout,
                snap.config.client.header_timeout,
            )
        };
        let _ = stream.set_nodelay(true);
        let mut prefix = [0u8; PREFACE_LEN];
        let mut phase = shared.phase.subscribe();
        let Some(n) = sniff(&mut stream, &mut prefix, idle, header, &mut phase).await else {
            return;
        };
        let h2 = n == PREFACE_LEN && prefix == *PREFACE;
        let first = Bytes::copy_from_slice(&prefix[..n]);
        Box::pin(serve_io(stream, first, h2, peer, "http", shared)).await;
    }
}

/// Reads just enough to tell the HTTP/2 preface from an HTTP/1 request line.
/// `None`: the client closed or sent nothing in time — or nothing before the
/// process started closing: a connection with no request is idle, and like
/// an idle keep-alive connection it must not hold up the drain.
async fn sniff(
    stream: &mut TcpStream,
    buf: &mut [u8; PREFACE_LEN],
    idle: Duration,
    header: Duration,
    phase: &mut watch::Receiver<Phase>,
) -> Option<usize> {
    let first = tokio::select! {
        r = tokio::time::timeout(idle, stream.read(buf)) => r,
        _ = phase.wait_for(|p| *p >= Phase::Closing) => return None,
    };
    let mut n = match first {
        Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
        Ok(Ok(n)) => n,
    };
    while n < PREFACE_LEN && buf[..n] == PREFACE[..n] {
        match tokio::time::timeout(header, stream.read(&mut buf[n..])).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return None,
            Ok(Ok(more)) => n += more,
        }
    }
    Some(n)
}

/// The answer to a head cut by `client.header_timeout` (RFC 9110 §15.5.9).
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 57\r\n\r\nThe request head did not arrive within the time allowed.\n";
/// How long writing the `408` may take (it fits any socket buffer; a client
/// that reads nothing does not hold the connection).
const WRITE_408_TIMEOUT: Duration = Duration::from_secs(1);
/// A lingering close reads and discards at most this long...
const LINGER_TIME: Duration = Duration::from_secs(2);
/// ...and at most this much.
const LINGER_BYTES: usize = 256 * 1024;
/// Accepted HTTP/2 streams a client may reset per connection and window
/// before it gets GOAWAY (a browser cancels a few; a rapid-reset flood
/// cancels thousands a second, each one a request started at the app).
const H2_RESET_BUDGET: u32 = 100;
const H2_RESET_WINDOW: Duration = Duration::from_secs(10);
/// Streams reset by the client before hyper accepted them, and streams
/// lifeguard's h2 reset for the client's errors, allowed before h2 itself
/// sends GOAWAY (h2's own rapid-reset guards, CVE-2023-44487).
const H2_MAX_PENDING_ACCEPT_RESETS: usize = 20;
const H2_MAX_LOCAL_ERROR_RESETS: usize = 256;
/// Access-log lines for connection-level rejections, per second (a flood of
/// garbage must not become a flood of log lines; the counter counts all).
const REJECT_LOG_PER_SECOND: u32 = 50;

/// Serves a connection over any transport (plain TCP, or TLS later), whose
/// `first` bytes were already read (replayed to hyper).
pub(super) async fn serve_io<I>(
    io: I,
    first: Bytes,
    h2: bool,
    peer: SocketAddr,
    proto: &'static str,
    shared: Arc<Shared>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let client = shared.snapshot.load().config.client.clone();
    let state = Arc::new(ConnState::new(
        peer,
        proto,
        h2,
        !first.is_empty(),
        &client,
        &shared.metrics, // client_timeouts_total
    ));
    let mut phase = shared.phase.subscribe();
    if h2 {
        let (lent, mut back) = Lent::new(io);
        let served = serve_h2(lent, first, &state, &shared, &client, phase.clone());
        let end = Box::pin(served).await;
        if let Ok(returned) = back.try_recv() {
            // Boxed: once per connection, and large beside what an idle
            // connection keeps in its own future.
            Box::pin(close(returned, end, h2, peer, &shared, &client, phase)).await;
        }
        return;
    }
    let (mut io, mut replay) = (io, first);
    loop {
        let (lent, mut back) = Lent::new(io);
        // hyper's connection and its buffers live in this box, and go with
        // it when an idle connection is let go.
        let served = serve_h1(lent, replay, &state, &shared, &client, phase.clone());
        let (end, unread) = Box::pin(served).await;
        // hyper's connection is gone; unless an upgrade took the socket, it is back.
        let Ok(returned) = back.try_recv() else {
            return;
        };
        if !matches!(end, End::Released) {
            // Boxed: once per connection, and large beside what an idle
            // connection keeps in its own future.
            Box::pin(close(returned, end, h2, peer, &shared, &client, phase)).await;
            return;
        }
        io = returned.io;
        replay = if unread.is_empty() {
            // An empty `Bytes` from hyper still holds its read buffer.
            drop(unread);
            match next_bytes(&mut io, &state, client.idle_timeout, &mut phase).await {
                Some(bytes) => bytes,
                None => return,
            }
        } else {
            unread
        };
        state.bytes_arrived();
    }
}

/// An HTTP/2 connection, served until it ends.
async fn serve_h2<I>(
    lent: Lent<I>,
    first: Bytes,
    state: &Arc<ConnState>,
    shared: &Arc<Shared>,
    client: &ClientConfig,
    phase: watch::Receiver<Phase>,
) -> End
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(TrackedIo::new(lent, state.clone(), first));
    let resets = Arc::new(ResetBudget::default());
    let budget = resets.clone();
    let (svc_state, svc_shared) = (state.clone(), shared.clone());
    let svc = service_fn(move |req| {
        let guard = StreamGuard(Some(budget.clone()));
        let served = proxy::handle(svc_shared.clone(), svc_state.clone(), req);
        async move {
            let resp = served.await;
            guard.disarm();
            resp
        }
    });
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(client.http2_max_streams)
        .max_header_list_size(client.max_header_size as u32)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS);
    let conn = b.serve_connection(io, svc);
    tokio::pin!(conn);
    let watch = Watch {
        state,
        client,
        metrics: &shared.metrics,
        resets: Some(&resets),
        release: false,
    };
    drive(conn, |c| c.graceful_shutdown(), watch, phase).await
}

/// An HTTP/1 connection, served until it ends or, idle, is let go
/// (`End::Released`, with the bytes hyper had read and not parsed yet).
async fn serve_h1<I>(
    lent: Lent<I>,
    replay: Bytes,
    state: &Arc<ConnState>,
    shared: &Arc<Shared>,
    client: &ClientConfig,
    phase: watch::Receiver<Phase>,
) -> (End, Bytes)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(TrackedIo::new(lent, state.clone(), replay));
    let (svc_state, svc_shared) = (state.clone(), shared.clone());
    let svc = service_fn(move |req| proxy::handle(svc_shared.clone(), svc_state.clone(), req));
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(client.max_header_size)
        .keep_alive(true);
    let mut conn = b.serve_connection(io, svc).with_upgrades();
    let watch = Watch {
        state,
        client,
        metrics: &shared.metrics,
        resets: None,
        release: true,
    };
    let end = drive(Pin::new(&mut conn), |c| c.graceful_shutdown(), watch, phase).await;
    if !matches!(end, End::Released) {
        return (end, Bytes::new());
    }
    match conn.into_parts() {
        // Dropping the parts hands the socket back (`Lent`).
        Some(parts) => (end, parts.read_buf),
        None => (End::Served(Ok(())), Bytes::new()),
    }
}

/// Waits, holding no buffer but a few bytes, for the next request on an idle
/// HTTP/1 connection whose hyper connection was let go. `None`: the client
/// closed, the idle timeout passed, or the process is closing — then the
/// connection closes as hyper would have closed it.
async fn next_bytes<I>(
    io: &mut I,
    state: &ConnState,
    idle: Duration,
    phase: &mut watch::Receiver<Phase>,
) -> Option<Bytes>
where
    I: AsyncRead + Unpin,
{
    let mut buf = [0u8; PREFACE_LEN];
    let deadline = state.idle_deadline(idle);
    let read = tokio::select! {
        r = tokio::time::timeout_at(deadline, io.read(&mut buf)) => r,
        _ = phase.wait_for(|p| *p >= Phase::Closing) => return None,
    };
    match read {
        Ok(Ok(n)) if n > 0 => Some(Bytes::copy_from_slice(&buf[..n])),
        _ => None,
    }
}

/// How hyper's connection ended.
#[derive(Debug)]
enum End {
    /// hyper finished (the client closed, or a graceful close completed), or failed.
    Served(Result<(), hyper::Error>),
    /// A request head did not arrive within `client.header_timeout`.
    HeaderTimeout,
    /// Idle past `client.idle_timeout` after a graceful close was asked for.
    Idle,
    /// An HTTP/2 client went on resetting streams after its GOAWAY.
    ResetFlood,
    /// HTTP/1: idle for `RELEASE_IDLE_AFTER`; hyper's connection is let go
    /// (the socket stays open) and built again on the next byte.
    Released,
    /// The client accepted no response byte for `client.send_timeout`.
    SendTimeout,
}

/// What the watchdog reads besides the hyper connection.
struct Watch<'a> {
    state: &'a ConnState,
    client: &'a ClientConfig,
    metrics: &'a Metrics,
    /// HTTP/2: the client's resets of accepted streams.
    resets: Option<&'a ResetBudget>,
    /// HTTP/1: return `End::Released` once the connection has been idle
    /// for `RELEASE_IDLE_AFTER`.
    release: bool,
}

/// Runs a hyper connection to completion, closing it when idle too long, when
/// a request head is too slow, when an HTTP/2 client resets too many streams,
/// or (gracefully) when the process is closing; or, HTTP/1, when it has
/// been idle long enough to be let go (`End::Released`).
async fn drive<C>(
    mut conn: Pin<&mut C>,
    shutdown: impl Fn(Pin<&mut C>),
    w: Watch<'_>,
    mut phase: watch::Receiver<Phase>,
) -> End
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    let (state, client) = (w.state, w.client);
    let mut closing = false;
    let mut flooded = false;
    if *phase.borrow_and_update() >= Phase::Closing {
        shutdown(conn.as_mut());
        closing = true;
    }
    loop {
        state.watchdog_awake();
        let wake = match state.expiry(client.idle_timeout, client.header_timeout) {
            Ok(Expiry::HeaderTimeout) => {
                tracing::debug!(peer = %state.peer, "request head not received within client.header_timeout; closing");
                return End::HeaderTimeout;
            }
            // The client took no response byte for client.send_timeout.
            Ok(Expiry::SendTimeout) => {
                tracing::debug!(peer = %state.peer, "client accepted no response bytes within client.send_timeout; closing");
                return End::SendTimeout;
            }
            Ok(Expiry::Idle) if closing => return End::Idle,
            Ok(Expiry::Idle) => {
                shutdown(conn.as_mut());
                closing = true;
                Instant::now() + client.idle_timeout
            }
            Err(at) => at,
        };
        let wake = match state.release_at() {
            Some(at) if w.release && !closing && at <= Instant::now() => {
                tracing::trace!(peer = %state.peer, "idle: hyper's connection let go until the next request");
                return End::Released;
            }
            Some(at) if w.release && !closing => wake.min(at),
            _ => wake,
        };
        state.sleeping_until(wake);
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = &res {
                    tracing::debug!(peer = %state.peer, error = %e, "client connection ended with error");
                }
                return End::Served(res);
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = state.deadline_moved() => {}
            _ = over_budget(w.resets) => {
                if flooded {
                    // Still resetting after GOAWAY: no more grace.
                    return End::ResetFlood;
                }
                flooded = true;
                tracing::warn!(peer = %state.peer, budget = H2_RESET_BUDGET, window_s = H2_RESET_WINDOW.as_secs(), "HTTP/2 client reset too many accepted streams; sending GOAWAY");
                w.metrics.client_protocol_error(ClientProtocolError::H2ResetFlood);
                shutdown(conn.as_mut());
                closing = true;
            }
            changed = phase.changed(), if !closing => {
                if changed.is_err() || *phase.borrow_and_update() >= Phase::Closing {
                    shutdown(conn.as_mut());
                    closing = true;
                }
            }
        }
    }
}

/// Resolves when the HTTP/2 client went over its reset budget (never for HTTP/1).
async fn over_budget(resets: Option<&ResetBudget>) {
    match resets {
        Some(r) => r.over.notified().await,
        None => std::future::pending().await,
    }
}

/// The resets of accepted streams on one HTTP/2 connection, in fixed windows
/// of `H2_RESET_WINDOW`.
#[derive(Debug, Default)]
struct ResetBudget {
    /// Start of the current window and resets in it.
    window: Mutex<Option<(Instant, u32)>>,
    /// Notified on every reset past the budget.
    over: Notify,
}

impl ResetBudget {
    fn reset_seen(&self) {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let (start, n) = w.get_or_insert((now, 0));
        if now.duration_since(*start) >= H2_RESET_WINDOW {
            (*start, *n) = (now, 0);
        }
        *n += 1;
        if *n > H2_RESET_BUDGET {
            self.over.notify_one();
        }
    }
}

/// Held by an HTTP/2 request's service future: dropped before the response
/// head was produced, the stream was reset by the client (or its connection
/// died), and it counts against the connection's budget.
struct StreamGuard(Option<Arc<ResetBudget>>);

impl StreamGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Some(budget) = self.0.take() {
            budget.reset_seen();
        }
    }
}

/// What to do with the socket hyper gave back.
async fn close<I>(
    returned: Returned<I>,
    end: End,
    h2: bool,
    peer: SocketAddr,
    shared: &Shared,
    client: &ClientConfig,
    mut phase: watch::Receiver<Phase>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let Returned {
        mut io,
        eof,
        write_blocked,
    } = returned;
    match &end {
        // HTTP/1 only (an HTTP/2 connection has no header timeout). A write
        // left blocked means part of an earlier response may still sit in
        // hyper's buffer: a 408 after it would be garbage, so then nothing.
        End::HeaderTimeout if !h2 => {
            if !write_blocked {
                let _ = tokio::time::timeout(WRITE_408_TIMEOUT, async {
                    io.write_all(REQUEST_TIMEOUT).await?;
                    io.flush().await
                })
                .await;
            }
            let kind = ClientProtocolError::HeaderTimeout;
            reject(shared, peer, kind, 408, client.header_timeout);
        }
        End::Served(Err(e)) => {
            if let Some((kind, status)) = parse_rejection(e) {
                reject(shared, peer, kind, status, Duration::ZERO);
            }
        }
        _ => {}
    }
    // A client that stopped reading gets no lingering: it is the one
    // holding things up.
    if !eof && !matches!(end, End::SendTimeout) {
        linger(&mut io, &mut phase).await;
    }
}

/// What hyper answered for a request head its parser rejected, if anything
/// (`Role::on_error`: 400 for a bad method, target, version or header, 431
/// for a head too large, 414 for a target too long).
fn parse_rejection(e: &hyper::Error) -> Option<(ClientProtocolError, u16)> {
    if e.is_parse_too_large() {
        let status = if e.to_string().contains("URI too long") {
            414
        } else {
            431
        };
        Some((ClientProtocolError::HeadTooLarge, status))
    } else if e.is_parse() && !e.is_parse_version_h2() {
        Some((ClientProtocolError::MalformedHead, 400))
    } else {
        None
    }
}

/// Counts a connection-level rejection and writes its access-log line
/// (`-` for what no parsed request could tell), at most
/// `REJECT_LOG_PER_SECOND` lines a second.
fn reject(
    shared: &Shared,
    peer: SocketAddr,
    kind: ClientProtocolError,
    status: u16,
    took: Duration,
) {
    shared.metrics.client_protocol_error(kind);
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let second = EPOCH.get_or_init(Instant::now).elapsed().as_secs();
    let admitted = REJECT_LOG
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .admit(second);
    let Some(suppressed) = admitted else { return };
    if suppressed > 0 {
        tracing::warn!(
            suppressed,
            "access-log lines of rejected client connections suppressed (over {REJECT_LOG_PER_SECOND}/s); lifeguard_client_protocol_errors_total counts them all"
        );
    }
    tracing::info!(
        target: "access",
        method = "-",
        path = "-",
        status,
        duration_ms = took.as_secs_f64() * 1000.0,
        endpoint = "-",
        request_id = "-",
        error = kind.label(),
        outcome = "rejected",
        bytes_in = 0u64,
        bytes_out = 0u64,
        retries = 0u32,
        client = %peer,
    );
}

/// The rate limit of rejection log lines, in whole seconds since the first.
#[derive(Debug)]
struct LogWindow {
    second: u64,
    used: u32,
    suppressed: u64,
}

static REJECT_LOG: Mutex<LogWindow> = Mutex::new(LogWindow {
    second: 0,
    used: 0,
    suppressed: 0,
});

impl LogWindow {
    /// `Some(lines suppressed in the previous window)` if a line may be
    /// written in `second`.
    fn admit(&mut self, second: u64) -> Option<u64> {
        let mut dropped = 0;
        if second != self.second {
            self.second = second;
            self.used = 0;
            dropped = std::mem::take(&mut self.suppressed);
        }
        if self.used >= REJECT_LOG_PER_SECOND {
            self.suppressed += 1;
            return None;
        }
        self.used += 1;
        Some(dropped)
    }
}

/// A lingering close (as nginx's `lingering_close`): shut the write side
/// (FIN after whatever was written: the answer is complete), then read and
/// discard what the client is still sending, until it closes, for at most
/// `LINGER_TIME` and `LINGER_BYTES`. Closing at once with unread bytes, or
/// with bytes still arriving, makes the kernel answer them with a reset, and
/// a client still writing its request then fails on its write and never
/// reads the answer lifeguard sent. Skipped once the process is closing.
async fn linger<I>(io: &mut I, phase: &mut watch::Receiver<Phase>)
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    if *phase.borrow() >= Phase::Closing {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    if !matches!(
        tokio::time::timeout_at(deadline, io.shutdown()).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, io.read(&mut buf)) => r,
            _ = phase.wait_for(|p| *p >= Phase::Closing) => return,
        };
        match read {
            Ok(Ok(n)) if n > 0 => discarded += n,
            _ => return,
        }
    }
}

/// The socket lent to hyper. When hyper drops it (its connection ended),
/// it is sent back through `back`, with what was seen on it; an upgrade
/// keeps it (the tunnel drops it, and nobody is waiting any more).
struct Lent<I> {
    io: Option<I>,
    back: Option<oneshot::Sender<Returned<I>>>,
    /// The client closed its side (a read returned end of stream).
    eof: bool,
    /// The last write or flush could not complete (hyper still holds bytes).
    write_blocked: bool,
}

struct Returned<I> {
    io: I,
    eof: bool,
    write_blocked: bool,
}

impl<I: Unpin> Lent<I> {
    fn new(io: I) -> (Lent<I>, oneshot::Receiver<Returned<I>>) {
        let (tx, rx) = oneshot::channel();
        let lent = Lent {
            io: Some(io),
            back: Some(tx),
            eof: false,
            write_blocked: false,
        };
        (lent, rx)
    }

    fn io(&mut self) -> Pin<&mut I> {
        Pin::new(self.io.as_mut().expect("the socket is only taken on drop"))
    }

    fn wrote<T>(&mut self, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.write_blocked = polled.is_pending();
        polled
    }
}

impl<I> Drop for Lent<I> {
    fn drop(&mut self) {
        if let (Some(io), Some(back)) = (self.io.take(), self.back.take()) {
            let _ = back.send(Returned {
                io,
                eof: self.eof,
                write_blocked: self.write_blocked,
            });
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Lent<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = self.io().poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            self.eof = true;
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Lent<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = self.io().poll_write(cx, data);
        self.wrote(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.io().poll_write_vectored(cx, bufs);
        self.wrote(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = self.io().poll_flush(cx);
        self.wrote(polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.io().poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_log_lines_are_bounded_per_second_and_the_rest_reported() {
        let mut w = LogWindow {
            second: 0,
            used: 0,
            suppressed: 0,
        };
        let admitted = (0..REJECT_LOG_PER_SECOND + 30)
            .filter(|_| w.admit(0).is_some())
            .count();
        assert_eq!(admitted, REJECT_LOG_PER_SECOND as usize);
        assert_eq!(
            w.admit(1),
            Some(30),
            "the next second reports what was dropped"
        );
        assert_eq!(w.admit(1), Some(0));
    }

    /// The budget counts resets in windows of `H2_RESET_WINDOW` on tokio's
    /// clock; only the reset past the budget notifies.
    #[tokio::test(start_paused = true)]
    async fn reset_budget_trips_past_its_count_within_the_window() {
        let b = Arc::new(ResetBudget::default());
        let tripped = || {
            let n = b.over.notified();
            tokio::pin!(n);
            n.as_mut().enable()
        };
        for _ in 0..H2_RESET_BUDGET {
            drop(StreamGuard(Some(b.clone())));
        }
        assert!(!tripped(), "within budget");
        // A new window starts the count again.
        tokio::time::advance(H2_RESET_WINDOW).await;
        for _ in 0..H2_RESET_BUDGET {
            drop(StreamGuard(Some(b.clone())));
        }
        assert!(!tripped(), "a new window");
        StreamGuard(Some(b.clone())).disarm();
        assert!(!tripped(), "a stream answered is no reset");
        drop(StreamGuard(Some(b.clone())));
        assert!(tripped(), "one past the budget");
    }
}
