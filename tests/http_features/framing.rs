//! 100-continue, HEAD, and chunked response trailers.

use super::{echo_proxy, json, App};
use support::raw::{connect_and_send, exchange_on, find, read_for, read_head};
use support::upstream::full;
use support::*;

use http::Response;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

#[tokio::test]
async fn expect_100_continue() {
    let (_app, proxy) = echo_proxy("").await;
    let mut s = connect_and_send(
        proxy.addr(),
        b"POST /c HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    )
    .await;
    // The client waits for 100 before sending the body (no fallback timer).
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    assert_eq!(head.status, 100, "{head:?}");
    assert!(head.rest.is_empty());
    s.write_all(b"hello").await.unwrap();
    let r = support::client::read_response(&mut s, 5, false)
        .await
        .response();
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["body_len"], 5);
    assert_eq!(json(&r)["method"], "POST");
}

#[tokio::test]
async fn head_response_has_content_length_and_no_body() {
    let app = App::start(|_req| async { Response::new(full(vec![b'x'; 1234])) }).await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let mut s = connect_and_send(proxy.addr(), b"HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1234"), "{head:?}");
    let (extra, closed) = read_for(&mut s, Duration::from_millis(300)).await;
    assert!(
        head.rest.is_empty() && extra.is_empty(),
        "HEAD response carried a body: {:?}{:?}",
        head.rest,
        extra
    );
    assert!(closed.is_none(), "connection closed after HEAD");
    // The connection's framing is intact: a GET on it gets the full body.
    let r = exchange_on(&mut s, b"GET /h HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 1234);
    assert_eq!(app.requests()[0].method, "HEAD");
}

/// Reads the rest of a chunked body (after its head) up to and including the
/// empty line that ends the trailer section; returns it as text.
async fn read_chunked_raw(s: &mut TcpStream, mut body: Vec<u8>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let complete = |b: &[u8]| {
        find(b, b"0\r\n")
            .is_some_and(|z| (z == 0 || b[z - 1] == b'\n') && find(&b[z..], b"\r\n\r\n").is_some())
    };
    while !complete(&body) {
        let mut chunk = [0u8; 4096];
        let n = timeout_at(deadline, s.read(&mut chunk))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "incomplete chunked body: {:?}",
                    String::from_utf8_lossy(&body)
                )
            })
            .unwrap();
        assert!(
            n > 0,
            "closed mid-body: {:?}",
            String::from_utf8_lossy(&body)
        );
        body.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&body).to_ascii_lowercase()
}

/// hyper writes response trailers on HTTP/1.1 only to a client that sent
/// `TE: trailers`, and only the fields the `Trailer` header declares;
/// lifeguard forwards both headers, so the app's trailer arrives. A client
/// that did not ask for trailers gets the body without them.
#[tokio::test]
async fn chunked_response_trailers_reach_a_client_that_accepts_them() {
    let (_app, proxy) = Proxy::scripted(Script::Raw(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n",
    ), "").await;

    let mut s = connect_and_send(
        proxy.addr(),
        b"GET /t HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n",
    )
    .await;
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    assert_eq!(head.header("trailer"), Some("x-checksum"));
    let text = read_chunked_raw(&mut s, head.rest).await;
    assert!(text.starts_with("5\r\nhello\r\n0\r\n"), "{text:?}");
    assert!(
        text.contains("\r\nx-checksum: abc\r\n"),
        "trailer not forwarded: {text:?}"
    );

    let mut s = connect_and_send(proxy.addr(), b"GET /t HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let head = read_head(&mut s, Duration::from_secs(5)).await;
    assert_eq!(head.status, 200);
    let text = read_chunked_raw(&mut s, head.rest).await;
    assert_eq!(text, "5\r\nhello\r\n0\r\n\r\n");
}
