//! A WebSocket tunnel at drain: a 1001 close frame, at a frame boundary.

use super::{signal_until_phase, start_proxy};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::client::WEBSOCKET_UPGRADE;
use support::raw::{read_at_least, read_to_end};
use support::upstream::{full, websocket_accepted};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn websocket_gets_a_1001_close_frame_at_a_frame_boundary() {
    // The app sends the first half of a 10-byte binary frame, then the rest
    // only when told, then records what it receives.
    let release = Arc::new(tokio::sync::Notify::new());
    let app_got: Arc<Mutex<Vec<u8>>> = Arc::default();
    let (rel, got) = (release.clone(), app_got.clone());
    let app = TestUpstream::start(move |mut req: Request<Incoming>| {
        let (release, got) = (rel.clone(), got.clone());
        async move {
            if req.uri().path() != "/ws" {
                return Response::new(full("ok"));
            }
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let mut io = TokioIo::new(up);
                let _ = io.write_all(&[0x82, 0x0A, 1, 2, 3, 4, 5]).await;
                release.notified().await;
                let _ = io.write_all(&[6, 7, 8, 9, 10]).await;
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => got.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
                let _ = io.shutdown().await;
            });
            websocket_accepted()
        }
    })
    .await;
    let mut p = start_proxy(app.addr, "drain:\n  delay: 0s\n  timeout: 5s\n").await;

    let mut s = TcpStream::connect(p.addr).await.unwrap();
    s.write_all(WEBSOCKET_UPGRADE).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return i + 4;
            }
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the 101: {buf:?}");
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("101 head");
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let mut data = buf[head_end..].to_vec();
    read_at_least(&mut s, &mut data, 7, "first half of the app's frame").await;
    assert_eq!(data, [0x82, 0x0A, 1, 2, 3, 4, 5]);

    signal_until_phase(&p, libc::SIGTERM, "closing", Duration::from_secs(2)).await;
    // The app->client direction is mid-frame: a close frame now would corrupt
    // the stream. Give a wrong implementation the time to show it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.notify_one();
    read_at_least(
        &mut s,
        &mut data,
        16,
        "rest of the frame and the close frame",
    )
    .await;
    assert_eq!(
        data,
        [0x82, 0x0A, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0x88, 0x02, 0x03, 0xE9],
        "expected the frame completed, then close 1001 (Going Away)"
    );

    // The app got a masked close 1001 too.
    let got = app_got.clone();
    eventually_async(
        Duration::from_secs(2),
        "the app receives a close frame",
        move || {
            let n = got.lock().unwrap().len();
            async move { n >= 8 }
        },
    )
    .await;
    let to_app = app_got.lock().unwrap()[..8].to_vec();
    assert_eq!(
        &to_app[..2],
        &[0x88, 0x82],
        "close frame to the app: {to_app:?}"
    );
    let payload = [to_app[6] ^ to_app[2], to_app[7] ^ to_app[3]];
    assert_eq!(payload, [0x03, 0xE9], "close code to the app: {to_app:?}");

    // Answer the close; the tunnel ends and the process exits 0.
    s.write_all(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE9 ^ 2])
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let rest = read_to_end(&mut s, Duration::from_secs(3))
        .await
        .expect("tunnel closed");
    assert!(rest.is_empty(), "bytes after the close frame: {rest:?}");
    let st = p.wait_exit(5).await.expect("exits");
    assert_eq!(st.code(), Some(0), "{st:?}");
}
