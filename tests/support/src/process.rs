//! lifeguard as a real child process: config written to a temp dir, JSON logs
//! captured, real signals.

use crate::child::{kill, spawn_piped, started_addrs, wait_exit, wait_line, Lines};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

#[derive(Debug)]
pub struct ProxyProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    logs: Lines,
}

/// The lifeguard binary of this build. Cargo builds it with the integration
/// tests and names it in `CARGO_BIN_EXE_lifeguard`, at run time too since
/// Cargo 1.94; before that only at compile time, and this crate is not the
/// one compiled with it: the binary is then found next to the test
/// executable's `deps/` directory, where Cargo puts it.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("CARGO_BIN_EXE_lifeguard") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe
            .parent()
            .filter(|d| d.ends_with("deps"))
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("{} is not in a Cargo `deps` directory", exe.display()));
        let path = dir.join(format!("lifeguard{}", std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "no lifeguard binary at {}: run the tests with `cargo test`",
            path.display()
        );
        path
    })
}

impl ProxyProcess {
    /// Starts the binary on `yaml` (JSON logs and port-0 listeners are added
    /// unless `yaml` sets them) and waits until it is serving.
    pub async fn start(yaml: &str) -> ProxyProcess {
        let (dir, config_path) = write_config(yaml);
        Self::start_with_file(dir, config_path).await
    }

    /// As [`ProxyProcess::start`], under `ulimit -n nofile` (soft and hard
    /// limit on open file descriptors), set by `sh` before it execs the
    /// binary (so the child's pid is lifeguard's).
    pub async fn start_with_nofile(yaml: &str, nofile: u32) -> ProxyProcess {
        let (dir, config_path) = write_config(yaml);
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" --config \"$1\""))
            .arg(binary())
            .arg(&config_path);
        Self::start_command(cmd, dir, config_path).await
    }

    /// As [`ProxyProcess::start`], run through `wrapper` (e.g. `taskset -c
    /// 0`, which execs the binary, so the child's pid is lifeguard's) with
    /// `env` added.
    pub async fn start_wrapped(yaml: &str, wrapper: &[&str], env: &[(&str, &str)]) -> ProxyProcess {
        let (dir, config_path) = write_config(yaml);
        let mut cmd = Command::new(wrapper[0]);
        cmd.args(&wrapper[1..])
            .arg(binary())
            .arg("--config")
            .arg(&config_path)
            .envs(env.iter().copied());
        Self::start_command(cmd, dir, config_path).await
    }

    /// As [`crate::Proxy::with_endpoints`], as a child process.
    pub async fn with_endpoints(endpoints: &[SocketAddr], extra: &str) -> ProxyProcess {
        ProxyProcess::start(&crate::endpoints_yaml(endpoints, extra)).await
    }

    pub async fn start_with_file(dir: tempfile::TempDir, config_path: PathBuf) -> ProxyProcess {
        let mut cmd = Command::new(binary());
        cmd.arg("--config").arg(&config_path);
        Self::start_command(cmd, dir, config_path).await
    }

    async fn start_command(
        mut cmd: Command,
        dir: tempfile::TempDir,
        config_path: PathBuf,
    ) -> ProxyProcess {
        let mut child = spawn_piped(&mut cmd, "lifeguard");
        let logs = Lines::of_child(&mut child);
        let (addr, admin) =
            wait_line(&mut child, &logs, "lifeguard start", 10, started_addrs).await;
        ProxyProcess {
            child,
            addr,
            admin,
            dir,
            config_path,
            logs,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    /// A `kB` field of `/proc/<pid>/status` (`VmRSS`: resident now,
    /// `VmHWM`: the peak), in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        kill(self.pid() as u32, sig);
    }

    /// Waits up to `secs` for the process to exit.
    pub async fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        wait_exit(&mut self.child, secs).await
    }

    /// Sends SIGTERM to a process that has drained already: it exits 0 at
    /// once.
    pub async fn assert_exits_at_once_on_sigterm(&mut self) {
        let t = Instant::now();
        self.signal(libc::SIGTERM);
        let st = self.wait_exit(3).await.expect("exits on SIGTERM");
        assert_eq!(st.code(), Some(0), "{st:?}");
        assert!(
            t.elapsed() < Duration::from_millis(700),
            "already drained, but exit took {:?}",
            t.elapsed()
        );
    }

    /// All log lines so far (stdout and stderr).
    pub fn logs(&self) -> Vec<String> {
        self.logs.get()
    }

    /// Log lines parsed as JSON objects.
    pub fn json_logs(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The JSON log lines with `"event": <event>` (e.g. `app_connection_lost`).
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.json_logs()
            .into_iter()
            .filter(|v| v["event"] == event)
            .collect()
    }
}

/// Writes `yaml` (with JSON logs and port-0 listeners unless it sets them)
/// to `config.yaml` in a new temp dir.
fn write_config(yaml: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.yaml");
    let mut text = String::new();
    if !yaml.contains("listen:") {
        text.push_str("listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\n");
    }
    if !yaml.contains("log:") {
        text.push_str("log:\n  format: json\n  level: info\n");
    }
    text.push_str(yaml);
    std::fs::write(&config_path, &text).unwrap();
    (dir, config_path)
}

/// Runs `lifeguard args` to its end, killing it if it is still running after
/// `secs` (a run that should fail must not hang). Returns its output and how
/// long it took.
pub fn run_bounded(args: &[&str], secs: u64) -> (std::process::Output, Duration) {
    use std::process::{Command, Stdio};
    let started = Instant::now();
    let child = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lifeguard");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(out) => (out.expect("lifeguard output"), started.elapsed()),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let out = rx.recv().ok().and_then(Result::ok);
            panic!(
                "lifeguard {args:?} still running after {secs}s; stderr: {}",
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            );
        }
    }
}
