//! Raw-socket helpers for tests that speak HTTP/1 byte by byte on one
//! connection: response heads as they come (1xx included), exact reads,
//! reads until the peer closes, and exchanges on a kept-alive connection.

use crate::client::{header_value, read_response, RawResponse};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

/// Connects to `addr` with `TCP_NODELAY`.
pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connect");
    s.set_nodelay(true).unwrap();
    s
}

/// Connects to `addr` (as [`connect`]) and writes `bytes`.
pub async fn connect_and_send(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = connect(addr).await;
    s.write_all(bytes)
        .await
        .expect("write to the new connection");
    s
}

/// A response head read off a raw socket, and the bytes that followed it.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// What came after the head in the same reads.
    pub rest: Vec<u8>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response head (interim 1xx heads included: they are returned
/// like any other). Panics on timeout or on a close before a full head.
pub async fn read_head<R: AsyncRead + Unpin>(r: &mut R, within: Duration) -> Head {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).into_owned();
            let mut lines = text.split("\r\n");
            let status_line = lines.next().unwrap_or_default();
            assert!(
                status_line.starts_with("HTTP/1.1 "),
                "not a response: {text:?}"
            );
            let status = status_line[9..12].parse().expect("status code");
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            return Head {
                status,
                headers,
                rest: buf[end + 4..].to_vec(),
            };
        }
        let n = match timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => panic!(
                "no response head within {within:?}; got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Err(e)) => panic!(
                "read error before a response head ({e}); got {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(Ok(n)) => n,
        };
        assert!(
            n > 0,
            "closed before a full response head; got {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads until `len` bytes have been collected (starting from `have`).
pub async fn read_exact_more<R: AsyncRead + Unpin>(
    r: &mut R,
    mut have: Vec<u8>,
    len: usize,
    within: Duration,
) -> Vec<u8> {
    let deadline = Instant::now() + within;
    let mut chunk = [0u8; 16384];
    while have.len() < len {
        let n = timeout_at(deadline, r.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("only {} of {len} bytes within {within:?}", have.len()))
            .expect("read");
        assert!(n > 0, "closed after {} of {len} bytes", have.len());
        have.extend_from_slice(&chunk[..n]);
    }
    have
}

/// Reads whatever arrives within `dur`. Returns the bytes, and whether the
/// peer closed (EOF or reset) and when.
pub async fn read_for<R: AsyncRead + Unpin>(
    r: &mut R,
    dur: Duration,
) -> (Vec<u8>, Option<Duration>) {
    let start = Instant::now();
    let deadline = start + dur;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        match timeout_at(deadline, r.read(&mut chunk)).await {
            Err(_) => return (buf, None),
            Ok(Ok(0)) | Ok(Err(_)) => return (buf, Some(start.elapsed())),
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends one request on an open connection and reads its response.
pub async fn exchange_on(s: &mut TcpStream, request: &[u8]) -> RawResponse {
    s.write_all(request).await.expect("write request");
    read_response(s, 5, request.starts_with(b"HEAD "))
        .await
        .response()
}

/// Reads until the peer closes; returns what came (EOF or reset both end it).
pub async fn read_to_end(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(all)
}

/// Reads from `s` into `buf` until it holds at least `n` bytes.
pub async fn read_at_least(s: &mut TcpStream, buf: &mut Vec<u8>, n: usize, what: &str) {
    let mut chunk = [0u8; 4096];
    let fut = async {
        while buf.len() < n {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!("{what}: connection closed after {buf:?}"),
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: timed out with {buf:?}"));
}

/// Connects to `addr` and makes one exchange (as [`exchange_on`]), leaving
/// the connection open for more.
pub async fn connect_and_exchange(addr: SocketAddr, request: &[u8]) -> (TcpStream, RawResponse) {
    let mut s = connect(addr).await;
    let r = exchange_on(&mut s, request).await;
    (s, r)
}
