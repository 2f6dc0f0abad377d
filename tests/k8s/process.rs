//! The pod's containers as child processes of the simulation: output lines
//! collected, signals, and the exit by the end of the grace period.

use super::lifecycle::Exit;
use support::child::{spawn_piped, wait_line, Lines};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// A child process with its output lines collected.
pub(crate) struct Proc {
    child: Child,
    lines: Lines,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command, what: &str) -> Proc {
        let mut child = spawn_piped(cmd, what);
        let lines = Lines::of_child(&mut child);
        Proc { child, lines }
    }

    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines.get()
    }

    /// Waits (up to `secs`) for an output line `f` accepts.
    pub(crate) async fn wait_line<T>(
        &mut self,
        what: &str,
        secs: u64,
        f: impl Fn(&str) -> Option<T>,
    ) -> T {
        wait_line(&mut self.child, &self.lines, what, secs, f).await
    }

    pub(crate) async fn signal(&self, sig: &str) {
        let Some(pid) = self.child.id() else { return };
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .await;
    }

    /// Waits for the exit until `deadline`, then SIGKILLs (the kubelet at
    /// the end of the grace period).
    pub(crate) async fn exit_by(&mut self, deadline: Instant, t0: Instant) -> Exit {
        match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(status) => Exit {
                status: status.ok(),
                at: t0.elapsed(),
                killed: false,
            },
            Err(_) => {
                let _ = self.child.start_kill();
                Exit {
                    status: self.child.wait().await.ok(),
                    at: t0.elapsed(),
                    killed: true,
                }
            }
        }
    }
}
