//! Drain: the process lifecycle from SIGTERM/SIGINT, `/admin/drain` or
//! `lifeguard drain` to exit. Real child processes, real signals, real
//! sockets: `/readyz` turns 503 at once, lifeguard keeps accepting for
//! `drain.delay`, then refuses new connections, closes keep-alive connections
//! (`Connection: close`, HTTP/2 GOAWAY, WebSocket close frame), lets requests
//! in flight finish, and exits as soon as nothing is left — or at
//! `drain.timeout`, counted from the start of the drain, naming what was left.

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::admin::{status_json, wait_inflight};
use support::client::{read_response, WEBSOCKET_UPGRADE};
use support::h2::{
    h2_frame, h2_read_all, H2Frame, H2_DATA, H2_GOAWAY, H2_HEADERS, H2_PREFACE, H2_SETTINGS,
};
use support::process::binary;
use support::raw::{read_at_least, read_to_end};
use support::upstream::{full, websocket_accepted};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A child-process lifeguard in front of `app`, ready (its first probe passed).
async fn start_proxy(app: SocketAddr, extra: &str) -> ProxyProcess {
    let p = ProxyProcess::start(&format!("app:\n  endpoints: [\"{app}\"]\n{extra}")).await;
    wait_ready(p.admin).await;
    p
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

async fn phase(admin: SocketAddr) -> String {
    status_json(admin).await["phase"]
        .as_str()
        .expect("phase")
        .to_owned()
}

/// One request on an open (keep-alive) connection.
async fn request_on(s: &mut TcpStream, path: &str) -> RawResponse {
    s.write_all(get(path).as_bytes()).await.unwrap();
    read_response(s, 10, false).await.response()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn log_with_message(p: &ProxyProcess, message: &str) -> Option<Value> {
    p.json_logs()
        .into_iter()
        .find(|v| v["message"].as_str() == Some(message))
}

fn connect_refused(r: &std::io::Result<TcpStream>) -> bool {
    matches!(r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
}

// ---------------------------------------------------------------------------
// SIGTERM under load
// ---------------------------------------------------------------------------

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
    let app = TestUpstream::slow().await;
    // A deadline counted from the end of the delay would fall at 2.1 s.
    let mut p = start_proxy(app.addr, "drain:\n  delay: 600ms\n  timeout: 1500ms\n").await;
    let addr = p.addr;
    let stuck = tokio::spawn(async move {
        let req = get("/slow/30000");
        raw_exchange(addr, req.as_bytes(), 40).await
    });
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
    let app = TestUpstream::slow().await;
    let mut p = start_proxy(app.addr, "drain:\n  delay: 5s\n  timeout: 10s\n").await;
    let addr = p.addr;
    let inflight_req = tokio::spawn(async move {
        let req = get("/slow/20000");
        raw_exchange(addr, req.as_bytes(), 30).await
    });
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
    let app = TestUpstream::slow().await;
    let mut p = start_proxy(app.addr, "drain:\n  delay: 400ms\n  timeout: 10s\n").await;
    let admin = p.admin;
    let t0 = Instant::now();
    p.signal(libc::SIGINT);
    eventually_async(
        Duration::from_millis(300),
        "phase draining",
        move || async move { phase(admin).await == "draining" },
    )
    .await;
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
    let app = TestUpstream::slow().await;
    let mut p = start_proxy(app.addr, "drain:\n  delay: 3s\n  timeout: 800ms\n").await;
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
    let app = TestUpstream::slow().await;
    let mut p = start_proxy(app.addr, "drain:\n  delay: 200ms\n  timeout: 4s\n").await;
    let mut silent = TcpStream::connect(p.addr).await.unwrap();
    let admin = p.admin;
    eventually_async(
        Duration::from_secs(3),
        "lifeguard accepted the silent connection",
        move || async move {
            admin_get(admin, "/metrics")
                .await
                .1
                .lines()
                .any(|l| l == "lifeguard_client_connections_open 1")
        },
    )
    .await;

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

// ---------------------------------------------------------------------------
// `lifeguard drain` and /admin/drained
// ---------------------------------------------------------------------------

#[tokio::test]
async fn drain_command_drains_a_running_process_which_stays_up_until_sigterm() {
    let app = TestUpstream::slow().await;
    let port = free_port();
    let mut p = ProxyProcess::start(&format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:{port}\"\napp:\n  endpoints: [\"{}\"]\ndrain:\n  delay: 200ms\n  timeout: 5s\n",
        app.addr
    ))
    .await;
    wait_ready(p.admin).await;
    let (addr, admin) = (p.addr, p.admin);
    let slow = tokio::spawn(async move {
        let req = get("/slow/1000");
        raw_exchange(addr, req.as_bytes(), 10).await
    });
    wait_inflight(admin, 1).await;

    let t = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::process::Command::new(binary())
            .arg("drain")
            .arg("--config")
            .arg(&p.config_path)
            .output(),
    )
    .await
    .expect("`lifeguard drain` returns")
    .expect("run `lifeguard drain`");
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("lifeguard drain: started"), "{stderr}");
    assert!(stderr.contains("\"drained\": true"), "{stderr}");
    assert!(
        took >= Duration::from_millis(600),
        "`lifeguard drain` returned after {took:?}, while a request was in flight"
    );

    let r = slow.await.unwrap().response();
    assert_eq!((r.status, r.body_text().as_str()), (200, "done /slow/1000"));

    // Drained, but still up (a signal ends it), refusing new connections.
    let st = status_json(admin).await;
    assert_eq!(st["phase"], "stopped", "{st}");
    assert_eq!(st["drain_outcome"]["result"], "clean", "{st}");
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
    assert_eq!(admin_get(admin, "/livez").await.0, 200);
    assert!(connect_refused(&TcpStream::connect(addr).await));
    // Stays up: a drained process that exited on its own would be restarted.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "lifeguard exited after a `lifeguard drain`, without a signal"
    );

    let t = Instant::now();
    p.signal(libc::SIGTERM);
    let st = p.wait_exit(3).await.expect("exits on SIGTERM");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(
        t.elapsed() < Duration::from_millis(700),
        "already drained, but exit took {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn drain_command_no_wait_returns_at_once_and_fails_clearly_without_a_lifeguard() {
    let app = TestUpstream::slow().await;
    let port = free_port();
    // A wildcard admin address is reached over loopback by `lifeguard drain`.
    let mut p = ProxyProcess::start(&format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"0.0.0.0:{port}\"\napp:\n  endpoints: [\"{}\"]\ndrain:\n  delay: 2s\n  timeout: 5s\n",
        app.addr
    ))
    .await;
    let admin = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(admin).await;
    let t = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::process::Command::new(binary())
            .args(["drain", "--no-wait", "--config"])
            .arg(&p.config_path)
            .output(),
    )
    .await
    .expect("`lifeguard drain --no-wait` returns")
    .expect("run `lifeguard drain`");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "--no-wait took {:?} (drain.delay 2s)",
        t.elapsed()
    );
    assert!(stderr.contains("lifeguard drain: started"), "{stderr}");
    assert_eq!(phase(admin).await, "draining");
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
    // The first signal joins the drain in progress: it ends when drained.
    p.signal(libc::SIGTERM);
    let st = p.wait_exit(5).await.expect("exits");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "exited {:?} after the drain started, before drain.delay (2s)",
        t.elapsed()
    );

    // Nothing listens on the admin port any more.
    let out = tokio::process::Command::new(binary())
        .args(["drain", "--config"])
        .arg(&p.config_path)
        .output()
        .await
        .expect("run `lifeguard drain`");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("cannot reach lifeguard's admin port at 127.0.0.1:"),
        "{stderr}"
    );
}

