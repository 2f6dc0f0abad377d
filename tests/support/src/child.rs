//! Child processes (lifeguard, Node.js apps): spawned with their output
//! piped, every output line kept as it comes, signals sent with kill(1) so
//! the tests stay free of `unsafe`, and waits with a time limit.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// Spawns `cmd` with stdout and stderr piped; the child is killed when
/// dropped. Panics with `what` if it cannot be spawned.
pub fn spawn_piped(cmd: &mut Command, what: &str) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {what}: {e}"))
}

/// The lines read from one or more pipes, in arrival order.
#[derive(Clone, Default, Debug)]
pub struct Lines {
    lines: Arc<Mutex<Vec<String>>>,
    closed: Arc<AtomicBool>,
}

impl Lines {
    /// Starts collecting the lines of `pipe`.
    pub fn of(pipe: impl AsyncRead + Unpin + Send + 'static) -> Lines {
        let lines = Lines::default();
        lines.add(pipe);
        lines
    }

    /// The lines of a child's stdout and stderr, together.
    pub fn of_child(child: &mut Child) -> Lines {
        let lines = Lines::of(child.stdout.take().expect("stdout piped"));
        lines.add(child.stderr.take().expect("stderr piped"));
        lines
    }

    /// Collects the lines of `pipe` too.
    pub fn add(&self, pipe: impl AsyncRead + Unpin + Send + 'static) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(pipe).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                me.lines.lock().unwrap().push(line);
            }
            me.closed.store(true, Ordering::SeqCst);
        });
    }

    /// Every line so far.
    pub fn get(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line, if one came.
    pub fn first(&self) -> Option<String> {
        self.lines.lock().unwrap().first().cloned()
    }

    /// Whether a pipe reached end of file (for one pipe: no more lines).
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Waits (up to `secs`) for a line of `lines`, the output of `child`, that
/// `f` accepts, and returns what `f` made of it. Panics, showing the lines,
/// when the child exits first or time runs out.
pub async fn wait_line<T>(
    child: &mut Child,
    lines: &Lines,
    what: &str,
    secs: u64,
    f: impl Fn(&str) -> Option<T>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = lines.get().iter().find_map(|l| f(l)) {
            return found;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what}: exited with {status}: {:?}", lines.get());
        }
        assert!(
            Instant::now() < deadline,
            "{what}: timed out: {:?}",
            lines.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `signal` (e.g. `libc::SIGKILL`) to `pid` with the `kill` command.
pub fn kill(pid: u32, signal: i32) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits up to `secs` for `child` to exit.
pub async fn wait_exit(child: &mut Child, secs: u64) -> Option<ExitStatus> {
    tokio::time::timeout(Duration::from_secs(secs), child.wait())
        .await
        .ok()
        .and_then(Result::ok)
}

/// The proxy and admin addresses in lifeguard's JSON `lifeguard started`
/// log line, if `line` is that line.
pub fn started_addrs(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v["message"] != "lifeguard started" {
        return None;
    }
    Some((
        v["listen"].as_str()?.parse().ok()?,
        v["admin"].as_str()?.parse().ok()?,
    ))
}
