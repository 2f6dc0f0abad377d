//! Issue 10, "bad config never takes it down": every file the config names
//! (and the config file itself) that is a device or a FIFO is refused at
//! once, naming its field, by `lifeguard check` (exit 64 within a second)
//! and by a hot reload (no memory growth, no wedged later reloads); a
//! ConfigMap-style symlinked file still loads; and the configs that made
//! lifeguard loop into itself or resend every POST are rejected.

use http::Response;
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::admin::{admin_call, metric, status_json, wait_metric};
use support::api::{reload_from, Config, ReloadResult, Trigger};
use support::configmap::ConfigMapDir;
use support::tls::TestCa;
use support::upstream::full;
use support::*;
use tokio::time::Instant;

const EX_USAGE: i32 = 64;

// ---------------------------------------------------------------- helpers

/// Runs `lifeguard args`, killing it if still running after `secs`; also
/// returns how long it took.
fn run(args: &[&str], secs: u64) -> (Output, Duration) {
    support::process::run_bounded(args, secs)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `lifeguard check --config path`: must exit 64 within a second, its
/// stderr containing `want`.
fn assert_check_refuses(path: &Path, want: &str) {
    let (o, took) = run(&["check", "--config", path.to_str().unwrap()], 10);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(EX_USAGE), "{want}: {err}");
    assert!(took < Duration::from_secs(1), "{want}: took {took:?}");
    assert!(err.contains(want), "expected {want:?} in:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Resident memory of this test process, bytes (`VmRSS`).
fn vm_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

/// Valid files for every file-valued key, and the bad ones: two character
/// devices that never end and a FIFO nobody writes to.
struct Files {
    dir: tempfile::TempDir,
    token: PathBuf,
    page: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().unwrap();
        let path = |n: &str| dir.path().join(n);
        let (token, page, cert, key) = (
            path("token"),
            path("page.html"),
            path("tls.crt"),
            path("tls.key"),
        );
        std::fs::write(&token, "t0ken\n").unwrap();
        std::fs::write(&page, "<p>back in {{retry_after}}</p>").unwrap();
        TestCa::new().leaf().write(&cert, &key);
        mkfifo(&path("fifo"));
        Files {
            dir,
            token,
            page,
            cert,
            key,
        }
    }

    fn bad(&self) -> [(&'static str, PathBuf); 3] {
        [
            ("character device", PathBuf::from("/dev/zero")),
            ("character device", PathBuf::from("/dev/urandom")),
            ("FIFO", self.dir.path().join("fifo")),
        ]
    }
}

/// Every key naming a file.
const FILE_KEYS: [&str; 5] = [
    "admin.token_file",
    "maintenance.bypass_token_file",
    "maintenance.page",
    "tls.cert_file",
    "tls.key_file",
];

/// A complete config routing to `endpoint`, `key` naming `file` and every
/// other file key its valid file. `tag` makes the text (and hash) differ.
fn yaml(files: &Files, endpoint: SocketAddr, key: &str, file: &Path, tag: &str) -> String {
    let pick = |k: &str, valid: &Path| {
        if k == key {
            file.to_owned()
        } else {
            valid.to_owned()
        }
    };
    let tls = key.starts_with("tls.");
    let mut y = format!(
        "# {tag}\nlisten: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"{}\"\napp:\n  endpoints: [\"{endpoint}\"]\nmaintenance:\n  page: \"{}\"\n  bypass_header: X-Bypass\n  bypass_token_file: \"{}\"\n",
        pick("admin.token_file", &files.token).display(),
        pick("maintenance.page", &files.page).display(),
        pick("maintenance.bypass_token_file", &files.token).display(),
    );
    if tls {
        y.push_str(&format!(
            "tls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
            pick("tls.cert_file", &files.cert).display(),
            pick("tls.key_file", &files.key).display(),
        ));
    }
    y
}

async fn named_app(name: &'static str) -> TestUpstream {
    TestUpstream::start(
        move |_req: http::Request<Incoming>| async move { Response::new(full(name)) },
    )
    .await
}

/// `GET /` through the proxy: (status, body).
async fn get(addr: SocketAddr) -> (u16, String) {
    match raw_exchange(
        addr,
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        10,
    )
    .await
    {
        RawOutcome::Response(r) => (r.status, r.body_text()),
        other => panic!("GET /: {other:?}"),
    }
}

// ------------------------------------------------------- files: `check`

#[test]
fn check_refuses_devices_and_fifos_for_every_file_key_within_a_second() {
    let files = Files::new();
    let endpoint: SocketAddr = "127.0.0.1:3000".parse().unwrap();
    for key in FILE_KEYS {
        for (kind, bad) in files.bad() {
            let path = files.dir.path().join("config.yaml");
            std::fs::write(&path, yaml(&files, endpoint, key, &bad, "bad")).unwrap();
            assert_check_refuses(
                &path,
                &format!(
                    "{key}: \"{}\" is not a regular file ({kind})",
                    bad.display()
                ),
            );
        }
        // The same config with the valid file passes.
        let path = files.dir.path().join("config.yaml");
        let good = match key {
            "admin.token_file" | "maintenance.bypass_token_file" => &files.token,
            "maintenance.page" => &files.page,
            "tls.cert_file" => &files.cert,
            _ => &files.key,
        };
        std::fs::write(&path, yaml(&files, endpoint, key, good, "good")).unwrap();
        let (o, _) = run(&["check", "--config", path.to_str().unwrap()], 10);
        assert_eq!(o.status.code(), Some(0), "{key}: {}", stderr(&o));
    }
}

#[test]
fn the_config_file_itself_must_be_a_regular_file() {
    let files = Files::new();
    for (kind, bad) in files.bad() {
        let want = format!("\"{}\" is not a regular file ({kind})", bad.display());
        assert_check_refuses(&bad, &want);
        // Run mode refuses it the same way, instead of hanging or growing.
        let (o, took) = run(&["--config", bad.to_str().unwrap()], 10);
        assert_eq!(o.status.code(), Some(EX_USAGE), "{}", stderr(&o));
        assert!(took < Duration::from_secs(1), "run mode took {took:?}");
        assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    }
    assert_check_refuses(
        files.dir.path(),
        &format!(
            "\"{}\" is not a regular file (directory)",
            files.dir.path().display()
        ),
    );
    // Larger than 4 MiB: refused without reading on.
    let big = files.dir.path().join("big.yaml");
    std::fs::write(&big, format!("# {}\n", "x".repeat(4 * 1024 * 1024))).unwrap();
    assert_check_refuses(&big, "is larger than 4MiB");
}

#[test]
fn a_large_token_or_page_is_refused_by_size_not_metadata() {
    let files = Files::new();
    let endpoint: SocketAddr = "127.0.0.1:3000".parse().unwrap();
    let big_token = files.dir.path().join("big-token");
    std::fs::write(&big_token, "a".repeat(4097)).unwrap();
    let big_page = files.dir.path().join("big-page");
    std::fs::write(&big_page, vec![b'p'; 1024 * 1024 + 1]).unwrap();
    let path = files.dir.path().join("config.yaml");
    std::fs::write(
        &path,
        yaml(&files, endpoint, "admin.token_file", &big_token, "t"),
    )
    .unwrap();
    assert_check_refuses(&path, "admin.token_file: \"");
    assert_check_refuses(&path, "is larger than 4KiB");
    std::fs::write(
        &path,
        yaml(&files, endpoint, "maintenance.page", &big_page, "p"),
    )
    .unwrap();
    assert_check_refuses(&path, "is larger than 1MiB");
    // Exactly at the caps: accepted.
    std::fs::write(&big_token, "a".repeat(4096)).unwrap();
    std::fs::write(&big_page, vec![b'p'; 1024 * 1024]).unwrap();
    for key in ["admin.token_file", "maintenance.page"] {
        let file = if key == "admin.token_file" {
            &big_token
        } else {
            &big_page
        };
        std::fs::write(&path, yaml(&files, endpoint, key, file, "cap")).unwrap();
        let (o, _) = run(&["check", "--config", path.to_str().unwrap()], 10);
        assert_eq!(o.status.code(), Some(0), "{key}: {}", stderr(&o));
    }
}

// ------------------------------------------------------ files: hot reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_refuses_devices_and_fifos_without_growing_and_stays_usable() {
    let a = named_app("a").await;
    let b = named_app("b").await;
    let files = Files::new();
    let proxy = Proxy::with_endpoints(&[a.addr], "").await;
    let shared = proxy.running.shared.clone();
    let path = files.dir.path().join("config.yaml");
    let mut worst_growth = 0u64;
    let mut slowest = Duration::ZERO;
    let mut n = 0;
    for key in FILE_KEYS {
        for (kind, bad) in files.bad() {
            n += 1;
            std::fs::write(&path, yaml(&files, b.addr, key, &bad, &format!("bad {n}"))).unwrap();
            let before = vm_rss();
            let started = Instant::now();
            let o = tokio::time::timeout(
                Duration::from_secs(5),
                reload_from(&shared, &path, Trigger::Admin),
            )
            .await
            .unwrap_or_else(|_| panic!("{key} = {}: reload hung", bad.display()));
            slowest = slowest.max(started.elapsed());
            worst_growth = worst_growth.max(vm_rss().saturating_sub(before));
            assert_eq!(o.result, ReloadResult::Invalid, "{key}: {o:?}");
            let want = format!(
                "{key}: \"{}\" is not a regular file ({kind})",
                bad.display()
            );
            assert!(o.errors.contains(&want), "{want:?} not in {:?}", o.errors);
            assert_eq!(get(proxy.addr()).await, (200, "a".to_owned()), "{key}");

            // A good config right after is applied (nothing wedged).
            n += 1;
            let valid = match key {
                "maintenance.page" => &files.page,
                "tls.cert_file" => &files.cert,
                "tls.key_file" => &files.key,
                _ => &files.token,
            };
            std::fs::write(
                &path,
                yaml(&files, b.addr, key, valid, &format!("good {n}")),
            )
            .unwrap();
            let o = tokio::time::timeout(
                Duration::from_secs(5),
                reload_from(&shared, &path, Trigger::Admin),
            )
            .await
            .expect("good reload answered");
            assert_eq!(o.result, ReloadResult::Success, "{key}: {o:?}");
            // Back to `a` for the next bad attempt.
            std::fs::write(
                &path,
                yaml(&files, a.addr, key, valid, &format!("back {n}")),
            )
            .unwrap();
            let o = reload_from(&shared, &path, Trigger::Admin).await;
            assert_eq!(o.result, ReloadResult::Success, "{key}: {o:?}");
        }
    }
    eprintln!(
        "15 refused reloads: worst RSS growth {} KiB, slowest {slowest:?}",
        worst_growth / 1024
    );
    assert!(
        worst_growth < 4 * 1024 * 1024,
        "RSS grew by {} KiB on a refused reload",
        worst_growth / 1024
    );
    assert!(
        slowest < Duration::from_secs(1),
        "slowest refusal {slowest:?}"
    );

    // The config path itself a device or FIFO: an error, at once, and the
    // next good file still reloads.
    for (kind, bad) in files.bad() {
        let o = tokio::time::timeout(
            Duration::from_secs(5),
            reload_from(&shared, &bad, Trigger::Admin),
        )
        .await
        .expect("reload of a non-file answered");
        assert_eq!(o.result, ReloadResult::Error, "{o:?}");
        let want = format!("\"{}\" is not a regular file ({kind})", bad.display());
        assert_eq!(o.errors, [want]);
    }
    std::fs::write(
        &path,
        yaml(&files, b.addr, "admin.token_file", &files.token, "last"),
    )
    .unwrap();
    let o = reload_from(&shared, &path, Trigger::Admin).await;
    assert_eq!(o.result, ReloadResult::Success, "{o:?}");
    assert_eq!(get(proxy.addr()).await, (200, "b".to_owned()));
}

/// A child lifeguard polling its file every 100 ms picks up a config naming
/// a FIFO: the poll rejects it, and `/admin/reload`, SIGHUP and the next
/// poll all still answer. Then the config path itself becomes a FIFO.
#[tokio::test]
async fn a_fifo_picked_up_by_the_poll_wedges_no_later_reload() {
    let a = named_app("a").await;
    let b = named_app("b").await;
    let files = Files::new();
    let fifo = files.dir.path().join("fifo");
    let run_dir = tempfile::tempdir().unwrap();
    let path = run_dir.path().join("config.yaml");
    let config = |endpoint: SocketAddr, token: &Path, tag: &str| {
        format!(
            "# {tag}\nlisten: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"{}\"\napp:\n  endpoints: [\"{endpoint}\"]\nlog:\n  format: json\nreload:\n  poll_interval: 100ms\n",
            token.display()
        )
    };
    std::fs::write(&path, config(a.addr, &files.token, "start")).unwrap();
    // Every later change is a rename, so no poll reads a half-written file
    // (or finds none).
    let swap = run_dir.path().join("swap");
    let replace = |text: String| {
        std::fs::write(&swap, text).unwrap();
        std::fs::rename(&swap, &path).unwrap();
    };
    let p = ProxyProcess::start_with_file(tempfile::tempdir().unwrap(), path.clone()).await;
    assert_eq!(get(p.addr).await, (200, "a".to_owned()));

    replace(config(b.addr, &fifo, "fifo token"));
    let invalid = "lifeguard_config_reloads_total{result=\"invalid\"}";
    wait_metric(p.admin, invalid, 1.0).await;

    // /admin/reload re-validates the same content: answered at once.
    let started = Instant::now();
    let (code, body) = admin_call(p.admin, "POST", "/admin/reload", "").await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("admin.token_file"), "{body}");
    assert!(body.contains("is not a regular file (FIFO)"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // SIGHUP too.
    p.signal(libc::SIGHUP);
    eventually_async(Duration::from_secs(5), "SIGHUP reload answered", || async {
        let s = status_json(p.admin).await;
        s["config"]["reload"]["last"]["trigger"] == "signal"
            && s["config"]["reload"]["last"]["result"] == "invalid"
    })
    .await;

    // A good file is applied by the poll.
    replace(config(b.addr, &files.token, "good"));
    eventually_async(Duration::from_secs(5), "good config applied", || async {
        get(p.addr).await == (200, "b".to_owned())
    })
    .await;
    assert_eq!(status_json(p.admin).await["config"]["generation"], 2);

    // The config path itself swapped for a FIFO: read errors, no wedge.
    mkfifo(&swap);
    std::fs::rename(&swap, &path).unwrap();
    let errors = "lifeguard_config_reloads_total{result=\"error\"}";
    wait_metric(p.admin, errors, 1.0).await;
    let (code, body) = admin_call(p.admin, "POST", "/admin/reload", "").await;
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("is not a regular file (FIFO)"), "{body}");
    replace(config(a.addr, &files.token, "after fifo"));
    eventually_async(
        Duration::from_secs(5),
        "config after the FIFO applied",
        || async { get(p.addr).await == (200, "a".to_owned()) },
    )
    .await;
    assert_eq!(status_json(p.admin).await["config"]["generation"], 3);
    // One from the poll (repeated polls of the same FIFO count nothing),
    // one from the explicit /admin/reload.
    assert_eq!(metric(p.admin, errors).await, 2.0);
}

#[tokio::test]
async fn configmap_symlinked_files_still_load_and_reload() {
    let a = named_app("a").await;
    let b = named_app("b").await;
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let cm_yaml = |cm: &ConfigMapDir, endpoint: SocketAddr| {
        format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"{}\"\napp:\n  endpoints: [\"{endpoint}\"]\nmaintenance:\n  page: \"{}\"\n  bypass_header: X-Bypass\n  bypass_token_file: \"{}\"\ntls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
            cm.path("token").display(),
            cm.path("page.html").display(),
            cm.path("token").display(),
            cm.path("tls.crt").display(),
            cm.path("tls.key").display(),
        )
    };
    // Every file, the config included, behind `name -> ..data/name` links.
    let cm = ConfigMapDir::new(&[
        ("config.yaml", ""),
        ("token", "one\n"),
        ("page.html", "<p>later</p>"),
        ("tls.crt", &leaf.cert_pem),
        ("tls.key", &leaf.key_pem),
    ]);
    let files = |endpoint, token: &str| {
        [
            ("config.yaml", cm_yaml(&cm, endpoint)),
            ("token", token.to_owned()),
            ("page.html", "<p>later</p>".to_owned()),
            ("tls.crt", leaf.cert_pem.clone()),
            ("tls.key", leaf.key_pem.clone()),
        ]
    };
    let update = |endpoint, token: &str| {
        let f = files(endpoint, token);
        let refs: Vec<(&str, &str)> = f.iter().map(|(n, c)| (*n, c.as_str())).collect();
        cm.update(&refs);
    };
    update(a.addr, "one\n");
    assert!(std::fs::symlink_metadata(cm.path("token"))
        .unwrap()
        .file_type()
        .is_symlink());
    let (o, _) = run(
        &[
            "check",
            "--config",
            cm.path("config.yaml").to_str().unwrap(),
        ],
        10,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let config = Config::load(&cm.path("config.yaml")).unwrap();
    assert_eq!(config.admin.token.as_ref().unwrap().expose(), "one");
    assert_eq!(&config.maintenance.page[..], b"<p>later</p>");

    let proxy = Proxy::with_endpoints(&[a.addr], "").await;
    let shared = proxy.running.shared.clone();
    update(b.addr, "two\n");
    let o = reload_from(&shared, &cm.path("config.yaml"), Trigger::Admin).await;
    assert_eq!(o.result, ReloadResult::Success, "{o:?}");
    let token = shared.snapshot.load().config.admin.token.clone();
    assert_eq!(token.unwrap().expose(), "two");
    assert_eq!(get(proxy.addr()).await, (200, "b".to_owned()));
}

// --------------------------------------------------------------- values

/// `yaml` is rejected: `Config::fields()` names `field` (alone), a problem
/// line starts with `field: message`, and `lifeguard check` exits 64 saying
/// the same.
fn assert_rejected(yaml: &str, field: &str, message: &str) {
    let err = Config::from_yaml(yaml, "t").expect_err(yaml);
    assert_eq!(err.fields(), [field], "{yaml}\n{err}");
    let line = format!("{field}: {message}");
    assert!(
        err.problems().iter().any(|p| p.starts_with(&line)),
        "{line:?} not in {:?}",
        err.problems()
    );
    let (_dir, path) = temp_file("config.yaml", yaml);
    let (o, _) = run(&["check", "--config", path.to_str().unwrap()], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "{yaml}: {}", stderr(&o));
    assert!(stderr(&o).contains(&line), "{line:?} not in {}", stderr(&o));
}

fn assert_accepted(yaml: &str) {
    if let Err(e) = Config::from_yaml(yaml, "t") {
        panic!("{yaml}: {e}");
    }
}

#[test]
fn idempotency_key_headers_that_every_request_carries_are_rejected() {
    let field = "retry.idempotency_key_header";
    for name in [
        "Host",
        "host",
        "Connection",
        "Content-Length",
        "Transfer-Encoding",
        "TE",
        "Upgrade",
        "Keep-Alive",
        "Proxy-Connection",
        "Trailer",
        "Content-Type",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "User-Agent",
        "Cookie",
        "Authorization",
        "Origin",
        "Referer",
        "X-Forwarded-For",
        "X-Forwarded-Proto",
        "x-forwarded-host",
        "X-Request-Id",
        "Forwarded",
    ] {
        assert_rejected(
            &format!("retry:\n  idempotency_key_header: {name}\n"),
            field,
            &format!("\"{name}\" is a standard, hop-by-hop or proxy-set header"),
        );
    }
    for name in [":authority", ":method"] {
        assert_rejected(
            &format!("retry:\n  idempotency_key_header: \"{name}\"\n"),
            field,
            &format!("\"{name}\" is an HTTP/2 pseudo-header"),
        );
    }
    for name in ["Idempotency-Key", "X-Idempotency-Key", "X-Forwarded"] {
        assert_accepted(&format!("retry:\n  idempotency_key_header: {name}\n"));
    }
}

/// A non-loopback address of this host, if it has one (the source address
/// of a route to TEST-NET-1; a UDP connect sends nothing).
fn interface_address() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn an_endpoint_that_is_lifeguard_itself_is_rejected() {
    let loops = "app.endpoints[0]";
    let case = |listen: &str, admin: &str, endpoint: &str| {
        format!(
            "listen: \"{listen}\"\nadmin:\n  listen: \"{admin}\"\napp:\n  endpoints: [\"{endpoint}\"]\n"
        )
    };
    let own = |key: &str, endpoint: &str, addr: &str| {
        format!("\"{endpoint}\" is lifeguard's own {key} ({addr}): requests would loop back into lifeguard")
    };
    for (listen, endpoint) in [
        ("127.0.0.1:18080", "127.0.0.1:18080"),
        ("0.0.0.0:18080", "127.0.0.1:18080"),
        ("0.0.0.0:18080", "127.0.0.9:18080"),
        ("[::]:18080", "127.0.0.1:18080"),
        ("[::]:18080", "[::1]:18080"),
        ("127.0.0.1:18080", "[::ffff:127.0.0.1]:18080"),
    ] {
        let yaml = case(listen, "127.0.0.1:19901", endpoint);
        assert_rejected(&yaml, loops, &own("listen", endpoint, listen));
    }
    assert_rejected(
        &case("127.0.0.1:18080", "0.0.0.0:19901", "127.0.0.1:19901"),
        loops,
        &own("admin.listen", "127.0.0.1:19901", "0.0.0.0:19901"),
    );
    if let Some(ip) = interface_address() {
        let endpoint = SocketAddr::new(ip, 18080).to_string();
        assert_rejected(
            &case("0.0.0.0:18080", "127.0.0.1:19901", &endpoint),
            loops,
            &own("listen", &endpoint, "0.0.0.0:18080"),
        );
    }
    // Another port, another loopback address of a specific listener, or
    // a port-0 listener: not a loop.
    for (listen, endpoint) in [
        ("0.0.0.0:18080", "127.0.0.1:3000"),
        ("127.0.0.1:18080", "127.0.0.2:18080"),
        ("0.0.0.0:18080", "192.0.2.1:18080"),
        ("127.0.0.1:0", "127.0.0.1:3000"),
    ] {
        assert_accepted(&case(listen, "127.0.0.1:19901", endpoint));
    }
}

#[test]
fn endpoints_that_no_app_can_be_at_are_rejected() {
    for (endpoint, message) in [
        ("0.0.0.0:3000", "has an unspecified address"),
        ("[::]:3000", "has an unspecified address"),
        ("127.0.0.1:0", "has port 0"),
        ("224.0.0.1:3000", "is a multicast address"),
        ("[ff02::1]:3000", "is a multicast address"),
        ("255.255.255.255:3000", "is the broadcast address"),
    ] {
        assert_rejected(
            &format!("app:\n  endpoints: [\"127.0.0.1:3000\", \"{endpoint}\"]\n"),
            "app.endpoints[1]",
            &format!("\"{endpoint}\" {message}"),
        );
    }
}

#[test]
fn timeouts_below_their_floor_are_rejected() {
    for (section, key, value, floor) in [
        ("client", "idle_timeout", "50ms", "100ms"),
        ("client", "header_timeout", "99ms", "100ms"),
        ("client", "idle_timeout", "1ms", "100ms"),
        ("app", "connect_timeout", "5ms", "10ms"),
        ("health", "timeout", "9ms", "10ms"),
        ("health", "interval", "1ms", "10ms"),
    ] {
        assert_rejected(
            &format!("{section}:\n  {key}: {value}\n"),
            &format!("{section}.{key}"),
            &format!("{value} is below the minimum of {floor}"),
        );
    }
    assert_accepted("client:\n  idle_timeout: 100ms\n  header_timeout: 100ms\napp:\n  connect_timeout: 10ms\nhealth:\n  timeout: 10ms\n");
}

#[test]
fn thresholds_above_100_are_rejected() {
    for key in ["healthy_threshold", "unhealthy_threshold"] {
        assert_rejected(
            &format!("health:\n  {key}: 101\n"),
            &format!("health.{key}"),
            "101 is above the maximum of 100",
        );
        assert_accepted(&format!("health:\n  {key}: 100\n"));
    }
}

#[test]
fn a_probe_timeout_longer_than_its_interval_is_a_warning() {
    let c = Config::from_yaml("health:\n  interval: 1s\n  timeout: 3s\n", "t").unwrap();
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with("health.timeout (3s) is longer than health.interval (1s)"),
        "{w:?}"
    );
    let (_dir, path) = temp_file("config.yaml", "health:\n  interval: 1s\n  timeout: 3s\n");
    let (o, _) = run(&["check", "--config", path.to_str().unwrap()], 10);
    assert_eq!(o.status.code(), Some(0), "a warning is not an error");
    assert!(
        stderr(&o).contains("warning: health.timeout (3s) is longer than health.interval (1s)"),
        "{}",
        stderr(&o)
    );
    assert!(
        Config::from_yaml("health:\n  interval: 1s\n  timeout: 1s\n", "t")
            .unwrap()
            .warnings()
            .is_empty()
    );
}

