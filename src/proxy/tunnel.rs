//! Upgraded connections (WebSocket, socket.io): after the app answers `101`,
//! bytes are copied both ways until either side closes.
//!
//! On shutdown (`Phase::Closing`) a WebSocket gets a real close: lifeguard
//! tracks frame boundaries in both directions (it never buffers or rewrites
//! frames) and, at the next boundary, sends `1001 Going Away` to the client
//! and a masked one to the app, so both ends see an orderly close and a
//! socket.io client reconnects (to a pod that is still ready). Other upgraded
//! protocols are closed after the same grace.

use crate::runtime::Shared;
use crate::shutdown::Phase;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::watch;

/// Time the peers get to answer our close frames before the sockets close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// `1001 Going Away`, server to client (unmasked, RFC 6455 §5.5.1).
const CLOSE_TO_CLIENT: [u8; 4] = [0x88, 0x02, 0x03, 0xE9];

/// Joins the client's and the app's upgraded connections in a background task.
pub(super) fn spawn(
    client: OnUpgrade,
    app: OnUpgrade,
    websocket: bool,
    shared: Arc<Shared>,
    request_id: http::HeaderValue,
) {
    tokio::spawn(async move {
        let (client, app) = tokio::join!(client, app);
        let (client, app) = match (client, app) {
            (Ok(c), Ok(a)) => (c, a),
            (c, a) => {
                tracing::warn!(
                    ?request_id,
                    client_ok = c.is_ok(),
                    app_ok = a.is_ok(),
                    "upgrade failed after 101"
                );
                return;
            }
        };
        let open = &shared.metrics.tunnels_open;
        open.inc();
        let busy = shared.activity.hold();
        let (up, down) = relay(client, app, websocket, shared.phase.subscribe()).await;
        drop(busy);
        open.dec();
        tracing::debug!(?request_id, up, down, "tunnel closed");
    });
}

type Io = TokioIo<Upgraded>;

/// Copies both ways until both directions end, or until `CLOSE_GRACE` after
/// the process starts closing. Returns the bytes copied each way.
async fn relay(
    client: Upgraded,
    app: Upgraded,
    websocket: bool,
    mut phase: watch::Receiver<Phase>,
) -> (u64, u64) {
    let (client_r, client_w) = tokio::io::split(TokioIo::new(client));
    let (app_r, app_w) = tokio::io::split(TokioIo::new(app));
    let mask: [u8; 4] = fastrand::u32(..).to_be_bytes();
    let close_to_app = [
        0x88,
        0x82,
        mask[0],
        mask[1],
        mask[2],
        mask[3],
        0x03 ^ mask[0],
        0xE9 ^ mask[1],
    ];
    let (closing_tx, closing_rx) = watch::channel(false);
    let up = pump(
        client_r,
        app_w,
        websocket.then_some(&close_to_app[..]),
        closing_rx.clone(),
    );
    let down = pump(
        app_r,
        client_w,
        websocket.then_some(&CLOSE_TO_CLIENT[..]),
        closing_rx,
    );
    let both = async { tokio::join!(up, down) };
    tokio::pin!(both);
    tokio::select! {
        (u, d) = &mut both => return (u, d),
        _ = phase.wait_for(|p| *p >= Phase::Closing) => {}
    }
    let _ = closing_tx.send(true);
    match tokio::time::timeout(CLOSE_GRACE, &mut both).await {
        Ok((u, d)) => (u, d),
        Err(_) => (0, 0), // dropping the halves closes both sockets
    }
}

/// Copies one direction, tracking WebSocket frames when `close_frame` is
/// given; once closing, injects `close_frame` at the next frame boundary.
async fn pump(
    mut from: ReadHalf<Io>,
    mut to: WriteHalf<Io>,
    close_frame: Option<&[u8]>,
    mut closing: watch::Receiver<bool>,
) -> u64 {
    let mut buf = vec![0u8; 16 * 1024];
    let mut frames = FrameTracker::default();
    let mut copied = 0u64;
    let mut sent_close = false;
    let mut is_closing = false;
    loop {
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                copied += n as u64;
                frames.advance(&buf[..n]);
            }
            changed = closing.changed(), if !is_closing => {
                is_closing = changed.is_err() || *closing.borrow();
            }
        }
        if is_closing && !sent_close {
            match close_frame {
                Some(frame) if frames.at_boundary() => {
                    sent_close = true;
                    if to.write_all(frame).await.is_err() {
                        break;
                    }
                }
                Some(_) => {} // mid-frame: wait for its end
                None => break,
            }
        }
    }
    let _ = to.shutdown().await;
    copied
}

/// Follows WebSocket frame boundaries (RFC 6455 §5.2) in a byte stream
/// without storing payloads. `pub(crate)` for `crate::fuzzing` only.
#[derive(Debug, Default)]
pub(crate) struct FrameTracker {
    head: [u8; 14],
    have: usize,
    need: usize,
    remaining: u64,
}

impl FrameTracker {
    pub(crate) fn advance(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            self.head[self.have] = data[0];
            self.have += 1;
            data = &data[1..];
            if self.have == 2 {
                let ext = match self.head[1] & 0x7f {
                    126 => 2,
                    127 => 8,
                    _ => 0,
                };
                let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
                self.need = 2 + ext + mask;
            }
            if self.have >= 2 && self.have == self.need {
                self.remaining = match self.head[1] & 0x7f {
                    126 => u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                    127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap_or([0; 8])),
                    n => u64::from(n),
                };
                self.have = 0;
                self.need = 0;
            }
        }
    }

    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload_len: usize, masked: bool) -> Vec<u8> {
        let mut f = vec![0x82];
        let m = if masked { 0x80 } else { 0 };
        match payload_len {
            n if n < 126 => f.push(m | n as u8),
            n if n <= 0xffff => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            f.extend_from_slice(&[1, 2, 3, 4]);
        }
        f.extend(std::iter::repeat_n(0xAB, payload_len));
        f
    }

    #[test]
    fn boundaries_are_found_across_any_chunking() {
        let mut stream = Vec::new();
        let mut ends = Vec::new();
        for (len, masked) in [
            (0, false),
            (5, true),
            (125, false),
            (126, true),
            (70_000, false),
            (3, true),
        ] {
            stream.extend(frame(len, masked));
            ends.push(stream.len());
        }
        for chunk in [1, 2, 3, 7, 1000, stream.len()] {
            let mut t = FrameTracker::default();
            let mut pos = 0;
            for piece in stream.chunks(chunk) {
                t.advance(piece);
                pos += piece.len();
                assert_eq!(
                    t.at_boundary(),
                    ends.contains(&pos) || pos == 0,
                    "chunk {chunk} at {pos}"
                );
            }
        }
    }

    #[test]
    fn close_frames_are_well_formed() {
        let mut t = FrameTracker::default();
        t.advance(&CLOSE_TO_CLIENT);
        assert!(t.at_boundary());
    }
}
