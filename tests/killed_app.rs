//! A real Node.js app process (tests/apps/crash_app.js) dies while requests
//! are in flight: killed with SIGKILL, or crashed by an uncaught exception in
//! an async callback. Every client still gets an HTTP answer from lifeguard.
use support::admin::wait_inflight;
use support::*;

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

const OUTCOME_UNKNOWN: &str =
    "; details=\"request was sent to the app; outcome unknown; not retried\"";

fn terminated() -> String {
    "lifeguard; error=connection_terminated".to_owned()
}

fn terminated_unknown() -> String {
    format!("lifeguard; error=connection_terminated{OUTCOME_UNKNOWN}")
}

/// crash_app.js answers `GET /health` with 404 (an HTTP probe would take it
/// down at once) and logs every request: a TCP probe only connects.
const TCP_PROBES: &str = "health:\n  mode: tcp\n";

/// `node tests/apps/crash_app.js <port>`, with its stdout (one `REQ METHOD
/// PATH` line per request received) and stderr kept.
struct NodeApp {
    child: Child,
    addr: SocketAddr,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn script() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/apps/crash_app.js")
}

fn collect_lines(pipe: impl AsyncRead + Unpin + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            into.lock().unwrap().push(line);
        }
    });
}

impl NodeApp {
    /// Starts the app on `port` (0: any) and waits for the port it reports.
    async fn start(port: u16) -> NodeApp {
        let mut child = Command::new("node")
            .arg(script())
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node (is node on PATH?)");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stderr.take().unwrap(), stderr.clone());
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(Duration::from_secs(10), out.next_line())
            .await
            .expect("node app reports its port within 10 s")
            .expect("read node stdout")
            .unwrap_or_else(|| panic!("node app exited: {:?}", stderr.lock().unwrap()));
        let port: u16 = first
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("first stdout line is not a port: {first:?}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let sink = stdout.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        NodeApp {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stdout,
            stderr,
        }
    }

    /// Requests the app received with this method and path (query excluded).
    fn received(&self, method: &str, path: &str) -> usize {
        let want = format!("REQ {method} {path}");
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| **l == want)
            .count()
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("node app still running")
    }

    /// SIGKILL, through kill(1): the crate forbids `unsafe`, so no libc::kill.
    fn kill9(&self) {
        let status = std::process::Command::new("kill")
            .arg("-9")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -9 failed: {status:?}");
    }

    async fn wait_exit(&mut self) -> ExitStatus {
        tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .expect("node app exits within 5 s")
            .expect("wait for node app")
    }
}

fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    let len = if method == "POST" {
        format!("Content-Length: {}\r\n", body.len())
    } else {
        String::new()
    };
    format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\n{len}\r\n{body}").into_bytes()
}

fn spawn_exchange(addr: SocketAddr, method: &'static str, path: &str) -> JoinHandle<RawOutcome> {
    let bytes = request(method, path, if method == "POST" { "job=1" } else { "" });
    tokio::spawn(async move { raw_exchange(addr, &bytes, 9).await })
}

