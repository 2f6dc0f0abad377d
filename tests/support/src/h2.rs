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
pub async fn h2_read_all(s: TcpStream) -> Vec<H2Frame> {
    h2_read_until(s, Instant::now() + std::time::Duration::from_secs(86400))
        .await
        .0
}

/// Reads frames until the server closes or `deadline` passes, acknowledging
/// SETTINGS and PING (and never sending WINDOW_UPDATE). Returns the frames,
/// and when the server closed (`None`: still open at the deadline).
pub async fn h2_read_until(mut s: TcpStream, deadline: Instant) -> (Vec<H2Frame>, Option<Instant>) {
    use tokio::time::timeout_at;
    let mut frames = Vec::new();
    loop {
        let mut head = [0u8; 9];
        match timeout_at(deadline, s.read_exact(&mut head)).await {
            Err(_) => return (frames, None),
            Ok(Err(_)) => return (frames, Some(Instant::now())),
            Ok(Ok(_)) => {}
        }
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let mut payload = vec![0u8; len];
        match timeout_at(deadline, s.read_exact(&mut payload)).await {
            Err(_) => return (frames, None),
            Ok(Err(_)) => return (frames, Some(Instant::now())),
            Ok(Ok(_)) => {}
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
pub const H2_WINDOW_UPDATE: u8 = 8;

/// SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113 §6.5.2).
pub const H2_SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// A SETTINGS payload from `(id, value)` pairs.
pub fn h2_settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    pairs
        .iter()
        .flat_map(|(id, v)| id.to_be_bytes().into_iter().chain(v.to_be_bytes()))
        .collect()
}

/// An HPACK header block for `method` (`GET` or `POST`) on `path`, scheme
/// http, authority `test`: static-table entries and literals, no Huffman.
pub fn h2_request_block(method: &str, path: &str) -> Vec<u8> {
    let mut block = vec![match method {
        "GET" => 0x82,
        "POST" => 0x83,
        other => panic!("h2_request_block: no static entry for {other}"),
    }];
    block.push(0x86); // :scheme http
    block.extend([0x04, path.len() as u8]); // :path, literal value
    block.extend_from_slice(path.as_bytes());
    block.extend([0x01, 0x04]); // :authority, literal value
    block.extend_from_slice(b"test");
    block
}

/// The client preface, `settings`, and a request's HEADERS on stream 1
/// (END_STREAM only if `end_stream`), ready to write.
pub fn h2_hello(settings: &[(u16, u32)], method: &str, path: &str, end_stream: bool) -> Vec<u8> {
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(h2_frame(H2_SETTINGS, 0, 0, &h2_settings(settings)));
    let flags = 0x4 | u8::from(end_stream); // END_HEADERS, END_STREAM
    hello.extend(h2_frame(
        H2_HEADERS,
        flags,
        1,
        &h2_request_block(method, path),
    ));
    hello
}

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
