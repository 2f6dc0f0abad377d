//! The binary's interface: `lifeguard check`, config errors in run mode (exit
//! 64, every problem named by its field, one mistake per section all in one
//! run), `lifeguard config` (the effective config, itself a valid config
//! that reads back to the same values), `lifeguard schema`, `--version`,
//! the repo's default config, and a clear failure when the listen address
//! is taken.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EX_USAGE: i32 = 64;

/// Runs the binary with `args`, killing it if it is still running after
/// `secs` (a run that should fail must not hang).
fn run(args: &[&str], secs: u64) -> Output {
    support::process::run_bounded(args, secs).0
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A config file with `text` in a fresh temp dir (kept alive by the guard).
fn config_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn assert_no_panic(o: &Output) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "lifeguard panicked: {err}");
    assert_ne!(o.status.code(), Some(101), "panic exit code: {err}");
}

const VALID: &str = "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\napp:\n  endpoints: [\"127.0.0.1:3000\", \"127.0.0.1:3001\"]\n  connect_timeout: 500ms\nclient:\n  max_body_size: 10MiB\nlog:\n  format: json\n";

const SEVERAL_PROBLEMS: &str = "app:\n  endpoints: [\"127.0.0.1:1\", \"x:y\"]\n  connect_timeout: 5\nunavailable:\n  retry_after: 0s\nlog:\n  format: xml\n";

/// The problems in `SEVERAL_PROBLEMS`, each as the start of one stderr line.
const EXPECTED_PROBLEMS: &[&str] = &[
    "app.endpoints[1]: invalid address \"x:y\": port \"y\" is not a number from 0 to 65535; allowed: IP:PORT or HOST:PORT",
    "app.connect_timeout: invalid duration \"5\": give a unit, e.g. \"5s\" or \"5ms\"; allowed: 10ms to 1m",
    "unavailable.retry_after: 0s is below the minimum of 1s; allowed: 1s to 24h",
    "log.format: found \"xml\"; allowed: json or text",
];

fn assert_lists_every_problem(o: &Output) {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().map(str::trim).collect();
    for want in EXPECTED_PROBLEMS {
        assert!(
            lines.iter().any(|l| l.starts_with(want)),
            "missing problem line starting with {want:?} in:\n{err}"
        );
    }
}

#[test]
fn check_accepts_a_valid_config() {
    let (_dir, path) = config_file(VALID);
    let o = run(&["check", "--config", p(&path)], 10);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(stdout(&o).contains("ok"), "stdout: {}", stdout(&o));
    // An empty file is valid too: every key has a default.
    let (_dir, empty) = config_file("");
    let o = run(&["check", "--config", p(&empty)], 10);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
}

