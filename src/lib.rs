//! lifeguard: a reverse-proxy sidecar that answers for the app when the app
//! cannot. See ARCHITECTURE.md for the map of the modules.
//!
//! Floors, from the ground up; a module imports only from floors below it:
//! `config` (pure values) → `error`, `metrics`, `inflight`, `logging`,
//! `shutdown`, `inject` (leaves) → `upstream` → `runtime` → `proxy` → `server` →
//! `control` → `admin`, `webhook` → `app` (assembly) and the CLI commands.

pub mod config;
pub mod error;
pub mod inflight;
pub mod inject;
pub mod logging;
pub mod metrics;
pub mod shutdown;

pub mod upstream;

pub mod runtime;

pub mod proxy;

pub mod server;

pub mod control;

pub mod admin;
pub mod webhook;

pub mod app;
pub mod cli;
pub mod drain_cmd;
pub mod inject_cmd;
pub mod webhook_cmd;

/// What the fuzz targets in `fuzz/` (and `tests/fuzz_regressions.rs`, which
/// replays their findings) reach that is not public otherwise. Thin wrappers
/// only: no behaviour of its own. Not API.
#[doc(hidden)]
pub mod fuzzing {
    /// The WebSocket frame-boundary tracker of upgraded connections
    /// (`proxy::tunnel`).
    #[derive(Debug, Default)]
    pub struct FrameTracker(crate::proxy::tunnel::FrameTracker);

    impl FrameTracker {
        /// Follows `data`, the next bytes of one direction of the stream.
        pub fn advance(&mut self, data: &[u8]) {
            self.0.advance(data);
        }

        /// Whether the bytes so far end exactly at a frame boundary.
        pub fn at_boundary(&self) -> bool {
            self.0.at_boundary()
        }
    }
}
