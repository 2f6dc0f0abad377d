//! The client socket as hyper sees it: replays the bytes read while sniffing
//! for the HTTP/2 preface, notes when a new request head starts arriving
//! on an idle connection (the header-timeout clock, see `conn.rs`), and
//! when writes to the client block and progress again (the send-timeout
//! clock: a client that stops reading is cut after `client.send_timeout`).

use crate::proxy::ConnState;
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
    prefix: [u8; PREFACE_LEN],
    prefix_pos: usize,
    prefix_len: usize,
}

impl<T> TrackedIo<T> {
    pub(super) fn new(
        inner: T,
        state: Arc<ConnState>,
        prefix: [u8; PREFACE_LEN],
        prefix_len: usize,
    ) -> Self {
        TrackedIo {
            inner,
            state,
            prefix,
            prefix_pos: 0,
            prefix_len,
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
        if this.prefix_pos < this.prefix_len {
            let n = (this.prefix_len - this.prefix_pos).min(buf.remaining());
            buf.put_slice(&this.prefix[this.prefix_pos..this.prefix_pos + n]);
            this.prefix_pos += n;
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