#[test]
fn check_lists_every_problem_with_its_field() {
    let (_dir, path) = config_file(SEVERAL_PROBLEMS);
    let o = run(&["check", "--config", p(&path)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert_lists_every_problem(&o);
    assert!(
        stderr(&o).contains(p(&path)),
        "stderr does not name the file: {}",
        stderr(&o)
    );
    assert_no_panic(&o);
}

#[test]
fn check_names_an_unknown_key() {
    let (_dir, path) = config_file("app:\n  endpoint: [\"127.0.0.1:3000\"]\n");
    let o = run(&["check", "--config", p(&path)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "app.endpoint: unknown field `endpoint` (did you mean `endpoints`?); allowed: "
        ),
        "stderr: {}",
        stderr(&o)
    );
    let (_dir, path) = config_file("listen: \"127.0.0.1:0\"\nlisten_port: 80\n");
    let o = run(&["check", "--config", p(&path)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains("listen_port"), "stderr: {}", stderr(&o));
}

#[test]
fn check_rejects_invalid_yaml_and_missing_file() {
    let (_dir, path) = config_file("listen: \"127.0.0.1:80\napp:\n  endpoints: [\n");
    let o = run(&["check", "--config", p(&path)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains(p(&path)), "stderr: {}", stderr(&o));
    assert_no_panic(&o);

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let o = run(&["check", "--config", p(&missing)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert!(stderr(&o).contains(p(&missing)), "stderr: {}", stderr(&o));
    assert_no_panic(&o);
}

#[test]
fn run_mode_with_a_bad_config_exits_64_with_the_same_messages() {
    let (_dir, path) = config_file(SEVERAL_PROBLEMS);
    let o = run(&["--config", p(&path)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert_lists_every_problem(&o);
    assert_no_panic(&o);

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let o = run(&["--config", p(&missing)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
}

#[test]
fn version() {
    let o = run(&["--version"], 10);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        stdout(&o).trim(),
        format!("lifeguard {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(stdout(&o).trim(), "lifeguard 0.1.0");
}

#[test]
fn the_repository_default_config_passes_check() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");
    assert!(Path::new(path).exists(), "{path} is missing");
    let o = run(&["check", "--config", path], 10);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
}

/// Binding fails: a clear message naming the field, a non-zero exit, no
/// panic, and no hang.
fn assert_bind_failure(yaml: &str, field: &str, taken: std::net::SocketAddr) {
    let (_dir, path) = config_file(yaml);
    let o = run(&["--config", p(&path)], 10);
    let err = stderr(&o);
    assert!(!o.status.success(), "exited 0 with {field} taken: {err}");
    assert_no_panic(&o);
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("({field})")) && l.contains(&taken.to_string())),
        "no line naming {field} and {taken}: {err}"
    );
}

#[test]
fn listen_address_in_use_fails_clearly() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    assert_bind_failure(
        &format!(
            "listen: \"{addr}\"\nadmin:\n  listen: \"127.0.0.1:0\"\napp:\n  endpoints: [\"127.0.0.1:1\"]\n"
        ),
        "listen",
        addr,
    );
    assert_bind_failure(
        &format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"{addr}\"\napp:\n  endpoints: [\"127.0.0.1:1\"]\n"
        ),
        "admin.listen",
        addr,
    );
}

/// `check` on a path that is no regular file (a device that never ends, a
/// FIFO nobody writes to): exit 64 at once, naming the file and what it is.
#[test]
fn check_refuses_a_config_path_that_is_a_device_or_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    for (path, kind) in [
        (Path::new("/dev/zero"), "character device"),
        (Path::new("/dev/urandom"), "character device"),
        (fifo.as_path(), "FIFO"),
    ] {
        // `run` panics past 2 s; the refusal itself is immediate.
        let o = run(&["check", "--config", p(path)], 2);
        assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
        let want = format!("\"{}\" is not a regular file ({kind})", path.display());
        assert!(stderr(&o).contains(&want), "stderr: {}", stderr(&o));
        assert_no_panic(&o);
    }
}

/// A page (or token) that is a FIFO used to make `check` hang: now exit 64 with
/// the field.
#[test]
fn check_names_the_field_of_a_fifo_page() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("page.html");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let (_d, path) = config_file(&format!(
        "{VALID}maintenance:\n  page: \"{}\"\n",
        fifo.display()
    ));
    let o = run(&["check", "--config", p(&path)], 2);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    let want = format!(
        "maintenance.page: \"{}\" is not a regular file (FIFO)",
        fifo.display()
    );
    assert!(stderr(&o).contains(&want), "stderr: {}", stderr(&o));
}

/// A ConfigMap mount: `config.yaml -> ..data/config.yaml`, `..data -> a
/// timestamped directory`, and the token beside it the same way.
#[test]
fn check_accepts_a_configmap_style_symlinked_config() {
    let cm = support::configmap::ConfigMapDir::new(&[("config.yaml", ""), ("token", "t0ken\n")]);
    let yaml = format!(
        "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n  token_file: \"{}\"\n",
        cm.path("token").display()
    );
    cm.update(&[("config.yaml", &yaml), ("token", "t0ken\n")]);
    let o = run(&["check", "--config", p(&cm.path("config.yaml"))], 10);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
}

/// One mistake in every section (and an unknown top-level key): `check`
/// names every one in one run, each on its own line starting with its
/// field, with what was found and what is allowed, in the config's words.
#[test]
fn check_reports_one_mistake_in_each_section_in_one_run() {
    let yaml = "\
listen: \"127.0.0.1:99999\"
intervall: 2s
admin:
  listen: [1, 2]
app:
  conect_timeout: 1s
client:
  max_header_size: 1KiB
unavailable:
  hold: 10m
health:
  healthy_threshold: -1
retry:
  attempts: lots
drain:
  delay: soon
log:
  format: xml
reload:
  poll_interval: 5
maintenance:
  enabled: maybe
tls:
  cert_file: [a]
  key_fil: x
";
    let (_dir, path) = config_file(yaml);
    let o = run(&["check", "--config", p(&path)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert_no_panic(&o);
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().map(str::trim).collect();
    let want = [
        "listen: invalid address \"127.0.0.1:99999\": port \"99999\" is not a number from 0 to 65535; allowed: ",
        "intervall: unknown field `intervall` (did you mean `health.interval`?); allowed: admin, app, client, drain, health, listen, log, maintenance, reload, retry, tls, unavailable",
        "admin.listen: found a list; allowed: an address, written IP:PORT, HOST:PORT or :PORT",
        "app.conect_timeout: unknown field `conect_timeout` (did you mean `connect_timeout`?); allowed: ",
        "client.max_header_size: 1KiB is below the minimum of 16 KiB; allowed: 16 KiB to 1 MiB",
        "unavailable.hold: 10m is above the maximum of 5m; allowed: 0s to 5m",
        "health.healthy_threshold: found -1; allowed: a whole number from 1 to 100",
        "retry.attempts: found \"lots\"; allowed: a whole number from 0 to 10",
        "drain.delay: invalid duration \"soon\": write a number with a unit: 250ms, 5s, 1m, 1h; allowed: 0s to 1h",
        "log.format: found \"xml\"; allowed: json or text",
        "reload.poll_interval: invalid duration \"5\": give a unit",
        "maintenance.enabled: found \"maybe\"; allowed: true or false",
        "tls.key_fil: unknown field `key_fil` (did you mean `key_file`?); allowed: cert_file, key_file",
    ];
    for w in want {
        assert!(
            lines.iter().any(|l| l.starts_with(w)),
            "missing a line starting with {w:?} in:\n{err}"
        );
    }
    assert_eq!(
        err.lines().filter(|l| l.starts_with("  ")).count(),
        want.len() + 1,
        "one line per problem (these, and tls.cert_file's wrong type):\n{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("tls.cert_file: found a list; allowed: a string")),
        "{err}"
    );
    for l in &lines {
        assert!(!l.contains("..="), "Rust range syntax: {l}");
        assert!(!l.contains("variations"), "humantime's phrasing: {l}");
    }
}

/// The body of `lifeguard config`'s output (its header comments name the
/// file and its hash, which differ between two files).
fn body(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `lifeguard config` prints every key with its default filled in; that
/// output is a config `check` accepts, and printing it again gives the
/// same values (a fixed point), for the repository's config, an empty
/// file, and a config using every written form (names, `:PORT`, Kubernetes
/// sizes, status classes).
#[test]
fn config_prints_the_effective_config_which_reads_back_the_same() {
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/config.yaml");
    let forms = "listen: \":18080\"\nadmin:\n  listen: \"localhost:19901\"\napp:\n  endpoints: [\"localhost:3000\", \"127.0.0.1:3001\"]\n  connect_timeout: 1500ms\nclient:\n  max_header_size: 64Ki\n  max_body_size: 1Mi\nhealth:\n  expect_status: \"2xx, 304\"\nretry:\n  idempotency_key_header: Idempotency-Key\nmaintenance:\n  allow_paths: [/health]\n  bypass_cidrs: [10.0.0.0/8]\n";
    let (_d1, empty) = config_file("");
    let (_d2, forms_path) = config_file(forms);
    for path in [Path::new(repo), empty.as_path(), forms_path.as_path()] {
        let first = run(&["config", "--config", p(path)], 10);
        assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
        let printed = stdout(&first);
        for key in [
            "listen:",
            "  endpoints:",
            "  expect_status:",
            "  max_header_size:",
            "  poll_interval:",
            "  retry_after:",
        ] {
            assert!(printed.contains(key), "{key} missing from\n{printed}");
        }
        let (_d, again) = config_file(&printed);
        let o = run(&["check", "--config", p(&again)], 10);
        assert_eq!(o.status.code(), Some(0), "{printed}\n{}", stderr(&o));
        let second = run(&["config", "--config", p(&again)], 10);
        assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
        assert_eq!(body(&stdout(&second)), body(&printed), "{}", path.display());
    }
    let forms_out = stdout(&run(&["config", "--config", p(&forms_path)], 10));
    for line in [
        "listen: 0.0.0.0:18080",
        "  listen: 127.0.0.1:19901",
        "  - localhost:3000",
        "  connect_timeout: 1s500ms",
        "  max_header_size: 64KiB",
        "  max_body_size: 1MiB",
        "  expect_status: 200-299, 304",
        "  idempotency_key_header: idempotency-key",
    ] {
        assert!(
            forms_out.lines().any(|l| l == line),
            "{line:?} not in\n{forms_out}"
        );
    }
    let defaults = stdout(&run(&["config", "--config", p(&empty)], 10));
    assert!(
        defaults.contains("  expect_status: 100-499\n"),
        "{defaults}"
    );
    assert!(defaults.contains("  - 127.0.0.1:3000\n"), "{defaults}");

    // A bad config: exit 64 and the same problem lines as `check`.
    let (_d3, bad) = config_file(SEVERAL_PROBLEMS);
    let o = run(&["config", "--config", p(&bad)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "stderr: {}", stderr(&o));
    assert_lists_every_problem(&o);
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

/// `lifeguard schema` prints the committed docs/config.schema.json, and
/// `--chart` the part the chart embeds; neither needs a config file.
#[test]
fn schema_prints_the_committed_schema() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.yaml");
    let o = run(&["schema", "--config", p(&missing)], 10);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let printed: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/config.schema.json"
    ))
    .unwrap();
    let committed: serde_json::Value = serde_json::from_str(&committed).unwrap();
    assert_eq!(printed, committed, "run scripts/update-config-schema.sh");
    let o = run(&["schema", "--chart"], 10);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let chart: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(chart["properties"].get("listen").is_none(), "{chart}");
    assert_eq!(
        chart["properties"]["health"],
        printed["properties"]["health"]
    );
}

/// Host names and `:PORT` are accepted; a name that does not resolve is an
/// error naming the field and the name.
#[test]
fn check_resolves_host_names() {
    let (_d, ok) = config_file(
        "listen: \":0\"\nadmin:\n  listen: \"localhost:0\"\napp:\n  endpoints: [\"localhost:3000\"]\n",
    );
    let o = run(&["check", "--config", p(&ok)], 10);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (_d, bad) = config_file(
        "app:\n  endpoints: [\"localhost:3000\", \"app.invalid:3000\", \"127.0.0.1:3000\"]\n",
    );
    let o = run(&["check", "--config", p(&bad)], 10);
    assert_eq!(o.status.code(), Some(EX_USAGE), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("app.endpoints[1]: the host name \"app.invalid\" in \"app.invalid:3000\" does not resolve"),
        "{err}"
    );
    assert!(
        err.contains("app.endpoints[2]: duplicate endpoint \"127.0.0.1:3000\" (127.0.0.1:3000 is listed before)"),
        "{err}"
    );
}
