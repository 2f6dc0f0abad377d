//! lifeguard: a reverse-proxy sidecar that answers for the app when the app
//! cannot. See ARCHITECTURE.md for the map of the modules.
//!
//! Floors, from the ground up; a module imports only from floors below it:
//! `config` (pure values) → `error`, `metrics`, `inflight`, `logging`,
//! `shutdown` (leaves) → `upstream` → `runtime` → `proxy` → `server` →
//! `control` → `admin` → `app` (assembly) and the CLI commands.

pub mod config;
pub mod error;
pub mod inflight;
pub mod logging;
pub mod metrics;
pub mod shutdown;

pub mod upstream;

pub mod runtime;

pub mod proxy;

pub mod server;

pub mod control;

pub mod admin;

pub mod app;
pub mod drain_cmd;
