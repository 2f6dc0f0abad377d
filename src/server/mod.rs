//! Client-facing side: listeners, per-connection tasks (plain or TLS), and
//! the admin port.

pub mod admin;
mod conn;
mod io;
pub mod listener;
mod status;
pub mod tls;

pub use conn::ConnState;
