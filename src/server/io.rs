//! The client socket as hyper sees it: replays the bytes read before hyper
//! took the socket (while sniffing for the HTTP/2 preface, or waiting on an
//! idle connection whose hyper connection was let go), notes when a new request head starts arriving
//! on an idle connection (the header-timeout clock, see `conn.rs`), and
//! when writes to the client block and progress again (the send-timeout
//! clock: a client that stops reading is cut after `client.send_timeout`).

use crate::proxy::ConnState;
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Length of the HTTP/2 connection preface (RFC 9113 §3.4).
pub(super) const PREFACE_LEN: usize = 24;

#[derive(Debug)]
pub(super) struct TrackedIo<T> {
    inner: T,
    state: Arc<ConnState>,
    /// Read from the socket already; hyper gets these first.
    replay: Bytes,
}

impl<T> TrackedIo<T> {
    pub(super) fn new(inner: T, state: Arc<ConnState>, replay: Bytes) -> Self {
        TrackedIo {
            inner,
            state,
            replay,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TrackedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.replay.is_empty() {
            let n = this.replay.len().min(buf.remaining());
            buf.put_slice(&this.replay[..n]);
            this.replay.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.bytes_arrived();
        }
        polled
    }
}

impl<T> TrackedIo<T> {
    /// Bytes the socket accepted are the client's progress; a write that
    /// cannot proceed starts (or continues) the send-timeout clock.
    fn note_write(&self, polled: &Poll<io::Result<usize>>) {
        match polled {
            Poll::Pending => self.state.write_blocked(),
            Poll::Ready(Ok(n)) if *n > 0 => self.state.write_progressed(),
            Poll::Ready(_) => {}
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        match polled {
            // A TLS stream flushes its records to the socket here.
            Poll::Pending => self.state.write_blocked(),
            Poll::Ready(Ok(())) => self.state.write_progressed(),
            Poll::Ready(Err(_)) => {}
        }
        polled
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