#[track_caller]
fn assert_synthesized(what: &str, outcome: RawOutcome, proxy_status: &str) {
    let r = match outcome {
        RawOutcome::Response(r) => r,
        other => panic!("{what}: expected lifeguard's 503, got {other:?}"),
    };
    assert_eq!(r.status, 503, "{what}: {r:?}");
    assert_eq!(r.header("connection"), Some("close"), "{what}: {r:?}");
    assert_eq!(r.header("retry-after"), Some("5"), "{what}: {r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some(proxy_status),
        "{what}: {r:?}"
    );
    assert!(
        r.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "{what}: {r:?}"
    );
    assert!(!r.truncated, "{what}: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_requests_in_flight_answers_every_client() {
    let mut app = NodeApp::start(0).await;
    // No hold: the resent GETs find the app gone and are answered at once
    // rather than waiting for it to come back.
    let proxy = Proxy::with_endpoints(
        &[app.addr],
        &format!("{TCP_PROBES}unavailable:\n  hold: 0s\n"),
    )
    .await;
    let gets: Vec<_> = (0..3)
        .map(|_| spawn_exchange(proxy.addr(), "GET", "/slow?ms=5000"))
        .collect();
    let posts: Vec<_> = (0..2)
        .map(|_| spawn_exchange(proxy.addr(), "POST", "/work?ms=5000"))
        .collect();
    eventually(5, "all 5 requests reach the app", || {
        app.received("GET", "/slow") == 3 && app.received("POST", "/work") == 2
    })
    .await;
    wait_inflight(proxy.admin(), 5).await;

    let killed_at = Instant::now();
    app.kill9();
    let status = app.wait_exit().await;
    assert_eq!(status.signal(), Some(9), "{status:?}");

    for (i, t) in gets.into_iter().enumerate() {
        assert_synthesized(&format!("GET {i}"), t.await.unwrap(), &terminated());
    }
    for (i, t) in posts.into_iter().enumerate() {
        assert_synthesized(
            &format!("POST {i}"),
            t.await.unwrap(),
            &terminated_unknown(),
        );
    }
    assert!(
        killed_at.elapsed() < Duration::from_secs(3),
        "answers must come when the app dies, not at its 5 s timer: {:?}",
        killed_at.elapsed()
    );
    assert_eq!(app.received("POST", "/work"), 2, "each POST delivered once");
    wait_inflight(proxy.admin(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncaught_exception_with_requests_in_flight_answers_every_client() {
    let mut app = NodeApp::start(0).await;
    let proxy = ProxyProcess::start(&format!(
        "app:\n  endpoints: [\"{}\"]\n{TCP_PROBES}",
        app.addr
    ))
    .await;
    let slow: Vec<_> = (0..2)
        .map(|_| spawn_exchange(proxy.addr, "GET", "/slow?ms=5000"))
        .collect();
    let post = spawn_exchange(proxy.addr, "POST", "/work?ms=5000");
    eventually(5, "the other requests reach the app", || {
        app.received("GET", "/slow") == 2 && app.received("POST", "/work") == 1
    })
    .await;
    let crash = spawn_exchange(proxy.addr, "GET", "/crash");

    assert_synthesized("GET /crash", crash.await.unwrap(), &terminated());
    for (i, t) in slow.into_iter().enumerate() {
        assert_synthesized(&format!("GET /slow {i}"), t.await.unwrap(), &terminated());
    }
    assert_synthesized("POST /work", post.await.unwrap(), &terminated_unknown());

    let status = app.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(1),
        "uncaught exception exits 1: {status:?}"
    );
    let stderr = app.stderr.lock().unwrap().join("\n");
    assert!(stderr.contains("boom"), "{stderr}");
    assert_eq!(app.received("GET", "/crash"), 1);
    assert_eq!(app.received("POST", "/work"), 1);

    // One crash event naming the endpoint and all four requests.
    eventually(5, "four access-log events", || {
        proxy
            .json_logs()
            .iter()
            .filter(|v| v["target"] == "access" && v["status"] == 503)
            .count()
            == 4
    })
    .await;
    let events = proxy.events("app_connection_lost");
    assert_eq!(events.len(), 1, "exactly one crash event: {events:#?}");
    let e = &events[0];
    assert_eq!(e["endpoint"], app.addr.to_string().as_str(), "{e}");
    assert_eq!(e["in_flight"], 4, "{e}");
    let list: Vec<serde_json::Value> =
        serde_json::from_str(e["requests"].as_str().expect("requests string")).unwrap();
    let mut paths: Vec<&str> = list.iter().map(|r| r["path"].as_str().unwrap()).collect();
    paths.sort();
    assert_eq!(
        paths,
        ["/crash", "/slow?ms=5000", "/slow?ms=5000", "/work?ms=5000"],
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_app_gets_503_connection_refused_quickly() {
    let mut app = NodeApp::start(0).await;
    // The first probe sees the app up and the next is an hour away, so
    // lifeguard learns of the death from the first request's refused connect;
    // no hold, so every answer is immediate.
    let proxy = Proxy::with_endpoints(
        &[app.addr],
        "health:\n  mode: tcp\n  interval: 1h\nunavailable:\n  hold: 0s\n",
    )
    .await;
    let e = proxy.endpoint(0);
    eventually(5, "the first probe sees the app up", || e.is_up()).await;
    // Warm lifeguard's pool with a keep-alive connection to the app.
    for _ in 0..2 {
        let r = raw_exchange(proxy.addr(), &request("GET", "/", ""), 5)
            .await
            .response();
        assert_eq!((r.status, r.body_text().as_str()), (200, "ok"), "{r:?}");
    }
    app.kill9();
    let status = app.wait_exit().await;
    assert_eq!(status.signal(), Some(9), "{status:?}");

    for i in 0..5 {
        for method in ["GET", "POST"] {
            let path = if method == "GET" { "/" } else { "/work" };
            let started = Instant::now();
            let outcome = raw_exchange(proxy.addr(), &request(method, path, "job=1"), 5).await;
            let took = started.elapsed();
            // The first request's own connect is refused, which takes the
            // endpoint down; the later ones are not even tried.
            let ps = if i == 0 && method == "GET" {
                "lifeguard; error=connection_refused"
            } else {
                "lifeguard; error=destination_unavailable"
            };
            assert_synthesized(&format!("{method} #{i} after death"), outcome, ps);
            assert!(took < Duration::from_secs(1), "{method} #{i} took {took:?}");
        }
        assert!(e.is_down(), "#{i}");
    }
    wait_inflight(proxy.admin(), 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_app_on_the_same_port_is_served_again() {
    let mut app = NodeApp::start(0).await;
    let port = app.addr.port();
    // Probes: the first (seen up), then an hour away while up and every
    // 250 ms while down; the default hold (2 s) lets a request wait for a
    // restart.
    let proxy = Proxy::with_endpoints(&[app.addr], "health:\n  mode: tcp\n  interval: 1h\n").await;
    let e = proxy.endpoint(0);
    eventually(5, "the first probe sees the app up", || e.is_up()).await;
    for _ in 0..2 {
        let r = raw_exchange(proxy.addr(), &request("GET", "/", ""), 5)
            .await
            .response();
        assert_eq!(r.status, 200, "{r:?}");
    }
    // Killed and restarted with no request in between: lifeguard's pooled
    // connection to the dead process must not eat the next POST.
    app.kill9();
    app.wait_exit().await;
    let mut again = NodeApp::start(port).await;
    assert_eq!(again.addr, app.addr);
    let r = raw_exchange(proxy.addr(), &request("POST", "/work", "job=1"), 5)
        .await
        .response();
    assert_eq!(
        (r.status, r.body_text().as_str()),
        (200, "worked 1"),
        "{r:?}"
    );
    assert_eq!(again.received("POST", "/work"), 1);

    // Down again: refused (the request's own connect: no probe ran since),
    // after holding for the app to come back; up again: served.
    again.kill9();
    again.wait_exit().await;
    let r = raw_exchange(proxy.addr(), &request("GET", "/", ""), 5)
        .await
        .response();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=connection_refused")
    );
    assert!(e.is_down());
    // Restarted while lifeguard knows the endpoint is down: the request is
    // served once probes see the app up (waiting in the hold if need be).
    let third = NodeApp::start(port).await;
    let r = raw_exchange(proxy.addr(), &request("GET", "/", ""), 5)
        .await
        .response();
    assert_eq!((r.status, r.body_text().as_str()), (200, "ok"), "{r:?}");
    assert_eq!(third.received("GET", "/"), 1);
}
