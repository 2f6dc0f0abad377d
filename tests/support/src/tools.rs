//! The repository and the Kubernetes tools its tests use (helm, kubectl,
//! kubernetes-validate), installed by `scripts/install-tools.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The bin directory of scripts/install-tools.sh (installed once per test
/// process; the script itself is idempotent and locked).
pub fn k8s_tools() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/install-tools.sh"))
            .output()
            .expect("run scripts/install-tools.sh");
        assert!(
            out.status.success(),
            "scripts/install-tools.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        PathBuf::from(stdout.lines().last().expect("bin dir").trim())
    })
}

/// Runs `cmd` to the end and returns its stdout and stderr together;
/// panics, naming `what` and showing that output, if it did not succeed.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    text
}
