//! SIGTERM and SIGINT under load: readiness off at once, serving through
//! `drain.delay`, then closing, and the exit when idle or at
//! `drain.timeout`.

use super::{
    connect_refused, get, log_with_message, phase, request_on, signal_until_phase, slow_proxy,
    spawn_get, start_proxy,
};
use serde_json::Value;
use std::time::Duration;
use support::admin::wait_inflight;
use support::admin::wait_metric;
use support::client::read_response;
use support::raw::read_to_end;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[tokio::test]
async fn sigterm_serves_through_the_delay_then_closes_and_exits_when_idle() {
    let app = TestUpstream::slow().await;
    let delay = Duration::from_millis(800);
    let mut p = start_proxy(app.addr, "drain:\n  delay: 800ms\n  timeout: 8s\n").await;
    let (addr, admin) = (p.addr, p.admin);

    // Two keep-alive connections with one request behind them: one stays
    // idle, one will carry a request across the close.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let r = request_on(&mut idle, "/warm/idle").await;
    assert_eq!(r.status, 200);
    assert_ne!(r.header("connection"), Some("close"), "{r:?}");
    let mut busy = TcpStream::connect(addr).await.unwrap();
    let r = request_on(&mut busy, "/warm/busy").await;
    assert_eq!(r.status, 200);
    assert_ne!(r.header("connection"), Some("close"), "{r:?}");

    // Three long requests in flight, each on its own connection.
    let long: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(async move {
                let req = get(&format!("/slow/1500?n={i}"));
                let out = raw_exchange(addr, req.as_bytes(), 10).await;
                (out, Instant::now())
            })
        })
        .collect();
    wait_inflight(admin, 3).await;

    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let idle_closed = tokio::spawn(async move {
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut b)).await;
        (r.map(|r| r.map_err(|e| e.kind())), t0.elapsed())
    });

    // 1) Readiness off at once.
    eventually_async(
        delay / 2,
        "/readyz 503 right after SIGTERM",
        move || async move { admin_get(admin, "/readyz").await.0 == 503 },
    )
    .await;
    let (_, why) = admin_get(admin, "/readyz").await;
    assert!(why.contains("draining"), "/readyz body: {why}");
    assert_eq!(phase(admin).await, "draining");

    // 2) Still accepting and serving during drain.delay: a burst of new
    //    connections, and a long request on the busy keep-alive connection.
    let burst: Vec<_> = (0..10)
        .map(|i| {
            tokio::spawn(async move {
                let mut s = TcpStream::connect(addr)
                    .await
                    .expect("accepting during drain.delay");
                s.write_all(get(&format!("/burst/{i}")).as_bytes())
                    .await
                    .unwrap();
                read_response(&mut s, 5, false).await
            })
        })
        .collect();
    busy.write_all(get("/slow/1000").as_bytes()).await.unwrap();
    for b in burst {
        let r = b.await.unwrap().response();
        assert_eq!(r.status, 200, "{r:?}");
        assert!(r.body_text().starts_with("done /burst/"), "{r:?}");
    }
    let served = t0.elapsed();
    assert!(
        served < delay,
        "the burst took {served:?}: too slow to tell whether drain.delay was honoured"
    );

    // 3) After the delay: new connections refused (a connect-only probe, so
    //    a probe that races the close sends nothing that could go unanswered).
    eventually_async(
        delay + Duration::from_secs(2),
        "new connections refused",
        move || async move { connect_refused(&TcpStream::connect(addr).await) },
    )
    .await;
    let refused_at = t0.elapsed();
    assert!(
        refused_at >= delay,
        "connections refused {refused_at:?} after SIGTERM, before drain.delay ({delay:?})"
    );
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "lifeguard exited with requests in flight"
    );

    // The idle keep-alive connection was closed by lifeguard, after the delay.
    let (read, closed_at) = idle_closed.await.unwrap();
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "idle keep-alive connection not closed at drain: {read:?}"
    );
    assert!(
        closed_at >= delay && closed_at < delay + Duration::from_secs(1),
        "idle keep-alive connection closed {closed_at:?} after SIGTERM (drain.delay {delay:?})"
    );

    // The request in flight on the busy keep-alive connection completes,
    // with `Connection: close`, and then the connection closes.
    let r = read_response(&mut busy, 5, false).await.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body_text(), "done /slow/1000");
    assert!(!r.truncated);
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    let rest = read_to_end(&mut busy, Duration::from_secs(3))
        .await
        .expect("busy connection closed after its last response");
    assert!(rest.is_empty(), "bytes after the last response: {rest:?}");

    // Long requests in flight all complete, told to close.
    let mut last_done: Option<Instant> = None;
    for (i, h) in long.into_iter().enumerate() {
        let (out, done) = h.await.unwrap();
        let r = match out {
            RawOutcome::Response(r) => r,
            other => panic!("long request {i} got no response: {other:?}"),
        };
        assert_eq!(r.status, 200, "{r:?}");
        assert!(!r.truncated, "{r:?}");
        assert_eq!(r.body_text(), "done /slow/1500");
        assert_eq!(r.header("connection"), Some("close"), "{r:?}");
        last_done = last_done.max(Some(done));
    }

    // 4) Exit 0 as soon as nothing is in flight, far from drain.timeout.
    let st = p
        .wait_exit(5)
        .await
        .expect("lifeguard exits after the drain");
    let exited = Instant::now();
    assert_eq!(st.code(), Some(0), "{st:?}\n{:?}", p.logs());
    let after_last = exited.saturating_duration_since(last_done.unwrap());
    assert!(
        after_last < Duration::from_secs(1),
        "exited {after_last:?} after the last request finished"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(4),
        "drain took {:?}, with drain.timeout 8s and nothing in flight after ~1.5s",
        t0.elapsed()
    );
    let drained = log_with_message(&p, "drained").expect("`drained` log line");
    assert_eq!(drained["outcome"], "Clean", "{drained}");
    assert!(
        log_with_message(&p, "drain.timeout reached with requests in flight").is_none(),
        "{:?}",
        p.logs()
    );
}

