//! Node.js test apps: the npm install of `tests/express` (the Express
//! end-to-end tests' apps), done by the tests themselves once per test
//! process, and `NodeApp`, a `node <script>` child on port 0 (an Express app,
//! or a plain one from `tests/apps`) whose output lines are kept.

use crate::child::{kill, spawn_piped, wait_exit, Lines};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// `tests/express`: package.json, the committed package-lock.json, the apps.
pub fn express_dir() -> PathBuf {
    tests_dir().join("express")
}

/// The repository's `tests` directory (this crate is `tests/support`).
pub fn tests_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/support has a parent")
}

/// Installs the Express app's npm packages (`npm ci`) unless `node_modules`
/// already matches the committed lock file. Runs at most once per test process;
/// panics with npm's output if the install fails.
pub fn ensure_express_installed() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let dir = express_dir();
        if installed_and_current(&dir) {
            return Ok(());
        }
        let out = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .output()
            .map_err(|e| format!("cannot run npm (is Node.js installed?): {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "`npm ci` in {} failed ({}):\n{}\n{}",
                dir.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if !installed_and_current(&dir) {
            return Err(format!(
                "`npm ci` in {} succeeded but node_modules/express is missing",
                dir.display()
            ));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// `node_modules/express` exists and npm's hidden lock file
/// (`node_modules/.package-lock.json`, written by every install) is at least
/// as new as `package-lock.json` and `package.json`.
fn installed_and_current(dir: &Path) -> bool {
    let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(installed) = mtime(dir.join("node_modules/.package-lock.json")) else {
        return false;
    };
    dir.join("node_modules/express/package.json").is_file()
        && [dir.join("package-lock.json"), dir.join("package.json")]
            .into_iter()
            .all(|p| mtime(p).is_some_and(|t| t <= installed))
}

/// A Node.js process running a test app script. It must print `listening
/// <port>` as its first stdout line. Dropping it kills the process.
#[derive(Debug)]
pub struct NodeApp {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl NodeApp {
    /// Starts `node <script>` in `tests/express` with `env` added (`PORT`
    /// defaults to 0, `HOST` to 127.0.0.1) and waits for its port.
    pub async fn start(script: &str, env: &[(&str, &str)]) -> NodeApp {
        ensure_express_installed();
        NodeApp::spawn(&express_dir(), script, &[], env).await
    }

    /// Starts `node <script> <args>` for a script of `tests/apps` (plain
    /// Node.js, no npm packages) and waits for its port.
    pub async fn start_app(script: &str, args: &[&str]) -> NodeApp {
        NodeApp::spawn(&tests_dir().join("apps"), script, args, &[]).await
    }

    async fn spawn(dir: &Path, script: &str, args: &[&str], env: &[(&str, &str)]) -> NodeApp {
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .args(args)
            .current_dir(dir)
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .env_remove("NODE_OPTIONS")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let what = format!("`node {script}` (is Node.js installed?)");
        let mut child = spawn_piped(&mut cmd, &what);
        let pid = child.id().expect("node is running");
        let stdout = Lines::of(child.stdout.take().expect("stdout piped"));
        let stderr = Lines::of(child.stderr.take().expect("stderr piped"));

        let deadline = Instant::now() + Duration::from_secs(15);
        let port = loop {
            if let Some(line) = stdout.first() {
                match line
                    .strip_prefix("listening ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
                {
                    Some(port) => break port,
                    None => panic!("`node {script}` printed {line:?} before `listening <port>`"),
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                // Let the pipes drain so the panic shows why.
                tokio::time::sleep(Duration::from_millis(50)).await;
                panic!(
                    "`node {script}` exited with {status} before listening\nstdout: {:?}\nstderr:\n{}",
                    stdout.get(),
                    stderr.get().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "`node {script}` did not print `listening <port>` within 15 s\nstderr:\n{}",
                stderr.get().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        NodeApp {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
            child,
            stdout,
            stderr,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Sends `signal` (e.g. `libc::SIGKILL`) with the `kill` command, keeping
    /// the tests free of `unsafe`.
    pub fn kill(&self, signal: i32) {
        kill(self.pid, signal);
    }

    /// Waits up to `secs` for the process to exit.
    pub async fn wait_exit(&mut self, secs: u64) -> Option<ExitStatus> {
        wait_exit(&mut self.child, secs).await
    }

    /// stdout lines so far, `listening <port>` first.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.get()
    }

    /// stderr lines so far (Node's crash trace goes there).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.get()
    }

    /// Whether stdout reached end of file: after the process (and, under
    /// node:cluster, every worker) exited, no more lines will come.
    pub fn stdout_closed(&self) -> bool {
        self.stdout.closed()
    }

    /// Lines that start with `prefix` followed by a space, without the prefix.
    pub fn events(&self, prefix: &str) -> Vec<String> {
        let p = format!("{prefix} ");
        self.stdout
            .get()
            .iter()
            .filter_map(|l| l.strip_prefix(&p).map(str::to_owned))
            .collect()
    }

    /// How many times the app recorded order `id` (`delivered <id> <n>` lines).
    pub fn deliveries(&self, id: &str) -> usize {
        self.events("delivered")
            .iter()
            .filter(|rest| rest.split(' ').next() == Some(id))
            .count()
    }

    /// Requests the app received carrying `X-Request-Id: id`.
    pub fn received(&self, request_id: &str) -> usize {
        self.events("request")
            .iter()
            .filter(|rest| rest.rsplit(' ').next() == Some(request_id))
            .count()
    }

    /// Requests with this method and path (query excluded) that
    /// `tests/apps/crash_app.js` logged (`REQ <METHOD> <PATH>` lines).
    pub fn requests_to(&self, method: &str, path: &str) -> usize {
        let want = format!("{method} {path}");
        self.events("REQ").iter().filter(|l| **l == want).count()
    }
}