#[tokio::test]
async fn drained_waiters_get_503_on_timeout_and_200_before_the_process_exits() {
    let app = TestUpstream::slow().await;
    let mut p = start_proxy(app.addr, "drain:\n  delay: 300ms\n  timeout: 5s\n").await;
    let admin = p.admin;

    // Not draining: the wait runs out.
    let t = Instant::now();
    let (code, body) = admin_get(admin, "/admin/drained?wait=250ms").await;
    let waited = t.elapsed();
    assert_eq!(code, 503, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["drained"], false, "{v}");
    assert!(
        waited >= Duration::from_millis(240) && waited < Duration::from_secs(2),
        "wait=250ms answered after {waited:?}"
    );
    // No wait: answers at once.
    let t = Instant::now();
    let (code, body) = admin_get(admin, "/admin/drained").await;
    assert_eq!(code, 503, "{body}");
    assert!(t.elapsed() < Duration::from_millis(200));
    let (code, _) = admin_get(admin, "/admin/drained?wait=soon").await;
    assert_eq!(code, 400);

    // Waiters registered before the drain and during it are both answered
    // 200 before the process exits.
    let mut early_conn = TcpStream::connect(admin).await.unwrap();
    early_conn
        .write_all(b"GET /admin/drained?wait=30s HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let early = tokio::spawn(async move { read_response(&mut early_conn, 35, false).await });
    assert_eq!(phase(admin).await, "running");
    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    eventually_async(Duration::from_secs(1), "draining", move || async move {
        phase(admin).await == "draining"
    })
    .await;
    let late = tokio::spawn(async move {
        raw_exchange(
            admin,
            b"GET /admin/drained?wait=30s HTTP/1.1\r\nHost: a\r\n\r\n",
            35,
        )
        .await
    });
    for (name, h) in [("early", early), ("late", late)] {
        let out = h.await.unwrap();
        let r = match out {
            RawOutcome::Response(r) => r,
            other => panic!("{name} /admin/drained waiter got no answer: {other:?}"),
        };
        assert_eq!(r.status, 200, "{name}: {r:?}");
        let v: Value = serde_json::from_str(&r.body_text()).unwrap();
        assert_eq!(v["drained"], true, "{name}: {v}");
        assert_eq!(v["phase"], "stopped", "{name}: {v}");
        assert_eq!(v["outcome"]["result"], "clean", "{name}: {v}");
    }
    let st = p.wait_exit(5).await.expect("exits");
    assert_eq!(st.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// WebSocket and HTTP/2 at drain
// ---------------------------------------------------------------------------

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
    let admin = p.admin;

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

    p.signal(libc::SIGTERM);
    eventually_async(
        Duration::from_secs(2),
        "phase closing",
        move || async move { phase(admin).await == "closing" },
    )
    .await;
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

#[tokio::test]
async fn http2_connection_gets_goaway_and_its_stream_in_flight_completes() {
    let app = TestUpstream::slow().await;
    let delay = Duration::from_millis(200);
    let mut p = start_proxy(app.addr, "drain:\n  delay: 200ms\n  timeout: 5s\n").await;
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let path = b"/slow/1000";
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8]; // GET, http, :path literal
    block.extend_from_slice(path);
    block.extend_from_slice(&[0x01, 0x04]); // :authority literal
    block.extend_from_slice(b"test");
    let mut hello = H2_PREFACE.to_vec();
    hello.extend(h2_frame(H2_SETTINGS, 0, 0, &[]));
    hello.extend(h2_frame(H2_HEADERS, 0x5, 1, &block)); // END_STREAM | END_HEADERS
    s.write_all(&hello).await.unwrap();
    let reader = tokio::spawn(tokio::time::timeout(Duration::from_secs(8), h2_read_all(s)));
    wait_inflight(p.admin, 1).await;

    let t0 = Instant::now();
    p.signal(libc::SIGTERM);
    let frames = reader
        .await
        .unwrap()
        .expect("lifeguard closes the HTTP/2 connection after the drain");

    let goaways: Vec<&H2Frame> = frames.iter().filter(|f| f.ty == H2_GOAWAY).collect();
    assert!(!goaways.is_empty(), "no GOAWAY: {frames:?}");
    for g in &goaways {
        assert!(
            g.at.duration_since(t0) >= delay,
            "GOAWAY during drain.delay: {frames:?}"
        );
        assert_eq!(&g.payload[4..8], &[0, 0, 0, 0], "GOAWAY error code: {g:?}");
    }
    let last = goaways.last().unwrap();
    let last_stream = u32::from_be_bytes([
        last.payload[0],
        last.payload[1],
        last.payload[2],
        last.payload[3],
    ]) & 0x7fff_ffff;
    assert!(last_stream >= 1, "GOAWAY would drop stream 1: {last:?}");

    let first_goaway = frames.iter().position(|f| f.ty == H2_GOAWAY).unwrap();
    let headers = frames
        .iter()
        .position(|f| f.ty == H2_HEADERS && f.stream == 1)
        .unwrap_or_else(|| panic!("no response HEADERS on stream 1: {frames:?}"));
    assert!(
        first_goaway < headers,
        "expected the GOAWAY while the stream was in flight: {frames:?}"
    );
    assert_eq!(frames[headers].payload.first(), Some(&0x88), ":status 200");
    let data: Vec<u8> = frames
        .iter()
        .filter(|f| f.ty == H2_DATA && f.stream == 1)
        .flat_map(|f| f.payload.clone())
        .collect();
    assert_eq!(String::from_utf8_lossy(&data), "done /slow/1000");
    assert!(
        frames
            .iter()
            .any(|f| f.stream == 1 && (f.ty == H2_DATA || f.ty == H2_HEADERS) && f.flags & 1 == 1),
        "stream 1 never ended: {frames:?}"
    );

    let st = p.wait_exit(5).await.expect("exits");
    assert_eq!(st.code(), Some(0), "{st:?}");
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------
// lifeguard check: drain budget warnings
// ---------------------------------------------------------------------------

fn check(yaml: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run lifeguard check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_warns_when_the_drain_budget_does_not_fit() {
    // Defaults (delay 5s, timeout 25s, grace 30s) fit.
    let (code, stdout, stderr) = check("");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(!stderr.contains("warning:"), "{stderr}");

    // 29s + 2s margin > 30s.
    let (code, stdout, stderr) = check("drain:\n  timeout: 29s\n");
    assert_eq!(code, Some(0), "a warning is not an error: {stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            "warning: drain.timeout (29s) leaves less than 2s before drain.grace_period (30s)"
        )),
        "{stderr}"
    );

    // The margin is 5 % of a long grace period: 96s + 5s > 100s, 95s + 5s fits.
    let (code, _, stderr) = check("drain:\n  timeout: 96s\n  grace_period: 100s\n");
    assert_eq!(code, Some(0));
    assert!(
        stderr.lines().any(|l| {
            l.starts_with(
            "warning: drain.timeout (1m 36s) leaves less than 5s before drain.grace_period (1m 40s)"
        )
        }),
        "{stderr}"
    );
    let (code, _, stderr) = check("drain:\n  timeout: 95s\n  grace_period: 100s\n");
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("warning:"), "{stderr}");

    // A delay that eats the whole timeout.
    let (code, _, stderr) = check("drain:\n  delay: 3s\n  timeout: 3s\n");
    assert_eq!(code, Some(0));
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: drain.delay (3s) is not below drain.timeout (3s)")),
        "{stderr}"
    );
}
