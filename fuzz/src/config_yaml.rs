//! `config_yaml`: `Config::from_yaml` on arbitrary UTF-8. Never panics; an
//! accepted config carries the text's SHA-256, its warnings can be
//! computed, and its effective config (`lifeguard config`) is itself
//! accepted and reads back to the same values; a refused one names at least
//! one problem, every problem a non-empty line.
//!
//! Validation reads the files a config names (`admin.token_file`,
//! `maintenance.page`, `maintenance.bypass_token_file`, `tls.cert_file`,
//! `tls.key_file`). Reading a regular file is harmless, but a device, a
//! FIFO or a `/proc` file can block or never end (`/dev/zero`,
//! `/dev/stdin`, `/proc/self/fd/0`, a FIFO under `/run`). So inputs that
//! could spell such a path are skipped before the call: any containing
//! `/dev`, `/proc`, `/sys` or `/run`, and any containing a backslash (a
//! double-quoted YAML escape such as `\x2f` can spell any path). Relative
//! paths resolve inside the checkout, where the fuzzer runs (cargo fuzz and
//! `cargo test` both start in the repository), and it holds no such files.

use crate::api::{sha256_hex, Config};

/// Substrings that make an input skipped (see the module doc).
const SKIPPED: [&str; 5] = ["/dev", "/proc", "/sys", "/run", "\\"];

/// As [`check`]: no open finding is tolerated here.
pub fn check_strict(data: &[u8]) -> Result<(), String> {
    check(data)
}

/// Runs one input; `Err` names the first broken invariant.
pub fn check(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    if SKIPPED.iter().any(|s| text.contains(s)) {
        return Ok(());
    }
    match Config::from_yaml(text, "fuzz") {
        Ok(config) => {
            if config.source_hash != sha256_hex(text.as_bytes()) {
                return Err("source_hash is not the text's SHA-256".into());
            }
            if config.source_path.is_some() {
                return Err("in-process YAML has a source path".into());
            }
            let _ = config.warnings();
            let printed = config.effective_yaml();
            match Config::from_yaml(&printed, "fuzz (effective)") {
                Ok(again) if again.effective() == config.effective() => Ok(()),
                Ok(_) => Err(format!(
                    "the effective config reads back differently:\n{printed}"
                )),
                Err(e) => Err(format!("the effective config is refused: {e}\n{printed}")),
            }
        }
        Err(e) => {
            let problems = e.problems();
            if problems.is_empty() {
                return Err(format!("refused with no problem: {e:?}"));
            }
            if let Some(p) = problems.iter().find(|p| p.trim().is_empty()) {
                return Err(format!("an empty problem line {p:?} in {problems:?}"));
            }
            let _ = e.fields();
            let _ = e.to_string();
            Ok(())
        }
    }
}
