//! Plays kubelet for a rendered pod on this machine: the real lifeguard
//! binary with the rendered config (listeners moved to 127.0.0.1 port 0, the
//! app endpoint to the stand-in app), a Node app that dies at once on
//! SIGTERM (tests/k8s/app.js), continuous client load, then pod termination
//! in the order the kubelet uses for the pod's sidecar mode:
//!
//! - classic (lifeguard in `containers`): every container's preStop hook
//!   runs at once, each container gets SIGTERM when its own hook returns
//!   (lifeguard has none: at once), SIGKILL for what is left at the grace
//!   period;
//! - native (lifeguard in `initContainers`, restartPolicy Always): the app's
//!   preStop hook, SIGTERM to the app, wait for it to exit, then SIGTERM to
//!   lifeguard; SIGKILL at the grace period.
//!
//! Meanwhile the endpoints controller removes the pod from the Service: the
//! clients stop sending new requests `propagation` after termination starts.

use super::hooks::run_handler;
use super::process::Proc;
use super::render::{duration, resolve_port, Rendered};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_yaml::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::child::started_addrs;
use tokio::process::Command;
use tokio::time::Instant;

pub(crate) struct Options {
    /// How long after termination starts clients keep sending new requests
    /// (endpoint propagation). `LIFEGUARD_K8S_PROPAGATION_MS` overrides it.
    pub propagation: Duration,
    /// Concurrent client connections looping requests.
    pub clients: usize,
    /// Load before termination starts.
    pub warm_up: Duration,
    /// Replaces drain.delay / drain.timeout of the rendered config.
    pub drain_override: Option<(&'static str, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        let propagation = std::env::var("LIFEGUARD_K8S_PROPAGATION_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(Duration::from_millis(1000));
        Options {
            propagation,
            clients: 6,
            warm_up: Duration::from_millis(1000),
            drain_override: None,
        }
    }
}

