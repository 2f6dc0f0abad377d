//! A raw HTTP/1.1 client over a plain socket. It reports exactly what came
//! back: a parsed response, or a connection closed (or reset) with no byte,
//! which is the failure lifeguard exists to prevent.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A WebSocket upgrade request for `/ws` (the key from RFC 6455's example).
pub const WEBSOCKET_UPGRADE: &[u8] =
    b"GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The connection closed before the framing said the body was complete.
    pub truncated: bool,
}

/// The first value of header `name` (lower-case) in `headers`.
pub fn header_value<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, Clone)]
pub enum RawOutcome {
    Response(RawResponse),
    /// The connection closed (FIN or RST) before any response byte.
    ClosedWithoutResponse,
    /// Bytes arrived but did not form a response head.
    Garbage(Vec<u8>),
    TimedOut,
}

impl RawOutcome {
    pub fn response(self) -> RawResponse {
        match self {
            RawOutcome::Response(r) => r,
            other => panic!("expected an HTTP response, got {other:?}"),
        }
    }
}

/// Sends `request` as is on a new connection and reads one response (or the
/// absence of one) within `secs`.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], secs: u64) -> RawOutcome {
    let mut s = TcpStream::connect(addr).await.expect("connect to proxy");
    if s.write_all(request).await.is_err() {
        return RawOutcome::ClosedWithoutResponse;
    }
    read_response(&mut s, secs, request.starts_with(b"HEAD ")).await
}

/// Reads one response from `s`.
pub async fn read_response(s: &mut TcpStream, secs: u64, head_request: bool) -> RawOutcome {
    let mut buf = Vec::new();
    let fut = async {
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(r) = try_parse(&buf, head_request, false) {
                return r;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    if buf.is_empty() {
                        return RawOutcome::ClosedWithoutResponse;
                    }
                    return try_parse(&buf, head_request, true)
                        .unwrap_or(RawOutcome::Garbage(buf.clone()));
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(r) => r,
        Err(_) => RawOutcome::TimedOut,
    }
}

/// Parses a complete response from `buf`; with `eof`, a partial body counts
/// as a truncated response.
fn try_parse(buf: &[u8], head_request: bool, eof: bool) -> Option<RawOutcome> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = match status_line.split(' ').nth(1).and_then(|s| s.parse().ok()) {
        Some(s) if status_line.starts_with("HTTP/1.") => s,
        _ => return Some(RawOutcome::Garbage(buf.to_vec())),
    };
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &buf[end + 4..];
    if (100..200).contains(&status) && status != 101 {
        // Interim response: parse what follows.
        return try_parse(rest, head_request, eof);
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let mk = |body: Vec<u8>, truncated: bool| {
        RawOutcome::Response(RawResponse {
            status,
            headers: headers.clone(),
            body,
            truncated,
        })
    };
    if head_request || status == 204 || status == 304 || status == 101 {
        return Some(mk(Vec::new(), false));
    }
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let Some(line_end) = rest[pos..].windows(2).position(|w| w == b"\r\n") else {
                return eof.then(|| mk(body, true));
            };
            let size_text = String::from_utf8_lossy(&rest[pos..pos + line_end]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).ok()?;
            pos += line_end + 2;
            if size == 0 {
                // Trailers (if any) end with an empty line.
                return match rest[pos..].windows(2).position(|w| w == b"\r\n") {
                    Some(_)
                        if rest[pos..].starts_with(b"\r\n")
                            || rest[pos..].windows(4).any(|w| w == b"\r\n\r\n") =>
                    {
                        Some(mk(body, false))
                    }
                    _ => eof.then(|| mk(body, false)),
                };
            }
            if rest.len() < pos + size + 2 {
                return eof.then(|| {
                    body.extend_from_slice(&rest[pos..rest.len().min(pos + size)]);
                    mk(body, true)
                });
            }
            body.extend_from_slice(&rest[pos..pos + size]);
            pos += size + 2;
        }
    }
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if rest.len() >= len {
            return Some(mk(rest[..len].to_vec(), false));
        }
        return eof.then(|| mk(rest.to_vec(), true));
    }
    // Close-delimited.
    eof.then(|| mk(rest.to_vec(), false))
}
