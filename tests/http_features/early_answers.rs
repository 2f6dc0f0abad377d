//! Early app answers: the app answers before it has read the upload.

use super::{pattern_at, FRAME};
use support::raw::{connect, find, read_exact_more, read_head};
use support::*;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// A raw app that answers 413 as soon as it has a request head, without
/// reading the body, then closes. Returns (address, client requests seen,
/// the app).
async fn early_413_app() -> (SocketAddr, Arc<AtomicUsize>, RawApp) {
    let (app, seen) = RawApp::counting(|mut s, seen| {
        async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            while find(&buf, b"\r\n\r\n").is_none() {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            if buf.starts_with(b"GET /health ") {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .await;
                return;
            }
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(
                    b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large",
                )
                .await;
            let _ = s.shutdown().await;
            // Give the response a moment on the wire, then close with the
            // upload unread (the kernel resets the connection).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    (app.addr, seen, app)
}

#[tokio::test]
async fn app_answering_early_reaches_the_client() {
    let (addr, seen, task) = early_413_app().await;
    let proxy = Proxy::with_endpoints(&[addr], "").await;
    let total: u64 = 64 << 20;
    let s = connect(proxy.addr()).await;
    let (mut rd, mut wr) = s.into_split();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = tokio::spawn(async move {
        let head = format!("POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: {total}\r\n\r\n");
        if wr.write_all(head.as_bytes()).await.is_err() {
            return 0;
        }
        let mut sent = 0u64;
        while sent < total && !stop2.load(Ordering::SeqCst) {
            let n = FRAME.min((total - sent) as usize);
            if wr.write_all(&pattern_at(sent, n)).await.is_err() {
                break;
            }
            sent += n as u64;
        }
        sent
    });
    let head = read_head(&mut rd, Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    assert_eq!(head.status, 413, "{head:?}");
    let body = read_exact_more(&mut rd, head.rest, 9, Duration::from_secs(5)).await;
    assert_eq!(&body[..9], b"too large");
    let sent = timeout(Duration::from_secs(10), writer)
        .await
        .expect("writer ends")
        .unwrap();
    assert!(sent < total, "the whole upload was sent before the answer");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    drop(task);
}
