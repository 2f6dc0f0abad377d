//! A real app process (tests/apps/restartable.js) killed with requests on
//! it and restarted on the same port.

use super::{assert_terminated, get, send};
use support::*;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

fn restartable_js() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/restartable.js")
}

/// Starts `tests/apps/restartable.js` on `port` and waits until it listens.
async fn start_node(port: u16, log: &Path, stall: bool) -> Child {
    let mut cmd = Command::new("node");
    cmd.arg(restartable_js())
        .arg(port.to_string())
        .arg(log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if stall {
        cmd.arg("stall");
    }
    let mut child = cmd.spawn().expect("spawn node (node 20 must be installed)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("node app starts within 10s")
        .unwrap();
    assert_eq!(line.as_deref(), Some(format!("listening {port}").as_str()));
    child
}

/// How many times each "METHOD PATH" reached the app, over all incarnations.
fn deliveries(log: &PathBuf) -> HashMap<String, usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut m = HashMap::new();
    for line in text.lines() {
        *m.entry(line.to_owned()).or_insert(0) += 1;
    }
    m
}

/// A real app process is killed (SIGKILL) with requests on it and restarted
/// on the same port ~300 ms later:
/// - GETs it was handling are resent to the new process and succeed;
/// - POSTs it was handling get 503 (outcome unknown) and reached it once;
/// - requests sent while it was down (GET and POST: not yet sent) wait in
///   the hold and succeed, delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn app_restart_during_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("deliveries.log");
    let port = closed_port().port();
    let app_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut node = start_node(port, &log, true).await;
    let proxy = Proxy::with_endpoints(
        &[app_addr],
        "health:\n  interval: 1s\n  down_interval: 50ms\n",
    )
    .await;
    let e = proxy.endpoint(0);
    assert_eq!(get(proxy.addr(), "/warm").await.status, 200);

    // Requests the app is handling when it dies.
    let mut inflight = Vec::new();
    for i in 0..3 {
        let a = proxy.addr();
        inflight.push((
            format!("POST /stall/post-{i}"),
            tokio::spawn(async move {
                send(a, "POST", &format!("/stall/post-{i}"), "", b"order").await
            }),
        ));
    }
    for i in 0..2 {
        let a = proxy.addr();
        inflight.push((
            format!("GET /stall/get-{i}"),
            tokio::spawn(async move { get(a, &format!("/stall/get-{i}")).await }),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while deliveries(&log)
        .keys()
        .filter(|k| k.contains("/stall/"))
        .count()
        < 5
    {
        assert!(Instant::now() < deadline, "stalled requests reach the app");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    node.start_kill().unwrap();
    node.wait().await.unwrap();
    let killed = Instant::now();
    // The crash is noticed (reset requests trigger a probe, which is refused).
    eventually(5, "endpoint down after the crash", || e.is_down()).await;

    // Requests arriving while the app is down: not sent, held.
    let mut held = Vec::new();
    for i in 0..3 {
        let a = proxy.addr();
        held.push((
            format!("POST /down/post-{i}"),
            tokio::spawn(
                async move { send(a, "POST", &format!("/down/post-{i}"), "", b"order").await },
            ),
        ));
        let a = proxy.addr();
        held.push((
            format!("GET /down/get-{i}"),
            tokio::spawn(async move { get(a, &format!("/down/get-{i}")).await }),
        ));
    }

    tokio::time::sleep_until(killed + Duration::from_millis(300)).await;
    let _node = start_node(port, &log, false).await;

    let mut results = HashMap::new();
    for (name, task) in inflight.into_iter().chain(held) {
        let r = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer"))
            .unwrap();
        results.insert(name, r);
    }
    let d = deliveries(&log);
    let count = |k: &str| d.get(k).copied().unwrap_or(0);
    for i in 0..3 {
        let k = format!("POST /stall/post-{i}");
        assert_terminated(&results[&k], true, &k);
        assert_eq!(count(&k), 1, "{k}: reached the app exactly once");
    }
    for i in 0..2 {
        let k = format!("GET /stall/get-{i}");
        assert_eq!(results[&k].status, 200, "{k}: resent to the restarted app");
        assert_eq!(count(&k), 2, "{k}: once per incarnation");
    }
    for i in 0..3 {
        for k in [format!("POST /down/post-{i}"), format!("GET /down/get-{i}")] {
            let r = &results[&k];
            assert_eq!(
                r.status,
                200,
                "{k}: held, then forwarded: {}",
                r.body_text()
            );
            assert_eq!(count(&k), 1, "{k}: delivered once");
        }
    }
}
