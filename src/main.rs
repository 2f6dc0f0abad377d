//! Command line: `lifeguard [--config PATH]` runs the proxy; `check`
//! validates a config; `config` prints the effective config; `schema`
//! prints the config's JSON Schema; `drain` drains a running lifeguard
//! (preStop hook). Exit 64 (EX_USAGE) on a bad config.

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
    /// Print the effective config (every default filled in) as YAML; exit 64
    /// if the config is invalid.
    Config,
    /// Print the JSON Schema of the config file (docs/config.schema.json).
    Schema {
        /// Only the part the Helm chart embeds under `lifeguard.config`.
        #[arg(long)]
        chart: bool,
    },
    /// Start draining the running lifeguard and wait until it has drained.
    Drain {
        /// Return as soon as the drain has started.
        #[arg(long)]
        no_wait: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Schema { chart }) = cli.command {
        let schema = if chart {
            lifeguard::config::schema::chart_config_schema()
        } else {
            lifeguard::config::schema::config_schema()
        };
        return match serde_json::to_string_pretty(&schema) {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("lifeguard: cannot print the schema: {e}");
                ExitCode::FAILURE
            }
        };
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
    let result = match cli.command {
        Some(Command::Check) => {
            for w in config.warnings() {
                eprintln!("warning: {w}");
            }
            println!("{}: ok", cli.config.display());
            return ExitCode::SUCCESS;
        }
        Some(Command::Config) => {
            for w in config.warnings() {
                eprintln!("warning: {w}");
            }
            print!("{}", config.effective_yaml());
            return ExitCode::SUCCESS;
        }
        Some(Command::Schema { .. }) => return ExitCode::SUCCESS,
        Some(Command::Drain { no_wait }) => runtime
            .block_on(lifeguard::drain_cmd::run(&config, !no_wait))
            .map(|drained| i32::from(!drained)),
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
