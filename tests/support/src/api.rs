//! Every path into the lifeguard library that the tests use, in one place:
//! when the library's modules move, this file is the one to fix. The test
//! binaries reach the library through these names (`support::api::...`),
//! never through `lifeguard::...` paths of their own.

pub use lifeguard::admin::serve_connection as serve_admin_connection;
pub use lifeguard::app::{start, Running};
pub use lifeguard::config::{sha256_hex, Config, LogConfig, LogFormat};
pub use lifeguard::control::reload::reload_from;
pub use lifeguard::logging::init as init_logging;
pub use lifeguard::runtime::{ReloadResult, Shared, Trigger};
pub use lifeguard::upstream::health::{ProbeOutcome, State};
pub use lifeguard::upstream::Endpoint;
// The fuzz targets' checks (fuzz/src/*.rs), compiled by tests/fuzz_regressions.rs.
pub use lifeguard::fuzzing::FrameTracker;
pub use lifeguard::proxy::headers;