/// The certificate files rotated in place into a FIFO or a device (a
/// symlink to `/dev/zero`): the reload and the rotation check both refuse
/// at once, the old certificate stays served, and a real pair after that
/// is picked up.
#[tokio::test]
async fn tls_files_turned_into_a_fifo_or_device_keep_the_served_certificate() {
    let app = named_app("a").await;
    let ca = TestCa::new();
    let (first, second) = (ca.leaf(), ca.leaf());
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    first.write(&cert, &key);
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\napp:\n  endpoints: [\"{}\"]\nreload:\n  poll_interval: 0s\ntls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
        app.addr,
        cert.display(),
        key.display()
    );
    let proxy = Proxy::start(&yaml).await;
    let shared = proxy.running.shared.clone();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, &yaml).unwrap();
    // A new client each time: a resumed session would show the old
    // certificate.
    let served = || async {
        support::tls::tls_get(&ca.client(&[b"http/1.1"]), proxy.addr(), "/")
            .await
            .unwrap()
            .server_cert
    };
    assert_eq!(served().await, first.der);

    let swap = dir.path().join("swap");
    let invalid = "lifeguard_tls_certificate_reloads_total{result=\"invalid\"}";
    let cases: [(&Path, &str, &str); 2] = [
        (&cert, "tls.cert_file", "FIFO"),
        (&key, "tls.key_file", "character device"),
    ];
    for (i, (file, field, kind)) in cases.into_iter().enumerate() {
        if kind == "FIFO" {
            mkfifo(&swap);
        } else {
            std::os::unix::fs::symlink("/dev/zero", &swap).unwrap();
        }
        std::fs::rename(&swap, file).unwrap();
        let o = tokio::time::timeout(
            Duration::from_secs(5),
            reload_from(&shared, &config, Trigger::Admin),
        )
        .await
        .expect("reload answered");
        assert_eq!(o.result, ReloadResult::Invalid, "{o:?}");
        let want = format!(
            "{field}: \"{}\" is not a regular file ({kind})",
            file.display()
        );
        assert!(o.errors.contains(&want), "{want:?} not in {:?}", o.errors);
        assert_eq!(metric(proxy.admin(), invalid).await, (i + 1) as f64);
        assert_eq!(served().await, first.der);
        // Put this one back for the next case.
        std::fs::remove_file(file).unwrap();
        first.write(&cert, &key);
    }
    second.write(&cert, &key);
    let o = reload_from(&shared, &config, Trigger::Admin).await;
    assert_eq!(o.result, ReloadResult::Success, "{o:?}");
    assert_eq!(served().await, second.der);
}
