//! The invariant: a client connection never closes without a response once
//! lifeguard accepted a complete request.

use super::{assert_synthesized, get, post, request, send};
use support::doomed::{crash_mid_upload_app, path_scripted_app};
use support::synth::{terminated, terminated_unknown, TCP_PROBES};
use support::*;

use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_posts_against_a_resetting_app_always_get_503() {
    let (dead, proxy) = Proxy::scripted(Script::Reset, TCP_PROBES).await;
    for i in 0..50 {
        match raw_exchange(proxy.addr(), &post(&format!("/seq{i}"), "body"), 10).await {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &terminated_unknown()),
            other => panic!("sequential POST {i}: {other:?}"),
        }
    }
    assert_eq!(dead.requests(), 50, "each POST delivered exactly once");

    let addr = proxy.addr();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            tokio::spawn(async move {
                raw_exchange(addr, &post(&format!("/conc{i}"), "body"), 10).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &terminated_unknown()),
            other => panic!("concurrent POST {i}: {other:?}"),
        }
    }
    assert_eq!(dead.requests(), 70);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invariant_every_failure_mode_answers_every_method() {
    let modes: Vec<(Script, u16)> = vec![
        (Script::Reset, 503),
        (Script::Close, 503),
        (Script::Raw(b"SPEAKING NONSENSE\r\n\r\n"), 502),
        (Script::Stall, 504),
    ];
    let methods = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "POST", "PATCH"];
    // GET, HEAD, OPTIONS, PUT and DELETE are resent once (`retry.attempts:
    // 1`) after a reset or close, never after a timeout or a bad response; a
    // budget of 100 % of the requests covers one resend per request.
    let resendable = 5;
    for (script, status) in modes {
        let dead = ScriptedUpstream::start(script.clone()).await;
        let proxy = Proxy::with_endpoints(
            &[dead.addr],
            &format!(
                "  response_timeout: 200ms\n{TCP_PROBES}retry:\n  attempts: 1\n  budget_percent: 100\n"
            ),
        )
        .await;
        let addr = proxy.addr();
        let tasks: Vec<_> = methods
            .iter()
            .flat_map(|m| (0..3).map(move |i| (*m, i)))
            .map(|(m, i)| {
                tokio::spawn(async move {
                    let body = if matches!(m, "POST" | "PUT" | "PATCH") {
                        "data"
                    } else {
                        ""
                    };
                    (
                        m,
                        raw_exchange(addr, &request(m, &format!("/m{i}"), "", body), 10).await,
                    )
                })
            })
            .collect();
        for t in tasks {
            let (m, outcome) = t.await.unwrap();
            match outcome {
                RawOutcome::Response(r) => {
                    assert_eq!(r.status, status, "{script:?} {m}: {r:?}");
                    assert_eq!(r.header("connection"), Some("close"), "{script:?} {m}");
                    assert!(r.header("proxy-status").is_some(), "{script:?} {m}");
                    assert!(r.header("retry-after").is_some(), "{script:?} {m}");
                }
                other => panic!("{script:?} {m}: {other:?}"),
            }
        }
        let resent = if status == 503 { resendable * 3 } else { 0 };
        assert_eq!(dead.requests(), methods.len() * 3 + resent, "{script:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_crash_mid_upload_still_answers_the_client() {
    let (app, crashes, _running) = crash_mid_upload_app(64 * 1024).await;
    let proxy = Proxy::with_endpoints(&[app], TCP_PROBES).await;
    let total = 4 * 1024 * 1024;
    let s = TcpStream::connect(proxy.addr()).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let writer = tokio::spawn(async move {
        let head =
            format!("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: {total}\r\n\r\n");
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'u'; 64 * 1024];
        for _ in 0..total / chunk.len() {
            if wr.write_all(&chunk).await.is_err() {
                return; // lifeguard stopped reading: expected once it answered
            }
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 16384];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    writer.abort();
    assert_eq!(crashes.load(Ordering::SeqCst), 1);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        text.starts_with("HTTP/1.1 503 "),
        "the client must get a 503, got {read:?} after {} bytes: {text:?}",
        got.len()
    );
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("\r\nproxy-status: {}\r\n", terminated_unknown())),
        "{text}"
    );
    assert!(lower.contains("\r\nconnection: close\r\n"), "{text}");
}

#[tokio::test]
async fn keep_alive_client_gets_a_response_when_the_app_dies_on_a_later_request() {
    let (app, count, _running) = path_scripted_app().await;
    // A budget of 100 % of the requests: enough for both GETs' resends.
    let proxy = Proxy::with_endpoints(
        &[app],
        &format!("{TCP_PROBES}retry:\n  budget_percent: 100\n"),
    )
    .await;
    for (method, dying, ps) in [
        ("POST", "/die", terminated_unknown()),
        ("GET", "/die", terminated()),
        ("POST", "/close", terminated_unknown()),
        ("GET", "/close", terminated()),
    ] {
        let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
        for _ in 0..2 {
            s.write_all(&get("/ok")).await.unwrap();
            let r = support::client::read_response(&mut s, 5, false)
                .await
                .response();
            assert_eq!((r.status, r.body_text().as_str()), (200, "ok"), "{r:?}");
        }
        let before = count.load(Ordering::SeqCst);
        s.write_all(&request(
            method,
            dying,
            "",
            if method == "POST" { "p" } else { "" },
        ))
        .await
        .unwrap();
        match support::client::read_response(&mut s, 5, false).await {
            RawOutcome::Response(r) => assert_synthesized(&r, 503, &ps),
            other => panic!("{method} {dying} on a kept-alive connection: {other:?}"),
        }
        // The only endpoint stays up (it accepts connections): the GET is
        // resent to it `retry.attempts` (2) times, the POST never.
        let deliveries = if method == "GET" { 3 } else { 1 };
        assert_eq!(
            count.load(Ordering::SeqCst) - before,
            deliveries,
            "{method} {dying}: delivered {deliveries} time(s)"
        );
    }
    // HTTP/1.0 clients get an answer too.
    let r = send(
        proxy.addr(),
        b"POST /die HTTP/1.0\r\nHost: app.test\r\nContent-Length: 1\r\n\r\nx",
    )
    .await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some(terminated_unknown().as_str())
    );
}
