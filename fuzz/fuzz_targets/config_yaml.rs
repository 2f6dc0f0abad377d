//! Fuzz target `config_yaml`: see `src/config_yaml.rs` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Err(broken) = lifeguard_fuzz::config_yaml::check(data) {
        panic!("config_yaml: {broken}");
    }
});
