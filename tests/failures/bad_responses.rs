//! No usable response head: none within `app.response_timeout`, an
//! unparseable one, an interim or partial one followed by the app's death.

use super::{assert_synthesized_html, get, post, send};
use support::synth::{terminated, terminated_unknown, TCP_PROBES};
use support::*;

use std::time::Duration;
use tokio::time::Instant;

#[tokio::test]
async fn no_response_headers_within_response_timeout_is_504() {
    let stall = ScriptedUpstream::start(Script::Stall).await;
    let proxy = Proxy::with_endpoints(
        &[stall.addr],
        &format!("  response_timeout: 300ms\n{TCP_PROBES}"),
    )
    .await;
    let started = Instant::now();
    let r = send(proxy.addr(), &get("/stall")).await;
    let took = started.elapsed();
    assert_synthesized_html(&r, 504, "lifeguard; error=http_response_timeout");
    assert!(
        took >= Duration::from_millis(300),
        "answered too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "answered too late: {took:?}");

    let r = send(proxy.addr(), &post("/stall", "data")).await;
    assert_eq!(r.status, 504, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(r.header("retry-after"), Some("5"));
    let ps = r.header("proxy-status").unwrap_or_default();
    assert!(
        ps.starts_with("lifeguard; error=http_response_timeout"),
        "{ps}"
    );
    assert_eq!(stall.requests(), 2, "a timed-out GET is not retried either");
}

#[tokio::test]
async fn unparseable_response_is_502_http_protocol_error() {
    let garbage: [&'static [u8]; 3] = [
        b"HELLO I AM NOT HTTP\r\n\r\n",
        b"HTTP/1.1 abc Nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n",
    ];
    for bytes in garbage {
        let (app, proxy) = Proxy::scripted(Script::Raw(bytes), TCP_PROBES).await;
        let r = send(proxy.addr(), &get("/g")).await;
        assert_synthesized_html(&r, 502, "lifeguard; error=http_protocol_error");
        let r = send(proxy.addr(), &post("/g", "x")).await;
        assert_eq!(r.status, 502, "{r:?}");
        assert_eq!(r.header("connection"), Some("close"));
        let ps = r.header("proxy-status").unwrap_or_default();
        assert!(
            ps.starts_with("lifeguard; error=http_protocol_error"),
            "{ps}"
        );
        assert_eq!(app.requests(), 2);
    }
}

#[tokio::test]
async fn interim_or_partial_head_then_death_is_503_not_a_response() {
    let cases: [(Script, &str); 4] = [
        (
            Script::RawThenReset(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "100 then reset",
        ),
        (
            Script::RawThenReset(b"HTTP/1.1 200 OK\r\nContent-Le"),
            "half a head then reset",
        ),
        (
            Script::Raw(b"HTTP/1.1 200 OK\r\nContent-Le"),
            "half a head then FIN",
        ),
        (
            Script::Raw(b"HTTP/1.1 100 Continue\r\n\r\n"),
            "100 then FIN",
        ),
    ];
    for (script, what) in cases {
        let (app, proxy) = Proxy::scripted(script, TCP_PROBES).await;
        match raw_exchange(proxy.addr(), &get("/x"), 10).await {
            RawOutcome::Response(r) => {
                assert_eq!(r.status, 503, "{what}: {r:?}");
                assert_eq!(r.header("connection"), Some("close"), "{what}");
                assert_eq!(r.header("retry-after"), Some("5"), "{what}");
                assert_eq!(
                    r.header("proxy-status"),
                    Some(terminated().as_str()),
                    "{what}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        match raw_exchange(proxy.addr(), &post("/x", "p"), 10).await {
            RawOutcome::Response(r) => {
                assert_eq!(r.status, 503, "{what}: {r:?}");
                assert_eq!(
                    r.header("proxy-status"),
                    Some(terminated_unknown().as_str()),
                    "{what}"
                );
            }
            other => panic!("{what}: {other:?}"),
        }
        // The GET was resent `retry.attempts` (2) times, the POST never.
        assert_eq!(app.requests(), 4, "{what}");
    }
}
