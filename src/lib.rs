//! lifeguard: a reverse-proxy sidecar that answers for the app when the app
//! cannot. See ARCHITECTURE.md for the map of the modules.

pub mod app;
pub mod config;
pub mod drain_cmd;
pub mod error;
pub mod inflight;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod shutdown;
pub mod state;
pub mod upstream;
