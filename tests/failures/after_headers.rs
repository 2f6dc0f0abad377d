//! The app died after its response headers went out: the client sees a
//! truncated body, never a complete-looking one.

use super::{get, send};
use support::synth::TCP_PROBES;
use support::*;

/// A response head and part of a body that Content-Length says is 100 bytes.
const CONTENT_LENGTH_CUT: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\nhello";
/// A chunked response head and one chunk, no terminating chunk.
const CHUNKED_CUT: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
/// A close-delimited response head and some body.
const CLOSE_DELIMITED_CUT: &[u8] =
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\npartial";

/// `GET /partial` through a proxy (with `extra`) to an app that writes
/// `bytes`, then resets; the app and the response.
async fn cut_response(bytes: &'static [u8], extra: &str) -> (ScriptedUpstream, RawResponse) {
    let (app, proxy) = Proxy::scripted(Script::RawThenReset(bytes), extra).await;
    let r = send(proxy.addr(), &get("/partial")).await;
    (app, r)
}

#[tokio::test]
async fn death_after_response_headers_truncates_content_length_body() {
    let (app, r) = cut_response(CONTENT_LENGTH_CUT, TCP_PROBES).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("100"), "{r:?}");
    assert!(r.truncated, "must look truncated, not complete: {r:?}");
    assert!(r.body.len() < 100, "{r:?}");
    assert!(b"hello".starts_with(&r.body), "{r:?}");
    assert_eq!(app.requests(), 1, "never retried once the response started");
}

#[tokio::test]
async fn death_after_response_headers_truncates_chunked_body() {
    let (app, r) = cut_response(CHUNKED_CUT, TCP_PROBES).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked")),
        "{r:?}"
    );
    assert!(r.truncated, "terminating chunk must be missing: {r:?}");
    assert!(b"hello".starts_with(&r.body), "{r:?}");
    assert_eq!(app.requests(), 1);
}

#[tokio::test]
async fn death_after_response_headers_truncates_close_delimited_body() {
    // A close-delimited body ended by a reset is not complete: lifeguard must
    // not turn it into a complete-looking response.
    let (_app, r) = cut_response(CLOSE_DELIMITED_CUT, "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.truncated, "must look truncated, not complete: {r:?}");
    assert!(b"partial".starts_with(&r.body), "{r:?}");
}
