//! Hot reload: under load, through a Kubernetes-style symlink swap, on
//! SIGHUP and `POST /admin/reload`; invalid configs kept out (and logged once
//! per content); restart-only settings reported and ignored.

use http::Response;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::admin::{admin_call, admin_call_from, metric, status_json};
use support::api::sha256_hex;
use support::api::{reload_from, ReloadResult, Trigger};
use support::configmap::ConfigMapDir;
use support::upstream::full;
use support::*;
use tokio::io::AsyncWriteExt;

/// An app that answers every request with its name (after `delay`).
async fn named_app(name: &'static str, delay: Duration) -> TestUpstream {
    TestUpstream::start(move |_req: http::Request<Incoming>| async move {
        tokio::time::sleep(delay).await;
        Response::new(full(name))
    })
    .await
}

fn list(endpoints: &[SocketAddr]) -> String {
    let quoted: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    quoted.join(", ")
}

/// A complete config for a child process: port-0 listeners, JSON logs.
fn process_yaml(endpoints: &[SocketAddr], extra: &str) -> String {
    format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\nlog:\n  format: json\n  level: info\napp:\n  endpoints: [{}]\n{extra}",
        list(endpoints)
    )
}

/// Polling the config file every 100 ms.
const POLL: &str = "reload:\n  poll_interval: 100ms\n";

/// A child lifeguard routing to `endpoint`, its config in a ConfigMap-style
/// directory that it polls (`POLL`).
async fn configmap_proxy(endpoint: SocketAddr) -> (ConfigMapDir, ProxyProcess) {
    let cm = ConfigMapDir::new(&[("config.yaml", &process_yaml(&[endpoint], POLL))]);
    let p =
        ProxyProcess::start_with_file(tempfile::tempdir().unwrap(), cm.path("config.yaml")).await;
    (cm, p)
}

/// `GET path` through the proxy: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    match raw_exchange(addr, req.as_bytes(), 10).await {
        RawOutcome::Response(r) => (r.status, r.body_text()),
        other => panic!("GET {path}: {other:?}"),
    }
}

fn rejections(p: &ProxyProcess) -> usize {
    p.json_logs()
        .iter()
        .filter(|l| l["message"] == "config rejected; keeping the running config")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_reloads_under_load_fail_no_request() {
    let a = named_app("a", Duration::from_millis(5)).await;
    let b = named_app("b", Duration::from_millis(5)).await;
    let proxy = Proxy::with_endpoints(&[a.addr], "").await;
    let shared = proxy.running.shared.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let head = "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n";
    // Endpoints come and go, and other settings change with them.
    let variants = [
        format!("app:\n  endpoints: [{}]\n", list(&[a.addr])),
        format!(
            "app:\n  endpoints: [{}]\n  response_timeout: 30s\n",
            list(&[a.addr, b.addr])
        ),
        format!(
            "app:\n  endpoints: [{}]\nretry:\n  attempts: 1\n",
            list(&[b.addr])
        ),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, served, addr) = (stop.clone(), served.clone(), proxy.addr());
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (status, body) = get(addr, "/work").await;
                if status != 200 || (body != "a" && body != "b") {
                    failures.push((status, body));
                }
                served.fetch_add(1, Ordering::SeqCst);
            }
            failures
        }));
    }

    // And one keep-alive connection used throughout: no reload may close it.
    let keep_alive = {
        let (stop, served, addr) = (stop.clone(), served.clone(), proxy.addr());
        tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                s.write_all(b"GET /kept HTTP/1.1\r\nHost: t\r\n\r\n")
                    .await
                    .unwrap();
                match support::client::read_response(&mut s, 10, false).await {
                    RawOutcome::Response(r) if r.status == 200 => n += 1,
                    other => panic!("keep-alive request {n}: {other:?}"),
                }
                served.fetch_add(1, Ordering::SeqCst);
            }
            n
        })
    };

    for i in 0..60 {
        std::fs::write(&path, format!("{head}{}# reload {i}\n", variants[i % 3])).unwrap();
        let outcome = reload_from(&shared, &path, Trigger::Admin).await;
        assert_eq!(outcome.result, ReloadResult::Success, "{outcome:?}");
        // Let requests run against this generation before the next swap.
        let before = served.load(Ordering::SeqCst);
        eventually(10, "requests between reloads", || {
            served.load(Ordering::SeqCst) >= before + 4
        })
        .await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(
        keep_alive.await.unwrap() >= 60,
        "keep-alive connection barely used"
    );
    assert!(served.load(Ordering::SeqCst) >= 240);
    assert_eq!(shared.snapshot.load().generation, 61);
    let admin = proxy.admin();
    assert_eq!(metric(admin, "lifeguard_config_generation").await, 61.0);
    assert_eq!(
        metric(admin, "lifeguard_config_reloads_total{result=\"success\"}").await,
        60.0
    );
    // The last variant routes to b only; a's series are gone.
    let (_, metrics) = admin_get(admin, "/metrics").await;
    assert!(!metrics.contains(&a.addr.to_string()), "{metrics}");
    assert!(metrics.contains(&b.addr.to_string()));
}

