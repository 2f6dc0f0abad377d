//! The checks behind the fuzz targets in `fuzz_targets/`: each takes the
//! fuzzer's bytes, runs them through lifeguard, and returns the first broken
//! invariant as `Err` (the target panics with it, so libFuzzer keeps the
//! input). The same files are compiled on stable by
//! `tests/fuzz_regressions.rs`, which replays `seeds/` and `regressions/`.

mod api;
pub mod config_yaml;
pub mod request_head;
pub mod ws_frames;
