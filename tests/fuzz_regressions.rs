//! The fuzz targets' checks on stable, under plain `cargo test`: every seed
//! (`fuzz/seeds/<target>/`) and every finding kept as a regression input
//! (`fuzz/regressions/<target>/`) goes through the very check its target
//! runs (`fuzz/src/<target>.rs`, compiled here as a module), so a fixed
//! crash stays fixed without nightly or cargo-fuzz. How to fuzz:
//! docs/development.md#fuzzing.

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

const TARGETS: [(&str, Check); 3] = [
    ("request_head", request_head::check),
    ("ws_frames", ws_frames::check),
    ("config_yaml", config_yaml::check),
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

fn replay(target: &str, check: Check) {
    let seeds = inputs("seeds", target);
    assert!(!seeds.is_empty(), "no seeds for {target} in fuzz/seeds/");
    let mut broken = Vec::new();
    for path in seeds.iter().chain(&inputs("regressions", target)) {
        let data = std::fs::read(path).unwrap();
        if let Err(e) = check(&data) {
            broken.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(broken.is_empty(), "{target}:\n{}", broken.join("\n"));
}

#[test]
fn request_head_seeds_and_regressions_pass() {
    replay("request_head", request_head::check);
}

#[test]
fn ws_frames_seeds_and_regressions_pass() {
    replay("ws_frames", ws_frames::check);
}

#[test]
fn config_yaml_seeds_and_regressions_pass() {
    replay("config_yaml", config_yaml::check);
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
                TARGETS.iter().any(|(t, _)| *t == name),
                "fuzz/{kind}/{name} is not a fuzz target's directory"
            );
        }
    }
}
