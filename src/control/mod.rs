//! Every long-lived task: config reload (poll, SIGHUP, admin), certificate
//! rotation, health probers, the maintenance flag-file watcher, idle
//! app-connection eviction, and the drain driver. Each runs until the phase
//! reaches `Stopped`.

pub mod certs;
pub mod drain;
pub mod eviction;
pub mod flag_file;
pub mod probers;
pub mod reload;