#[tokio::test]
async fn configmap_symlink_swap_is_picked_up_and_applied_live() {
    let a = named_app("a", Duration::ZERO).await;
    let b = named_app("b", Duration::ZERO).await;
    let (cm, p) = configmap_proxy(a.addr).await;
    assert_eq!(get(p.addr, "/").await, (200, "a".to_owned()));

    let new = process_yaml(&[b.addr], POLL);
    cm.update(&[("config.yaml", &new)]);
    eventually_async(
        Duration::from_secs(10),
        "requests reach the new app",
        || async { get(p.addr, "/").await == (200, "b".to_owned()) },
    )
    .await;
    let status = status_json(p.admin).await;
    assert_eq!(status["config"]["generation"], 2);
    assert_eq!(status["config"]["sha256"], sha256_hex(new.as_bytes()));
    let (_, metrics) = admin_get(p.admin, "/metrics").await;
    let info = format!(
        "lifeguard_config_info{{sha256=\"{}\"}} 1",
        sha256_hex(new.as_bytes())
    );
    assert!(metrics.contains(&info), "{metrics}");
    assert_eq!(metrics.matches("lifeguard_config_info{").count(), 1);
    assert_eq!(status["config"]["reload"]["last"]["result"], "success");
    assert_eq!(status["config"]["reload"]["last"]["trigger"], "poll");
    assert_eq!(status["endpoints"].as_array().unwrap().len(), 1);
    assert_eq!(status["endpoints"][0]["endpoint"], b.addr.to_string());
    // The removed endpoint's series are dropped.
    eventually_async(
        Duration::from_secs(5),
        "old endpoint's metrics removed",
        || async {
            !admin_get(p.admin, "/metrics")
                .await
                .1
                .contains(&a.addr.to_string())
        },
    )
    .await;
    let logs = p.json_logs();
    let reloaded: Vec<_> = logs
        .iter()
        .filter(|l| l["message"] == "config reloaded")
        .collect();
    assert_eq!(reloaded.len(), 1, "{logs:?}");
    assert_eq!(reloaded[0]["generation"], 2);
}

