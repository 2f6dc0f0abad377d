//! Command line: `lifeguard [--config PATH]` runs the proxy; `check`
//! validates a config; `drain` drains a running lifeguard (preStop hook);
//! `inject` adds lifeguard to Kubernetes manifests (no config needed).
//! Exit 64 (EX_USAGE) on a bad config.

use clap::{Parser, Subcommand};
use lifeguard::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const EX_USAGE: u8 = 64;

/// jemalloc, not glibc's malloc: glibc kept a burst's peak for good (RSS
/// stayed at the peak after thousands of connections closed) and grew and
/// shrank its thread heaps with `mprotect` on the request path. Run-time
/// options (purging on a background thread, one-second decay) are compiled
/// in from `.cargo/config.toml`.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "lifeguard",
    version,
    about = "A reverse-proxy sidecar that answers for the app when the app cannot"
)]
struct Cli {
    /// Path of the YAML config file.
    #[arg(long, short, global = true, default_value = "config.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and print every problem; exit 64 if there are any.
    Check,
    /// Start draining the running lifeguard and wait until it has drained.
    Drain {
        /// Return as soon as the drain has started.
        #[arg(long)]
        no_wait: bool,
    },
    /// Add lifeguard to the workloads of Kubernetes YAML (stdin or -f), or
    /// take it out (--uninject); the result goes to stdout.
    Inject(lifeguard::inject_cmd::InjectArgs),
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if let Some(Command::Inject(args)) = &cli.command {
        return lifeguard::inject_cmd::run(args);
    }
    let Ok(config) = Config::load_or_report(&cli.config) else {
        return ExitCode::from(EX_USAGE);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeguard: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.take() {
        Some(Command::Check) => {
            for w in config.warnings() {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", cli.config.display());
            return ExitCode::SUCCESS;
        }
        Some(Command::Drain { no_wait }) => runtime
            .block_on(lifeguard::drain_cmd::run(&config, !no_wait))
            .map(|drained| i32::from(!drained)),
        // Handled before the config is loaded (it needs none).
        Some(Command::Inject(args)) => return lifeguard::inject_cmd::run(&args),
        None => {
            let _log = lifeguard::logging::init(&config.log);
            runtime.block_on(lifeguard::app::run(config))
        }
    };
    // Do not wait for idle tasks (admin keep-alive connections, timers).
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("lifeguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
