//! The fuzz targets' checks on stable, under plain `cargo test`: every seed
//! (`fuzz/seeds/<target>/`) and every finding kept as a regression input
//! (`fuzz/regressions/<target>/`) goes through the very check its target
//! runs (`fuzz/src/<target>.rs`, compiled here as a module), so a fixed
//! crash stays fixed without nightly or cargo-fuzz. How to fuzz:
//! docs/development.md#fuzzing.
//!
//! A finding not fixed yet is kept as `fuzz/regressions/<target>/open-*`:
//! it must pass the target's `check` (which tolerates the open findings its
//! module lists, so fuzzing goes on past them) and still fail its
//! `check_strict`; once it passes that too, the finding is fixed: drop the
//! tolerance and the `open-` prefix.

use std::path::{Path, PathBuf};

// The checks name the library through `crate::api` (fuzz/src/api.rs in the
// fuzz crate; here the tests' one place for library paths).
use support::api;

#[allow(unreachable_pub)]
#[path = "../fuzz/src/config_yaml.rs"]
mod config_yaml;
#[allow(unreachable_pub)]
#[path = "../fuzz/src/request_head.rs"]
mod request_head;
#[allow(unreachable_pub)]
#[path = "../fuzz/src/ws_frames.rs"]
mod ws_frames;

type Check = fn(&[u8]) -> Result<(), String>;

/// Each target: name, `check` (what the fuzz target runs), `check_strict`.
const TARGETS: [(&str, Check, Check); 3] = [
    (
        "request_head",
        request_head::check,
        request_head::check_strict,
    ),
    ("ws_frames", ws_frames::check, ws_frames::check_strict),
    ("config_yaml", config_yaml::check, config_yaml::check_strict),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none if it does not exist).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = dir
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check, strict) = TARGETS.iter().find(|t| t.0 == target).unwrap();
    let seeds = inputs("seeds", target);
    assert!(!seeds.is_empty(), "no seeds for {target} in fuzz/seeds/");
    let mut broken = Vec::new();
    for path in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap();
        let open = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("open-");
        if let Err(e) = check(&data) {
            broken.push(format!("{}: {e}", path.display()));
        }
        match (strict(&data), open) {
            (Err(e), false) => broken.push(format!("{} (strict): {e}", path.display())),
            (Ok(()), true) => broken.push(format!(
                "{}: passes check_strict now: the finding is fixed; drop its tolerance in fuzz/src/{target}.rs and the open- prefix",
                path.display()
            )),
            _ => {}
        }
    }
    assert!(broken.is_empty(), "{target}:\n{}", broken.join("\n"));
}

#[test]
fn request_head_seeds_and_regressions_pass() {
    replay("request_head");
}

#[test]
fn ws_frames_seeds_and_regressions_pass() {
    replay("ws_frames");
}

#[test]
fn config_yaml_seeds_and_regressions_pass() {
    replay("config_yaml");
}

/// A finding filed under a misspelt target would never be replayed.
#[test]
fn every_corpus_directory_names_a_target() {
    for kind in ["seeds", "regressions"] {
        let Ok(dir) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for e in dir {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_file() && name == "README.md" {
                continue;
            }
            assert!(
                TARGETS.iter().any(|t| t.0 == name),
                "fuzz/{kind}/{name} is not a fuzz target's directory"
            );
        }
    }
}
