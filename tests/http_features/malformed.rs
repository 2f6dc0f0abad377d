//! Malformed requests, rejected before they reach the app, and the body
//! size limit.

use super::{echo_proxy, json, send, App};
use support::raw::{connect_and_send, read_for};
use support::upstream::full;
use support::*;

use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Sends `request` and expects `status` from lifeguard itself.
async fn expect_rejected(proxy: &Proxy, request: &[u8], status: u16) -> RawResponse {
    let what = String::from_utf8_lossy(&request[..request.len().min(120)]).into_owned();
    match raw_exchange(proxy.addr(), request, 5).await {
        RawOutcome::Response(r) => {
            assert_eq!(
                r.status,
                status,
                "{what:?} -> {} {}",
                r.status,
                r.body_text()
            );
            r
        }
        other => panic!("{what:?}: expected {status}, got {other:?}"),
    }
}

#[tokio::test]
async fn malformed_requests_get_400_and_never_reach_the_app() {
    let (app, proxy) = echo_proxy("").await;
    let bad: &[&[u8]] = &[
        // Two different Content-Length values.
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        // A Transfer-Encoding that does not end in chunked.
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nhello",
        // Invalid header bytes.
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a\rX-B: b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Bad\x01: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n: no-name\r\n\r\n",
        // Obsolete line folding.
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Fold: a\r\n b\r\n\r\n",
        // Bad request lines.
        b"NOT A REQUEST\r\n\r\n",
        b"GET / HTTP/7.0\r\nHost: a\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for req in bad {
        expect_rejected(&proxy, req, 400).await;
    }
    // Checks of lifeguard's own: answered with the connection closed.
    for req in [
        &b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"[..],
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    ] {
        let r = expect_rejected(&proxy, req, 400).await;
        assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    }
    assert_eq!(app.hits(), 0, "reached the app: {:?}", app.requests());

    // The proxy still works.
    let r = send(&proxy, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(app.hits(), 1);
}

/// Content-Length + Transfer-Encoding, the classic smuggling shape, is
/// normalised as RFC 9112 §6.1 requires of an intermediary: Content-Length
/// removed, the body framed by chunked only, and the client connection closed
/// after the response.
#[tokio::test]
async fn content_length_with_transfer_encoding_is_never_forwarded_ambiguously() {
    let (_app, proxy) = echo_proxy("").await;
    let mut s = connect_and_send(proxy.addr(), b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    let r = support::client::read_response(&mut s, 5, false)
        .await
        .response();
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert!(v["headers"].get("content-length").is_none(), "{v}");
    assert_eq!(v["headers"]["transfer-encoding"], "chunked", "{v}");
    assert_eq!(v["body_len"], 5, "{v}");
    let (_, closed) = read_for(&mut s, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "connection kept open after CL+TE");
}

/// One Content-Length value, twice.
const REPEATED_CONTENT_LENGTH: &[u8] =
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello";

/// A request whose lines end with a bare LF.
const BARE_LF: &[u8] = b"POST /lf HTTP/1.1\nHost: a\nX-Lf: yes\nContent-Length: 3\n\nabc";

/// RFC 9110 §8.6 lets a recipient collapse repeated identical
/// Content-Length values; hyper does, and the app sees one value.
#[tokio::test]
async fn repeated_identical_content_length_is_collapsed() {
    let (_app, proxy) = echo_proxy("").await;
    let r = send(&proxy, REPEATED_CONTENT_LENGTH).await;
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["headers"]["content-length"], "5", "{v}");
    assert_eq!(v["body_len"], 5, "{v}");
}

#[tokio::test]
async fn request_header_size_limit() {
    let (app, proxy) = echo_proxy("").await;

    // 40 KiB of headers, in one header and spread over several: 431.
    let one = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    expect_rejected(&proxy, one.as_bytes(), 431).await;
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..4 {
        many.push_str(&format!("X-Big-{i}: {}\r\n", "b".repeat(10 * 1024)));
    }
    many.push_str("\r\n");
    expect_rejected(&proxy, many.as_bytes(), 431).await;
    assert_eq!(app.hits(), 0);

    // 20 KiB (above Node's 16 KiB default) passes, intact.
    let ok = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "c".repeat(20 * 1024)
    );
    let r = send(&proxy, ok.as_bytes()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        json(&r)["headers"]["x-big"].as_str().map(str::len),
        Some(20 * 1024)
    );
    assert_eq!(app.hits(), 1);
}