/// What happened, for the test's assertions.
#[derive(Debug)]
pub(crate) struct Report {
    pub native: bool,
    pub grace: Duration,
    pub delay: Duration,
    pub ok: usize,
    pub ok_after_termination_started: usize,
    pub failures: Vec<String>,
    /// How long the app's preStop hook ran, and how it ended.
    pub hook_took: Duration,
    pub hook_ok: bool,
    pub hook_result: String,
    /// lifeguard's `/admin/drained` answer just before the app's SIGTERM
    /// ("200", or "gone" when lifeguard had already exited).
    pub drained_at_app_sigterm: String,
    /// When the app got SIGTERM, since termination started.
    pub app_sigterm_at: Duration,
    pub app_exit: Exit,
    pub lifeguard_exit: Exit,
    pub lifeguard_logs: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Exit {
    pub status: Option<ExitStatus>,
    /// Since termination started.
    pub at: Duration,
    pub killed: bool,
}

/// Rewrites the rendered config for this machine: listeners on 127.0.0.1
/// port 0, the app endpoint, the token and flag files into `dir`.
fn local_config(rendered: &Value, app: SocketAddr, dir: &Path, opts: &Options) -> String {
    let mut c = rendered.clone();
    let m = c.as_mapping_mut().expect("config is a mapping");
    m.insert("listen".into(), "127.0.0.1:0".into());
    let admin = m
        .entry("admin".into())
        .or_insert_with(|| Value::Mapping(Default::default()));
    admin["listen"] = "127.0.0.1:0".into();
    if admin.get("token_file").is_some() {
        let token = dir.join("admin-token");
        std::fs::write(&token, "simulated-token\n").unwrap();
        admin["token_file"] = token.to_string_lossy().as_ref().into();
    }
    let app_cfg = m
        .entry("app".into())
        .or_insert_with(|| Value::Mapping(Default::default()));
    app_cfg["endpoints"] = Value::Sequence(vec![app.to_string().into()]);
    assert!(
        m.get("tls").is_none(),
        "the lifecycle simulation does not do TLS"
    );
    if let Some(flag) = m
        .get_mut("maintenance")
        .and_then(|v| v.get_mut("flag_file"))
    {
        *flag = dir.join("maintenance").to_string_lossy().as_ref().into();
    }
    if let Some((delay, timeout)) = opts.drain_override {
        let drain = m
            .entry("drain".into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        drain["delay"] = delay.into();
        drain["timeout"] = timeout.into();
    }
    serde_yaml::to_string(&c).unwrap()
}

#[derive(Default)]
struct Stats {
    ok: usize,
    ok_after_t0: usize,
    failures: Vec<String>,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// One client: keep-alive requests (GET and POST, alternating) until `stop`;
/// a new connection after `Connection: close`. A request fails unless it
/// gets a complete 2xx response.
async fn client(
    id: usize,
    proxy: SocketAddr,
    stop: Arc<AtomicBool>,
    t0: Arc<Mutex<Option<Instant>>>,
    stats: Arc<Mutex<Stats>>,
) {
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    let mut n = 0usize;
    let fail = |what: String| {
        let since = t0.lock().unwrap().map(|t| t.elapsed());
        stats.lock().unwrap().failures.push(format!(
            "client {id}: {what} (since termination: {since:?})"
        ));
    };
    while !stop.load(Ordering::Acquire) {
        n += 1;
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            match connect(proxy).await {
                Ok(s) => conn = Some(s),
                Err(e) => {
                    fail(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let sender = conn.as_mut().unwrap();
        if sender.ready().await.is_err() {
            // Closed before anything was sent on it: not a request.
            conn = None;
            continue;
        }
        let ms = fastrand::u64(0..150);
        let req = if n.is_multiple_of(2) {
            hyper::Request::get(format!("/work?ms={ms}"))
                .header("host", "demo")
                .body(Full::new(Bytes::new()))
        } else {
            hyper::Request::post(format!("/orders?ms={ms}"))
                .header("host", "demo")
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(format!(
                    "{{\"client\":{id},\"n\":{n},\"pad\":\"{}\"}}",
                    "x".repeat(512)
                ))))
        }
        .unwrap();
        let method = req.method().clone();
        match sender.send_request(req).await {
            Err(e) => {
                fail(format!("{method}: closed without a response: {e}"));
                conn = None;
            }
            Ok(resp) => {
                let status = resp.status();
                let close = resp
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                match resp.into_body().collect().await {
                    Err(e) => fail(format!("{method}: {status}, body cut: {e}")),
                    Ok(_) if !status.is_success() => fail(format!("{method}: {status}")),
                    Ok(_) => {
                        let after = t0.lock().unwrap().is_some();
                        let mut s = stats.lock().unwrap();
                        s.ok += 1;
                        if after {
                            s.ok_after_t0 += 1;
                        }
                    }
                }
                if close {
                    conn = None;
                }
            }
        }
    }
}

/// Runs the pod of `rendered` through start, load and termination.
pub(crate) async fn simulate(rendered: &Rendered, opts: Options) -> Report {
    let pod = rendered.pod();
    let native = pod.native;
    if native {
        assert_eq!(
            pod.lifeguard["restartPolicy"].as_str(),
            Some("Always"),
            "{}: lifeguard init container is not a sidecar",
            rendered.name
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let admin_port = pod.admin_port();
    let grace = Duration::from_secs(pod.grace_seconds());

    // The app container.
    let mut app = Proc::spawn(
        Command::new("node")
            .arg(super::render::repo().join("tests/k8s/app.js"))
            .env("PORT", "0"),
        "node (is Node.js installed?)",
    );
    let app_port: u16 = app
        .wait_line("app start", 15, |l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            v["port"].as_u64().map(|p| p as u16)
        })
        .await;
    let app_addr = SocketAddr::from(([127, 0, 0, 1], app_port));

    // The lifeguard container, on the rendered config.
    let config = local_config(&pod.config(), app_addr, dir.path(), &opts);
    let parsed: Value = serde_yaml::from_str(&config).unwrap();
    let delay = duration(parsed["drain"]["delay"].as_str().unwrap_or("5s"));
    assert!(
        opts.propagation + Duration::from_millis(500) <= delay,
        "drain.delay ({delay:?}) must exceed the endpoint propagation ({:?}) for this test to be meaningful",
        opts.propagation
    );
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, &config).unwrap();
    let mut lifeguard = Proc::spawn(
        Command::new(env!("CARGO_BIN_EXE_lifeguard"))
            .arg("--config")
            .arg(&config_path),
        "lifeguard",
    );
    let (proxy, admin): (SocketAddr, SocketAddr) = lifeguard
        .wait_line("lifeguard start", 15, started_addrs)
        .await;

    // The kubelet's readiness probe, as rendered.
    let probe = &pod.lifeguard["readinessProbe"]["httpGet"];
    let probe_path = probe["path"].as_str().expect("readiness probe path");
    assert_eq!(
        resolve_port(pod.lifeguard, &probe["port"]),
        Some(admin_port),
        "readiness probe is not on the admin port"
    );
    let ready_by = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(200) = super::hooks::http_get(admin, probe_path).await {
            break;
        }
        assert!(
            Instant::now() < ready_by,
            "{}: never ready: {:?}",
            rendered.name,
            lifeguard.lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Load.
    let stop = Arc::new(AtomicBool::new(false));
    let t0_cell = Arc::new(Mutex::new(None));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let clients: Vec<_> = (0..opts.clients)
        .map(|id| {
            tokio::spawn(client(
                id,
                proxy,
                stop.clone(),
                t0_cell.clone(),
                stats.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(opts.warm_up).await;
    assert!(
        stats.lock().unwrap().ok > 0,
        "{}: no request succeeded before termination: {:?}",
        rendered.name,
        stats.lock().unwrap().failures
    );

    // Termination.
    let t0 = Instant::now();
    *t0_cell.lock().unwrap() = Some(t0);
    let deadline = t0 + grace;
    {
        let stop = stop.clone();
        let propagation = opts.propagation;
        tokio::spawn(async move {
            tokio::time::sleep(propagation).await;
            stop.store(true, Ordering::Release);
        });
    }
    assert!(
        pod.lifeguard["lifecycle"]["preStop"].is_null(),
        "{}: lifeguard needs no preStop hook",
        rendered.name
    );
    let app_hook = pod.app["lifecycle"]["preStop"].clone();
    assert!(
        !app_hook.is_null(),
        "{}: the app has no preStop hook",
        rendered.name
    );

    // The app: its hook, then SIGTERM, then (native) wait for its exit.
    let app_side = async {
        let hook = run_handler(&app_hook, admin_port, admin, deadline - Instant::now()).await;
        let drained = match super::hooks::http_get(admin, "/admin/drained").await {
            Ok(status) => status.to_string(),
            Err(_) => "gone".to_owned(),
        };
        let sigterm_at = t0.elapsed();
        app.signal("TERM").await;
        let exit = app.exit_by(deadline, t0).await;
        (hook, (drained, sigterm_at), exit)
    };
    let ((hook, (drained, app_sigterm_at), app_exit), lifeguard_exit) = if native {
        let app_done = app_side.await;
        lifeguard.signal("TERM").await;
        let lg = lifeguard.exit_by(deadline, t0).await;
        (app_done, lg)
    } else {
        let lifeguard_side = async {
            lifeguard.signal("TERM").await;
            lifeguard.exit_by(deadline, t0).await
        };
        tokio::join!(app_side, lifeguard_side)
    };

    stop.store(true, Ordering::Release);
    for c in clients {
        let _ = tokio::time::timeout(Duration::from_secs(10), c).await;
    }
    let stats = std::mem::take(&mut *stats.lock().unwrap());
    Report {
        native,
        grace,
        delay,
        ok: stats.ok,
        ok_after_termination_started: stats.ok_after_t0,
        failures: stats.failures,
        hook_took: hook.took,
        hook_ok: hook.ok,
        hook_result: hook.result,
        drained_at_app_sigterm: drained,
        app_sigterm_at,
        app_exit,
        lifeguard_exit,
        lifeguard_logs: lifeguard.lines(),
    }
}
