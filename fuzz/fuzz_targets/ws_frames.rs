//! Fuzz target `ws_frames`: see `src/ws_frames.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = lifeguard_fuzz::ws_frames::check(data) {
        panic!("ws_frames: {broken}");
    }
});
