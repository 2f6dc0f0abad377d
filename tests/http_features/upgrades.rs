//! Upgrade (WebSocket): the 101 and the tunnel, both ways.

use super::App;
use support::client::WEBSOCKET_UPGRADE;
use support::raw::{connect_and_send, read_exact_more, read_for, read_head};
use support::upstream::websocket_accepted;
use support::*;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn websocket_upgrade_passes_through_and_echoes_both_ways() {
    let app_saw: Arc<Mutex<Option<http::HeaderMap>>> = Arc::default();
    let saw = app_saw.clone();
    let app = App::start(move |mut req: Request<Incoming>| {
        let saw = saw.clone();
        async move {
            *saw.lock().unwrap() = Some(req.headers().clone());
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let mut io = TokioIo::new(up);
                let _ = io.write_all(b"hello from app\n").await;
                let mut buf = vec![0u8; 65536];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = io.shutdown().await;
            });
            websocket_accepted()
        }
    })
    .await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let mut s = connect_and_send(proxy.addr(), WEBSOCKET_UPGRADE).await;
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("upgrade"), Some("websocket"), "{head:?}");
    assert!(
        head.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade")),
        "{head:?}"
    );
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    {
        let h = app_saw
            .lock()
            .unwrap()
            .clone()
            .expect("app saw the request");
        assert_eq!(h["upgrade"], "websocket");
        assert!(h["connection"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("upgrade"));
        assert_eq!(h["sec-websocket-key"], "dGhlIHNhbXBsZSBub25jZQ==");
    }

    // App -> client first, then client -> app -> client.
    let greeting = read_exact_more(&mut s, head.rest, 15, Duration::from_secs(5)).await;
    assert_eq!(&greeting[..], b"hello from app\n");
    let (mut rd, mut wr) = s.into_split();
    let blob: Vec<u8> = (0..(1 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let to_send = blob.clone();
    let writer = tokio::spawn(async move {
        wr.write_all(b"ping").await.unwrap();
        wr.write_all(&to_send).await.unwrap();
        wr.shutdown().await.unwrap(); // half-close: the app sees EOF and closes
        wr
    });
    let echoed =
        read_exact_more(&mut rd, Vec::new(), 4 + blob.len(), Duration::from_secs(10)).await;
    assert_eq!(&echoed[..4], b"ping");
    assert!(echoed[4..] == blob[..], "echoed bytes differ");
    let (extra, closed) = read_for(&mut rd, Duration::from_secs(5)).await;
    assert!(extra.is_empty(), "unexpected bytes: {extra:?}");
    assert!(
        closed.is_some(),
        "the tunnel did not close after both sides finished"
    );
    writer.await.unwrap();
    assert_eq!(app.hits(), 1);
}
