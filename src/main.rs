//! Command line: `lifeguard [--config PATH]` runs the proxy; `lifeguard check`
//! validates a config. Exit 64 (EX_USAGE) on a bad config.

use clap::{Parser, Subcommand};
use lifeguard::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

const EX_USAGE: u8 = 64;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lifeguard: invalid config {}:", cli.config.display());
            for p in e.problems() {
                eprintln!("  {p}");
            }
            return ExitCode::from(EX_USAGE);
        }
    };
    if let Some(Command::Check) = cli.command {
        println!("{}: ok", cli.config.display());
        return ExitCode::SUCCESS;
    }
    lifeguard::logging::init(&config.log);
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
    let result = runtime.block_on(lifeguard::app::run(config));
    // Do not wait for idle tasks (admin keep-alive connections, timers): the
    // drain already decided it is time to go.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "lifeguard failed");
            eprintln!("lifeguard: {e:#}");
            ExitCode::FAILURE
        }
    }
}
