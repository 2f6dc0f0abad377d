//! `lifeguard drain` and `/admin/drained`.

use super::{connect_refused, free_port, phase, signal_until_phase, slow_proxy, spawn_get};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::admin::{status_json, wait_inflight};
use support::client::read_response;
use support::process::binary;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A slow app and a child lifeguard whose admin port is a free port on
/// `ip`, with `drain` settings; and that port.
async fn admin_on_a_port(ip: &str, drain: &str) -> (TestUpstream, ProxyProcess, u16) {
    let app = TestUpstream::slow().await;
    let port = free_port();
    let p = ProxyProcess::start(&format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"{ip}:{port}\"\napp:\n  endpoints: [\"{}\"]\ndrain:\n{drain}",
        app.addr
    ))
    .await;
    (app, p, port)
}

#[tokio::test]
async fn drain_command_drains_a_running_process_which_stays_up_until_sigterm() {
    let (_app, mut p, _) = admin_on_a_port("127.0.0.1", "  delay: 200ms\n  timeout: 5s\n").await;
    wait_ready(p.admin).await;
    let (addr, admin) = (p.addr, p.admin);
    let slow = spawn_get(addr, "/slow/1000", 10);
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

    p.assert_exits_at_once_on_sigterm().await;
}

#[tokio::test]
async fn drain_command_no_wait_returns_at_once_and_fails_clearly_without_a_lifeguard() {
    // A wildcard admin address is reached over loopback by `lifeguard drain`.
    let (_app, mut p, port) = admin_on_a_port("0.0.0.0", "  delay: 2s\n  timeout: 5s\n").await;
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
    let (_app, mut p) = slow_proxy("drain:\n  delay: 300ms\n  timeout: 5s\n").await;
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
    signal_until_phase(&p, libc::SIGTERM, "draining", Duration::from_secs(1)).await;
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
