//! Client keep-alive and its timeouts.

use super::{echo_proxy, json, Seen};
use support::raw::{connect, connect_and_exchange, connect_and_send, exchange_on, read_for};

use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let (app, proxy) = echo_proxy("").await;
    let mut s = connect(proxy.addr()).await;
    for i in 0..3 {
        let r = exchange_on(
            &mut s,
            format!("GET /k/{i} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(json(&r)["path"], format!("/k/{i}"));
        assert_ne!(r.header("connection"), Some("close"));
    }
    let r = exchange_on(
        &mut s,
        b"POST /k HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi",
    )
    .await;
    assert_eq!(json(&r)["body_len"], 2);
    assert_eq!(app.hits(), 4);
}

/// The `idle_timeout` or `header_timeout` under test (300ms in the configs).
const TIMEOUT: Duration = Duration::from_millis(300);

/// Asserts that `s` is closed by lifeguard, with no byte, about `expected`
/// after now (never before: timers do not fire early; generously after).
async fn assert_closed_after(s: &mut TcpStream, expected: Duration, what: &str) {
    let (bytes, closed) = read_for(s, expected * 4 + Duration::from_secs(2)).await;
    assert!(
        bytes.is_empty(),
        "{what}: unexpected bytes {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let after = closed.unwrap_or_else(|| panic!("{what}: not closed"));
    assert!(
        after >= expected.mul_f32(0.8) && after < expected * 3 + Duration::from_millis(500),
        "{what}: closed after {after:?}, expected ~{expected:?}"
    );
}

/// Asserts that a stalled head on `s` is answered `408` with `Connection:
/// close` and closed, about `expected` after now.
async fn assert_408_then_closed_after(s: &mut TcpStream, expected: Duration, what: &str) {
    let (bytes, closed) = read_for(s, expected * 4 + Duration::from_secs(2)).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 408 Request Timeout\r\n")
            && text
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
        "{what}: expected a 408, got {text:?}"
    );
    let after = closed.unwrap_or_else(|| panic!("{what}: not closed"));
    assert!(
        after >= expected.mul_f32(0.8) && after < expected * 3 + Duration::from_millis(500),
        "{what}: closed after {after:?}, expected ~{expected:?}"
    );
}

#[tokio::test]
async fn idle_timeout_closes_a_silent_connection() {
    let (_app, proxy) = echo_proxy("client:\n  idle_timeout: 300ms\n").await;
    let mut s = connect(proxy.addr()).await;
    assert_closed_after(&mut s, TIMEOUT, "connection that never sent a byte").await;
}

/// The watchdog in `server/conn.rs` sleeps until the deadline it computed
/// when the connection was accepted (the request head's header_timeout,
/// 10 s by default) and is not re-armed when the request finishes, so an idle
/// keep-alive connection lives until that old deadline: observed ~10 s with
/// idle_timeout 300ms (~1 s with header_timeout 1s).
#[tokio::test]
async fn idle_timeout_closes_an_idle_keep_alive_connection() {
    let (_app, proxy) = echo_proxy("client:\n  idle_timeout: 300ms\n").await;
    let (mut s, r) = connect_and_exchange(proxy.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_closed_after(&mut s, TIMEOUT, "idle keep-alive connection").await;
}

#[tokio::test]
async fn header_timeout_cuts_slow_request_heads() {
    let (app, proxy) = echo_proxy("client:\n  header_timeout: 300ms\n  idle_timeout: 5s\n").await;
    let header_timeout = TIMEOUT;

    // A partial head, then silence.
    let mut s = connect_and_send(proxy.addr(), b"GET /slow HTTP/1.1\r\nHost: a\r\n").await;
    assert_408_then_closed_after(&mut s, header_timeout, "stalled partial head").await;

    // A head trickling in a byte every 50 ms: the clock runs from its first
    // byte, not from the last one. (Read while writing: after its 408,
    // lifeguard reads and discards for a while, so the writes go on.)
    let (mut rd, mut wr) = connect(proxy.addr()).await.into_split();
    let start = Instant::now();
    let trickle = tokio::spawn(timeout(Duration::from_secs(5), async move {
        for b in b"GET /trickle HTTP/1.1\r\nHost: a\r\nX-Slow: 1234567890abcdef\r\n" {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }));
    let (bytes, closed) = read_for(&mut rd, Duration::from_secs(5)).await;
    trickle.abort();
    assert!(closed.is_some(), "trickling head was never cut");
    assert!(
        bytes.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "trickling head allowed for {:?}",
        start.elapsed()
    );

    // A partial second head right after a response on a kept-alive connection.
    let (mut s, r) = connect_and_exchange(proxy.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    s.write_all(b"GET /second HTTP/1.1\r\n").await.unwrap();
    assert_408_then_closed_after(&mut s, header_timeout, "stalled second head").await;

    let slow: Vec<Seen> = app
        .requests()
        .into_iter()
        .filter(|s| s.target != "/")
        .collect();
    assert!(slow.is_empty(), "{slow:?}");
}

/// Same watchdog problem as for idle_timeout: after a request, the watchdog
/// sleeps until the idle deadline and does not wake when a new head starts,
/// so a head started after a pause is cut at the idle deadline (observed ~4 s
/// with idle_timeout 5s, header_timeout 300ms, a 1 s pause), not after
/// header_timeout: slowloris protection is off on kept-alive connections.
#[tokio::test]
async fn header_timeout_cuts_a_slow_head_after_a_keep_alive_pause() {
    let (_app, proxy) = echo_proxy("client:\n  header_timeout: 300ms\n  idle_timeout: 5s\n").await;
    let (mut s, r) = connect_and_exchange(proxy.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    s.write_all(b"GET /second HTTP/1.1\r\n").await.unwrap();
    assert_408_then_closed_after(&mut s, TIMEOUT, "stalled head after a pause").await;
}

#[tokio::test]
async fn idle_connections_outlive_header_timeout() {
    let (app, proxy) = echo_proxy("client:\n  header_timeout: 300ms\n  idle_timeout: 5s\n").await;
    // No byte sent for longer than header_timeout: still open.
    let mut s = connect(proxy.addr()).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = exchange_on(&mut s, b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    // And between requests on a kept-alive connection.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let r = exchange_on(&mut s, b"GET /later HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(app.hits(), 2);
}

/// An HTTP/1 connection idle for a second has its hyper connection (and
/// its buffers) let go; the next bytes build a new one. Whatever comes next
/// is served as on a connection that never rested: a request with a body,
/// a head that arrives in pieces, two pipelined requests in one write.
#[tokio::test]
async fn a_connection_at_rest_serves_what_comes_next() {
    let (app, proxy) = echo_proxy("client:\n  idle_timeout: 10s\n").await;
    let rest = Duration::from_millis(1300);
    let (mut s, r) =
        connect_and_exchange(proxy.addr(), b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(rest).await;
    let r = exchange_on(
        &mut s,
        b"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!((r.status, json(&r)["body_len"].as_u64()), (200, Some(5)));
    tokio::time::sleep(rest).await;
    s.write_all(b"GE").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = exchange_on(&mut s, b"T /c HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!((r.status, json(&r)["path"].as_str()), (200, Some("/c")));
    tokio::time::sleep(rest).await;
    s.write_all(b"GET /d HTTP/1.1\r\nHost: a\r\n\r\nGET /e HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (bytes, _) = read_for(&mut s, Duration::from_millis(1500)).await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(text.contains("/d") && text.contains("/e"), "{text}");
    assert_eq!(app.hits(), 5);
}

/// Letting go of an idle connection's buffers changes none of its clocks:
/// it is still closed `idle_timeout` after its last request ended, and a
/// head that starts after the rest still gets `header_timeout` and a 408.
#[tokio::test]
async fn a_connection_at_rest_keeps_its_timeouts() {
    let idle = Duration::from_millis(2500);
    let (_app, proxy) =
        echo_proxy("client:\n  idle_timeout: 2500ms\n  header_timeout: 300ms\n").await;
    let (mut s, r) = connect_and_exchange(proxy.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_closed_after(&mut s, idle, "idle keep-alive connection at rest").await;

    let (mut s, r) = connect_and_exchange(proxy.addr(), b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    assert_408_then_closed_after(&mut s, TIMEOUT, "slow head after a rest").await;
}