#[tokio::test]
async fn request_outliving_drain_timeout_is_logged_and_the_process_exits_at_the_deadline() {
    // A deadline counted from the end of the delay would fall at 2.1 s.
    let (app, mut p) = slow_proxy("drain:\n  delay: 600ms\n  timeout: 1500ms\n").await;
    let stuck = spawn_get(p.addr, "/slow/30000", 40);
    wait_inflight(p.admin, 1).await;

    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let st = p
        .wait_exit(6)
        .await
        .expect("lifeguard exits at drain.timeout");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "exited {took:?} after SIGTERM, before drain.timeout (1.5 s)"
    );
    assert!(
        took < Duration::from_millis(1950),
        "exited {took:?} after SIGTERM: drain.timeout (1.5 s, counted from the start of the drain, delay 600ms included) overrun"
    );
    assert_eq!(st.code(), Some(0), "{st:?}");

    let warn = log_with_message(&p, "drain.timeout reached with requests in flight")
        .unwrap_or_else(|| panic!("no drain.timeout log line: {:?}", p.logs()));
    assert_eq!(warn["in_flight"], 1, "{warn}");
    let left: Vec<Value> = serde_json::from_str(warn["requests"].as_str().expect("requests"))
        .unwrap_or_else(|e| panic!("requests field is not a JSON list: {e}: {warn}"));
    assert_eq!(left.len(), 1, "{warn}");
    assert_eq!(left[0]["method"], "GET");
    assert_eq!(left[0]["path"], "/slow/30000");
    assert_eq!(left[0]["endpoint"], app.addr.to_string());
    assert!(left[0]["age_ms"].as_u64().unwrap() >= 1400, "{warn}");
    let drained = log_with_message(&p, "drained").expect("`drained` log line");
    assert!(
        drained["outcome"]
            .as_str()
            .is_some_and(|o| o.contains("Deadline") && o.contains("left_in_flight: 1")),
        "{drained}"
    );
    stuck.abort();
}

#[tokio::test]
async fn second_signal_during_the_drain_exits_at_once_with_code_1() {
    let (_app, mut p) = slow_proxy("drain:\n  delay: 5s\n  timeout: 10s\n").await;
    let inflight_req = spawn_get(p.addr, "/slow/20000", 30);
    wait_inflight(p.admin, 1).await;

    p.signal(libc::SIGINT);
    let admin = p.admin;
    eventually_async(
        Duration::from_secs(2),
        "drain started by SIGINT",
        move || async move { admin_get(admin, "/readyz").await.0 == 503 },
    )
    .await;
    assert!(p.child.try_wait().unwrap().is_none(), "still draining");

    let t = Instant::now();
    p.signal(libc::SIGTERM);
    let st = p
        .wait_exit(3)
        .await
        .expect("the second signal ends the process");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "second signal took {:?} to end the process",
        t.elapsed()
    );
    assert_eq!(st.code(), Some(1), "{st:?}");
    inflight_req.abort();
}

#[tokio::test]
async fn sigint_with_nothing_in_flight_exits_0_right_after_the_delay() {
    let (_app, mut p) = slow_proxy("drain:\n  delay: 400ms\n  timeout: 10s\n").await;
    let admin = p.admin;
    let t0 = Instant::now();
    signal_until_phase(&p, libc::SIGINT, "draining", Duration::from_millis(300)).await;
    let (code, body) = admin_get(admin, "/readyz").await;
    assert_eq!((code, body.trim()), (503, "not ready: draining"));
    assert_eq!(admin_get(admin, "/livez").await.0, 200);

    let st = p.wait_exit(5).await.expect("exits");
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(
        took >= Duration::from_millis(400),
        "exited {took:?} after SIGINT, before drain.delay (400ms)"
    );
    assert!(
        took < Duration::from_millis(1400),
        "exited {took:?} after SIGINT with nothing in flight (drain.delay 400ms, timeout 10s)"
    );
}

#[tokio::test]
async fn drain_timeout_shorter_than_the_delay_ends_the_drain_at_the_timeout() {
    let (_app, mut p) = slow_proxy("drain:\n  delay: 3s\n  timeout: 800ms\n").await;
    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let st = p.wait_exit(5).await.expect("exits");
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_millis(1500),
        "exited {took:?} after SIGTERM with drain.delay 3s and drain.timeout 800ms"
    );
}

/// A client that connected but has not sent a request has nothing in flight:
/// like an idle keep-alive connection it must be closed when lifeguard stops
/// accepting, not hold the process until drain.timeout.
#[tokio::test]
async fn connection_that_never_sent_a_request_does_not_hold_the_drain() {
    let (_app, mut p) = slow_proxy("drain:\n  delay: 200ms\n  timeout: 4s\n").await;
    let mut silent = TcpStream::connect(p.addr).await.unwrap();
    let admin = p.admin;
    // lifeguard accepted the silent connection.
    wait_metric(admin, "lifeguard_client_connections_open", 1.0).await;

    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let st = p.wait_exit(8).await.expect("exits");
    let took = t0.elapsed();
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(
        took < Duration::from_millis(1500),
        "exit took {took:?} (drain.delay 200ms, drain.timeout 4s): a connection without any request held the drain until the deadline\n{:?}",
        p.logs()
    );
    let mut b = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(1), silent.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
}
