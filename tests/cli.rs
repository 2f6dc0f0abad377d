//! The binary's interface: `lifeguard check`, config errors in run mode (exit
//! 64, every problem named by its field), `--version`, the repo's default
//! config, and a clear failure when the listen address is taken.

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
    "app.endpoints[1]: invalid socket address \"x:y\" (expected IP:PORT)",
    "app.connect_timeout: invalid duration \"5\"",
    "unavailable.retry_after: 0s is below the minimum",
    "log.format: unknown format \"xml\"",
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
        stderr(&o).contains("unknown field `endpoint`"),
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
