//! Client-facing side: listeners, per-connection tasks (plain or TLS) with
//! their watchdog, and the client socket wrapper.

mod conn;
mod io;
pub mod listener;
pub mod tls;