#[tokio::test]
async fn invalid_configs_are_kept_out_counted_and_logged_once() {
    let a = named_app("a", Duration::ZERO).await;
    let b = named_app("b", Duration::ZERO).await;
    let (cm, p) = configmap_proxy(a.addr).await;
    let invalid = "lifeguard_config_reloads_total{result=\"invalid\"}";

    let bad = [
        (
            "yaml syntax",
            format!("{}app: [\n", process_yaml(&[b.addr], POLL)),
        ),
        (
            "unknown key",
            process_yaml(&[b.addr], "reload:\n  poll_intervall: 100ms\n"),
        ),
        (
            "invalid value",
            process_yaml(&[b.addr], &format!("{POLL}drain:\n  delay: soon\n")),
        ),
    ];
    for (i, (what, text)) in bad.iter().enumerate() {
        cm.update(&[("config.yaml", text)]);
        eventually_async(Duration::from_secs(10), what, || async {
            metric(p.admin, invalid).await == (i + 1) as f64
        })
        .await;
        assert_eq!(get(p.addr, "/").await, (200, "a".to_owned()), "{what}");
    }
    // Proving "once" needs time to pass: ten more polls of the same bad file.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(metric(p.admin, invalid).await, 3.0);
    assert_eq!(rejections(&p), 3, "{:?}", p.logs());
    let logged: Vec<String> = p
        .json_logs()
        .iter()
        .filter(|l| l["message"] == "config rejected; keeping the running config")
        .map(|l| l["problems"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        logged[1].contains("unknown field `poll_intervall`"),
        "{logged:?}"
    );
    assert!(
        logged[2].starts_with("drain.delay: invalid duration \"soon\""),
        "{logged:?}"
    );

    let status = status_json(p.admin).await;
    assert_eq!(status["config"]["generation"], 1);
    let last = &status["config"]["reload"]["last"];
    assert_eq!(last["result"], "invalid");
    assert!(last["errors"][0]
        .as_str()
        .unwrap()
        .starts_with("drain.delay:"));
    assert_eq!(
        last["rejected_sha256"],
        sha256_hex(bad[2].1.as_bytes()),
        "{last}"
    );
    assert_eq!(metric(p.admin, "lifeguard_config_generation").await, 1.0);
    let successful = "lifeguard_config_last_reload_successful";
    assert_eq!(metric(p.admin, successful).await, 0.0);

    // A good config after the bad ones is applied.
    cm.update(&[("config.yaml", &process_yaml(&[b.addr], POLL))]);
    eventually_async(Duration::from_secs(10), "good config applied", || async {
        get(p.addr, "/").await == (200, "b".to_owned())
    })
    .await;
    assert_eq!(status_json(p.admin).await["config"]["generation"], 2);
    assert_eq!(metric(p.admin, successful).await, 1.0);
}

#[tokio::test]
async fn sighup_reloads_and_restart_only_settings_are_reported() {
    let a = named_app("a", Duration::ZERO).await;
    let b = named_app("b", Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    // Polling off: only the signal can reload. Access logs hidden at first.
    let first = process_yaml(&[a.addr], "reload:\n  poll_interval: 0s\n")
        .replace("level: info", "level: \"info,access=warn\"");
    std::fs::write(&path, &first).unwrap();
    let p = ProxyProcess::start_with_file(tempfile::tempdir().unwrap(), path.clone()).await;
    assert_eq!(get(p.addr, "/").await, (200, "a".to_owned()));

    let second = process_yaml(
        &[b.addr],
        "reload:\n  poll_interval: 0s\nclient:\n  listen_backlog: 100\n",
    )
    .replace(
        "listen: \"127.0.0.1:0\"\nadmin",
        "listen: \"127.0.0.2:0\"\nadmin",
    );
    std::fs::write(&path, &second).unwrap();
    assert_eq!(status_json(p.admin).await["config"]["generation"], 1);
    p.signal(libc::SIGHUP);
    eventually_async(Duration::from_secs(10), "SIGHUP reload", || async {
        status_json(p.admin).await["config"]["generation"] == 2
    })
    .await;
    // Still serving on the old listener, now from the new endpoint.
    assert_eq!(get(p.addr, "/").await, (200, "b".to_owned()));
    let status = status_json(p.admin).await;
    let reload = &status["config"]["reload"];
    assert_eq!(reload["last"]["trigger"], "signal");
    assert_eq!(
        reload["requires_restart"],
        serde_json::json!(["listen", "client.listen_backlog"])
    );
    let warned = p.json_logs().into_iter().find(|l| {
        l["message"]
            == "config changes that require a restart were ignored; the running values stay"
    });
    let warned = warned.unwrap_or_else(|| panic!("no restart warning: {:?}", p.logs()));
    assert_eq!(warned["level"], "WARN");
    let fields = warned["fields"].as_str().unwrap();
    assert!(
        fields.contains("listen") && fields.contains("client.listen_backlog"),
        "{fields}"
    );
    // log.level applied live: access logs now appear.
    get(p.addr, "/after").await;
    eventually(5, "access log after log.level reload", || {
        p.json_logs()
            .iter()
            .any(|l| l["target"] == "access" && l["path"] == "/after")
    })
    .await;
}

#[tokio::test]
async fn admin_reload_is_loopback_or_token_and_answers_the_outcome() {
    let a = named_app("a", Duration::ZERO).await;
    let b = named_app("b", Duration::ZERO).await;
    let (dir, token) = temp_file("token", "t0ken\n");
    let head = format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"{}\"\n",
        token.display()
    );
    let config = |ep: SocketAddr| format!("{head}app:\n  endpoints: [\"{ep}\"]\n");
    let proxy = Proxy::start(&config(a.addr)).await;
    let shared = proxy.running.shared.clone();
    // Built from YAML in-process: there is no file to reload yet.
    let (code, body) = admin_call(proxy.admin(), "POST", "/admin/reload", "").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("not loaded from a file"), "{body}");

    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(b.addr)).unwrap();
    let first = reload_from(&shared, &path, Trigger::Admin).await;
    assert_eq!(first.result, ReloadResult::Success);
    assert_eq!(get(proxy.addr(), "/").await, (200, "b".to_owned()));

    std::fs::write(&path, config(a.addr)).unwrap();
    let outside = "10.1.2.3:40000";
    for token in [None, Some("wrong"), Some("t0ken2")] {
        let (code, _) = admin_call_from(&shared, outside, "POST", "/admin/reload", token).await;
        assert_eq!(code, 401, "token {token:?}");
    }
    assert_eq!(
        shared.snapshot.load().generation,
        2,
        "refused calls changed nothing"
    );
    let (code, body) =
        admin_call_from(&shared, outside, "POST", "/admin/reload", Some("t0ken")).await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["result"].as_str(), v["generation"].as_u64()),
        (Some("success"), Some(3))
    );
    assert_eq!(get(proxy.addr(), "/").await, (200, "a".to_owned()));

    // Loopback needs no token; the same content again is "unchanged".
    let (code, body) = admin_call(proxy.admin(), "POST", "/admin/reload", "").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"unchanged\""), "{body}");
    // A rejected config answers 422 with the field-named problems.
    std::fs::write(&path, format!("{}app:\n  max_in_flight: -1\n", head)).unwrap();
    let (code, body) = admin_call(proxy.admin(), "POST", "/admin/reload", "").await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("app.max_in_flight"), "{body}");
    assert_eq!(
        admin_call(proxy.admin(), "GET", "/admin/reload", "")
            .await
            .0,
        405
    );
    assert_eq!(
        metric(
            proxy.admin(),
            "lifeguard_config_reloads_total{result=\"unchanged\"}"
        )
        .await,
        1.0
    );

    // Without a token configured, outside callers are forbidden.
    let open = Proxy::with_endpoints(&[a.addr], "").await;
    let shared = open.running.shared.clone();
    let (code, _) = admin_call_from(&shared, outside, "POST", "/admin/reload", Some("t0ken")).await;
    assert_eq!(code, 403);
}
