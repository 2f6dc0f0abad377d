//! Streaming both ways without buffering, and with bounded memory: a
//! pattern cheap to produce and to check at any offset, sent and verified
//! frame by frame.

use super::{json, pattern_at, pattern_matches, App, BIG, FRAME, GATE};
use support::raw::connect;
use support::upstream::full;
use support::*;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the upload app saw of the current upload.
#[derive(Default)]
struct UploadSeen {
    received: AtomicU64,
}

/// An app that reads an upload frame by frame, verifying it against the
/// pattern, and answers `{"received":n,"intact":bool,"complete":bool}`.
async fn upload_app() -> (App, Arc<UploadSeen>) {
    let seen = Arc::new(UploadSeen::default());
    let s = seen.clone();
    let app = App::start(move |req: Request<Incoming>| {
        let s = s.clone();
        async move {
            s.received.store(0, Ordering::SeqCst);
            let mut body = req.into_body();
            let (mut off, mut intact, mut complete) = (0u64, true, false);
            loop {
                match body.frame().await {
                    None => {
                        complete = true;
                        break;
                    }
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            intact &= pattern_matches(off, &d);
                            off += d.len() as u64;
                            s.received.store(off, Ordering::SeqCst);
                        }
                    }
                    Some(Err(_)) => break,
                }
            }
            let v = serde_json::json!({"received": off, "intact": intact, "complete": complete});
            Response::new(full(v.to_string()))
        }
    })
    .await;
    (app, seen)
}

