//! Client-facing side: listeners, per-connection tasks, and the admin port.

pub mod admin;
mod conn;
mod io;
pub mod listener;
mod status;

pub use conn::ConnState;
