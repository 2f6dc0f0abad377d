//! Every path into the lifeguard library that the checks use (as
//! tests/support/src/api.rs is for the tests, which provide the same names
//! when they compile these checks: tests/fuzz_regressions.rs).

pub(crate) use lifeguard::config::{sha256_hex, Config};
pub(crate) use lifeguard::fuzzing::FrameTracker;
pub(crate) use lifeguard::proxy::headers;
