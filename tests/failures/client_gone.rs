//! The client went away mid-request, mid-upload or mid-download: the app
//! connection is closed and the request leaves `/admin/inflight`.

use super::{get, inflight_until, send};
use support::admin::inflight;
use support::upstream::reset;
use support::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw app: requests to `/hang...` are held (never answered; `/hang-body...`
/// gets response headers and the start of a long body) until the peer closes
/// the connection, which is counted; anything else gets 200 "ok".
struct HangingApp {
    addr: SocketAddr,
    /// Request heads of `/hang...` requests received.
    heads: Arc<AtomicUsize>,
    /// `/hang...` connections the peer (lifeguard) closed.
    closed: Arc<AtomicUsize>,
    _app: RawApp,
}

impl HangingApp {
    /// The app, a proxy in front of it, and a client connection on which
    /// `request` was sent.
    async fn with_client(request: &[u8]) -> (HangingApp, Proxy, TcpStream) {
        let app = HangingApp::start().await;
        let proxy = Proxy::with_endpoints(&[app.addr], "").await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(request).await.unwrap();
        (app, proxy, client)
    }

    /// Waits until the `/hang...` request head reached the app.
    async fn wait_head(&self, what: &str) {
        let heads = self.heads.clone();
        eventually(5, what, || heads.load(Ordering::SeqCst) == 1).await;
    }

    /// Waits until lifeguard closed the app connection and the request left
    /// `/admin/inflight`.
    async fn wait_cancelled(&self, proxy: &Proxy) {
        let closed = self.closed.clone();
        eventually(5, "lifeguard closes the app connection", || {
            closed.load(Ordering::SeqCst) == 1
        })
        .await;
        inflight_until(proxy, "/admin/inflight empty", |l| l.is_empty()).await;
    }

    async fn start() -> HangingApp {
        let heads = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (h, c) = (heads.clone(), closed.clone());
        let app = RawApp::start(move |s| serve_hanging(s, h.clone(), c.clone())).await;
        HangingApp {
            addr: app.addr,
            heads,
            closed,
            _app: app,
        }
    }
}

async fn serve_hanging(mut s: TcpStream, heads: Arc<AtomicUsize>, closed: Arc<AtomicUsize>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        if path.starts_with("/hang") {
            heads.fetch_add(1, Ordering::SeqCst);
            if path.starts_with("/hang-body") {
                // Response headers and a little of a long body, then nothing.
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nfirst-part")
                    .await;
            }
            // Hold the request; read (and discard) until the peer closes.
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

#[tokio::test]
async fn client_gone_mid_request_cancels_upstream_and_clears_inflight() {
    let (app, proxy, client) = HangingApp::with_client(&get("/hang/get")).await;
    app.wait_head("request reaches the app").await;
    inflight_until(&proxy, "the request listed in flight", |l| {
        l.len() == 1 && l[0]["path"] == "/hang/get" && l[0]["method"] == "GET"
    })
    .await;

    drop(client); // the client goes away
    app.wait_cancelled(&proxy).await;
    assert_eq!(
        inflight(proxy.admin()).await,
        Vec::<serde_json::Value>::new()
    );

    // Still serving.
    let r = send(proxy.addr(), &get("/after")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), "ok");
}

#[tokio::test]
async fn client_gone_mid_upload_cancels_upstream_and_clears_inflight() {
    let upload = b"POST /hang/upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: 100000\r\n\r\nfirst-bytes";
    let (app, proxy, client) = HangingApp::with_client(upload).await;
    app.wait_head("upload head reaches the app").await;
    inflight_until(&proxy, "the upload listed in flight", |l| {
        l.len() == 1 && l[0]["path"] == "/hang/upload" && l[0]["method"] == "POST"
    })
    .await;

    reset(client); // the client goes away abruptly mid-body
    app.wait_cancelled(&proxy).await;

    let r = send(proxy.addr(), &get("/after")).await;
    assert_eq!(r.status, 200, "{r:?}");
}

#[tokio::test]
async fn client_gone_mid_download_cancels_upstream_and_clears_inflight() {
    let (app, proxy, mut client) = HangingApp::with_client(&get("/hang-body")).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(10).any(|w| w == b"first-part") {
        let n = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("response start within 5 s")
            .unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200 "), "{got:?}");

    drop(client); // the client goes away mid-download
    app.wait_cancelled(&proxy).await;
    let r = send(proxy.addr(), &get("/after")).await;
    assert_eq!(r.status, 200, "{r:?}");
}
