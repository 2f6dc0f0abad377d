//! The client socket as hyper sees it: replays the bytes read while sniffing
//! for the HTTP/2 preface, and notes when a new request head starts arriving
//! on an idle connection (the header-timeout clock, see `conn.rs`).

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

impl<T: AsyncWrite + Unpin> AsyncWrite for TrackedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
