//! Fuzz target `request_head`: see `src/request_head.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = lifeguard_fuzz::request_head::check(data) {
        panic!("request_head: {broken}");
    }
});