/// hyper accepts a bare LF as a line terminator (RFC 9112 §2.2 allows a
/// recipient to) and lifeguard re-serialises the head with CRLF towards the
/// app, so the app parses exactly the headers lifeguard parsed: no parser
/// differential to smuggle through.
#[tokio::test]
async fn bare_lf_line_endings_are_parsed_consistently() {
    let (app, proxy) = echo_proxy("").await;
    let r = send(&proxy, BARE_LF).await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let v = json(&r);
    assert_eq!(v["path"], "/lf");
    assert_eq!(v["headers"]["x-lf"], "yes");
    assert_eq!(v["headers"]["host"], "a");
    assert_eq!(v["body_len"], 3);
    assert_eq!(app.hits(), 1);
}

#[tokio::test]
async fn body_over_max_body_size_gets_413() {
    let (app, proxy) = echo_proxy("client:\n  max_body_size: 1KiB\n").await;

    // Declared too large: refused before anything goes to the app.
    let mut req = b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 2000]);
    let r = expect_rejected(&proxy, &req, 413).await;
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(app.hits(), 0);

    // Exactly at the limit passes.
    let mut req = b"POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 1024\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 1024]);
    let r = send(&proxy, &req).await;
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["body_len"], 1024);
    assert_eq!(app.hits(), 1);

    // Chunked and small: passes.
    let r = raw_exchange(
        proxy.addr(),
        b"POST /ok HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
            .iter()
            .copied()
            .chain([b'y'; 1000])
            .chain(*b"\r\n0\r\n\r\n")
            .collect::<Vec<u8>>()
            .as_slice(),
        5,
    )
    .await
    .response();
    assert_eq!(r.status, 200);
    assert_eq!(json(&r)["body_len"], 1000);
}

/// A chunked body has no declared size: lifeguard finds out while streaming,
/// when the request head (and the first chunks) may already have gone to the
/// app. What must hold: a 413 to the client, and the app never sees a
/// complete-looking (silently truncated) body. Observed: with the whole body
/// arriving at once, the limit trips before the head is flushed and the app
/// sees nothing; when the app is already reading, its body read fails (the
/// app connection is aborted) and the client still gets the 413.
#[tokio::test]
async fn chunked_body_over_max_body_size_gets_413_while_streaming() {
    let outcome: Arc<Mutex<Vec<(usize, bool)>>> = Arc::default();
    let o = outcome.clone();
    let app = App::start(move |req: Request<Incoming>| {
        let o = o.clone();
        async move {
            let mut body = req.into_body();
            let mut n = 0;
            let complete = loop {
                match body.frame().await {
                    None => break true,
                    Some(Ok(f)) => n += f.data_ref().map_or(0, |d| d.len()),
                    Some(Err(_)) => break false,
                }
            };
            o.lock().unwrap().push((n, complete));
            Response::new(full("app answered"))
        }
    })
    .await;
    let proxy = Proxy::with_endpoints(&[app.addr], "client:\n  max_body_size: 1KiB\n").await;
    let mut req = b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        req.extend_from_slice(b"1f4\r\n");
        req.extend_from_slice(&[b'z'; 500]);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = expect_rejected(&proxy, &req, 413).await;
    assert_eq!(r.header("connection"), Some("close"));
    // Whatever reached the app, it never saw a complete body.
    eventually(5, "the app's handler finished", || {
        app.hits() == 0 || !outcome.lock().unwrap().is_empty()
    })
    .await;
    for (n, complete) in outcome.lock().unwrap().iter() {
        assert!(!complete, "the app saw a complete {n}-byte body");
        assert!(*n <= 1024, "the app got {n} bytes, over the limit");
    }

    // A body that crosses the limit after the app has started reading it.
    let before = app.hits();
    let mut s = connect_and_send(
        proxy.addr(),
        b"POST /slow-big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1f4\r\n",
    )
    .await;
    s.write_all(&[b'z'; 500]).await.unwrap();
    s.write_all(b"\r\n").await.unwrap();
    eventually(5, "the app has the request", || app.hits() == before + 1).await;
    for _ in 0..3 {
        s.write_all(b"1f4\r\n").await.unwrap();
        s.write_all(&[b'z'; 500]).await.unwrap();
        s.write_all(b"\r\n").await.unwrap();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let r = support::client::read_response(&mut s, 5, false)
        .await
        .response();
    assert_eq!(r.status, 413, "{}", r.body_text());
    assert_eq!(r.header("connection"), Some("close"));
    eventually(5, "the app's handler finished", || {
        outcome.lock().unwrap().len() == before + 1
    })
    .await;
    let (n, complete) = *outcome.lock().unwrap().last().unwrap();
    assert!(!complete, "the app saw a complete {n}-byte body");
    assert!(n <= 1024, "the app got {n} bytes, over the limit");
}
