//! The `lifeguard` binary: the allocator, then the command line (`cli.rs`).

use std::process::ExitCode;

/// jemalloc, not glibc's malloc: glibc kept a burst's peak for good (RSS
/// stayed at the peak after thousands of connections closed) and grew and
/// shrank its thread heaps with `mprotect` on the request path. Run-time
/// options (purging on a background thread, one-second decay) are compiled
/// in from `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    lifeguard::cli::main()
}
