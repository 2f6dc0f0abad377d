//! Raw HTTP/2 frames over a plain socket (prior knowledge, no TLS): enough
//! to send a request by hand and to see every frame the server writes, with
//! when it came (GOAWAY timing at drain).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame.
pub fn h2_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[derive(Debug)]
pub struct H2Frame {
    /// When it was read.
    pub at: Instant,
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

pub const H2_DATA: u8 = 0;
pub const H2_HEADERS: u8 = 1;
pub const H2_SETTINGS: u8 = 4;
pub const H2_PING: u8 = 6;
pub const H2_GOAWAY: u8 = 7;

/// Reads frames until the server closes, acknowledging SETTINGS and PING.
pub async fn h2_read_all(mut s: TcpStream) -> Vec<H2Frame> {
    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).await.is_err() {
            return frames;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            return frames;
        }
        let (ty, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        if ty == H2_SETTINGS && flags & 1 == 0 {
            let _ = s.write_all(&h2_frame(H2_SETTINGS, 1, 0, &[])).await;
        }
        if ty == H2_PING && flags & 1 == 0 {
            let _ = s.write_all(&h2_frame(H2_PING, 1, 0, &payload)).await;
        }
        frames.push(H2Frame {
            at: Instant::now(),
            ty,
            flags,
            stream,
            payload,
        });
    }
}

pub const H2_RST_STREAM: u8 = 3;
/// RST_STREAM error code CANCEL (RFC 9113 §7).
pub const H2_CANCEL: u32 = 0x8;

/// A HEADERS block for `GET http://<authority><path>`, HPACK-coded by hand
/// (static-table indices and literals without indexing).
pub fn h2_get_block(path: &[u8], authority: &[u8]) -> Vec<u8> {
    assert!(path.len() < 127 && authority.len() < 127);
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8]; // GET, http, :path literal
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, authority.len() as u8]); // :authority literal
    block.extend_from_slice(authority);
    block
}

/// Reads frames from `r` until the server closes (or the read fails),
/// acknowledging nothing: for a client that ignores what the server says.
pub async fn h2_read_frames<R: AsyncRead + Unpin>(mut r: R) -> Vec<H2Frame> {
    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        if r.read_exact(&mut head).await.is_err() {
            return frames;
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).await.is_err() {
            return frames;
        }
        frames.push(H2Frame {
            at: Instant::now(),
            ty: head[3],
            flags: head[4],
            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
            payload,
        });
    }
}