/// Uploads `total` pattern bytes to `addr` on a raw socket (Content-Length or
/// chunked). After `GATE` bytes it stops until the app has received some:
/// a proxy that buffered the whole body before forwarding fails here.
async fn upload(addr: SocketAddr, total: u64, chunked: bool, seen: &UploadSeen) -> RawResponse {
    let mut s = connect(addr).await;
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {total}")
    };
    let head = format!("POST /upload HTTP/1.1\r\nHost: app\r\n{framing}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut sent = 0u64;
    let mut gated = false;
    let mut buf = Vec::with_capacity(FRAME + 32);
    while sent < total {
        if !gated && sent >= GATE {
            gated = true;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while seen.received.load(Ordering::SeqCst) == 0 {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the app received nothing while the client had sent {sent} of {total} bytes: \
                     the proxy buffers uploads"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let n = FRAME.min((total - sent) as usize);
        let data = pattern_at(sent, n);
        buf.clear();
        if chunked {
            buf.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            buf.extend_from_slice(&data);
            buf.extend_from_slice(b"\r\n");
        } else {
            buf.extend_from_slice(&data);
        }
        timeout(Duration::from_secs(10), s.write_all(&buf))
            .await
            .unwrap_or_else(|_| panic!("upload stalled after {sent} bytes"))
            .unwrap_or_else(|e| panic!("upload failed after {sent} bytes: {e}"));
        sent += n as u64;
    }
    if chunked {
        s.write_all(b"0\r\n\r\n").await.unwrap();
    }
    support::client::read_response(&mut s, 30, false)
        .await
        .response()
}

/// A response body fed from a channel (Sync, as `TestBody` requires).
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, String>>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// An app that answers `GET /download` with `total` pattern bytes (with a
/// Content-Length, or chunked). After `GATE` bytes it waits (up to 10 s) for a
/// permit on the returned semaphore, which the client adds once it has seen
/// the first body bytes: a proxy that buffered the whole response never
/// delivers them, and the response fails.
async fn download_app(total: u64, content_length: bool) -> (App, Arc<Semaphore>) {
    let release = Arc::new(Semaphore::new(0));
    let r = release.clone();
    let app = App::start(move |_req: Request<Incoming>| {
        let release = r.clone();
        async move {
            let (tx, rx) = mpsc::channel(8);
            tokio::spawn(async move {
                let mut pos = 0u64;
                let mut gated = false;
                while pos < total {
                    if !gated && pos >= GATE {
                        gated = true;
                        match timeout(Duration::from_secs(10), release.acquire()).await {
                            Ok(Ok(p)) => p.forget(),
                            _ => {
                                let _ = tx
                                    .send(Err(format!(
                                        "client saw no body byte after the app sent {pos}: \
                                         the proxy buffers downloads"
                                    )))
                                    .await;
                                return;
                            }
                        }
                    }
                    let n = FRAME.min((total - pos) as usize);
                    if tx.send(Ok(pattern_at(pos, n))).await.is_err() {
                        return;
                    }
                    pos += n as u64;
                }
            });
            let mut b = Response::builder();
            if content_length {
                b = b.header("content-length", total);
            }
            b.body(ChannelBody { rx }.boxed()).unwrap()
        }
    })
    .await;
    (app, release)
}

/// Downloads through `addr` with a hyper client, verifying every byte.
/// Returns (bytes received, response head).
async fn download(addr: SocketAddr, release: &Semaphore) -> (u64, http::response::Parts) {
    let io = TokioIo::new(connect(addr).await);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("/download")
        .header("host", "app")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("download response head")
        .expect("download response");
    assert_eq!(resp.status(), 200);
    let (parts, mut body) = resp.into_parts();
    let mut got = 0u64;
    let mut released = false;
    while let Some(frame) = timeout(Duration::from_secs(15), body.frame())
        .await
        .unwrap_or_else(|_| panic!("download stalled after {got} bytes"))
    {
        let frame = frame.unwrap_or_else(|e| panic!("download failed after {got} bytes: {e}"));
        if let Ok(d) = frame.into_data() {
            assert!(
                pattern_matches(got, &d),
                "download corrupted at offset {got}"
            );
            got += d.len() as u64;
            if !released && got > 0 {
                released = true;
                release.add_permits(1);
            }
        }
    }
    (got, parts)
}

async fn upload_case(chunked: bool) {
    let (app, seen) = upload_app().await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let r = upload(proxy.addr(), BIG, chunked, &seen).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = json(&r);
    assert_eq!(v["received"], BIG, "{v}");
    assert_eq!(v["intact"], true, "upload corrupted: {v}");
    assert_eq!(v["complete"], true, "{v}");
}

async fn download_case(content_length: bool) {
    let (app, release) = download_app(BIG, content_length).await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let (got, parts) = download(proxy.addr(), &release).await;
    assert_eq!(got, BIG);
    if content_length {
        assert_eq!(parts.headers["content-length"], BIG.to_string().as_str());
    } else {
        assert_eq!(parts.headers["transfer-encoding"], "chunked");
        assert!(!parts.headers.contains_key("content-length"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_content_length_streams_without_buffering() {
    upload_case(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_chunked_streams_without_buffering() {
    upload_case(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_content_length_streams_without_buffering() {
    download_case(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_chunked_streams_without_buffering() {
    download_case(false).await;
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in bytes.
fn memory_of(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{name} missing in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_flat_while_streaming_256_mib_each_way() {
    let (up_app, seen) = upload_app().await;
    let (down_app, release) = download_app(BIG, true).await;
    // Two endpoints would make the proxy balance; use one process per direction.
    let up = ProxyProcess::with_endpoints(&[up_app.addr], "").await;
    let down = ProxyProcess::with_endpoints(&[down_app.addr], "").await;
    // Warm up both (first request allocates pools, buffers, thread stacks).
    let small = upload(up.addr, 100_000, false, &seen).await;
    assert_eq!(small.status, 200);
    let (rss_up, _) = memory_of(up.pid());
    let (rss_down, _) = memory_of(down.pid());

    let r = upload(up.addr, BIG, false, &seen).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(json(&r)["received"], BIG);
    assert_eq!(json(&r)["intact"], true);
    let (got, _) = download(down.addr, &release).await;
    assert_eq!(got, BIG);

    let limit = 64 << 20;
    let (_, peak_up) = memory_of(up.pid());
    let (_, peak_down) = memory_of(down.pid());
    let growth_up = peak_up.saturating_sub(rss_up);
    let growth_down = peak_down.saturating_sub(rss_down);
    assert!(
        growth_up < limit,
        "upload of {BIG} bytes grew lifeguard's peak RSS by {growth_up} bytes (from {rss_up} to {peak_up})"
    );
    assert!(
        growth_down < limit,
        "download of {BIG} bytes grew lifeguard's peak RSS by {growth_down} bytes (from {rss_down} to {peak_down})"
    );
}
