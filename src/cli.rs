//! Command line: `lifeguard [--config PATH]` runs the proxy; `check`
//! validates a config; `config` prints the effective config; `schema`
//! prints the config's JSON Schema; `drain` drains a running lifeguard
//! (preStop hook); `inject` adds lifeguard to Kubernetes manifests and
//! `webhook` serves the same injection as an admission webhook (neither
//! needs a config). Exit 64 (EX_USAGE) on a bad config.

use crate::config::Config;
use clap::{Parser, Subcommand};
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
    /// Add lifeguard to the workloads of Kubernetes YAML (stdin or -f), or
    /// take it out (--uninject); the result goes to stdout.
    Inject(crate::inject_cmd::InjectArgs),
    /// Serve the injection as a Kubernetes mutating admission webhook
    /// (HTTPS; Pods annotated `lifeguard.io/inject: enabled`, or of a
    /// namespace labelled so).
    Webhook(crate::webhook_cmd::WebhookArgs),
}

/// Parses the command line and runs the command; the exit code.
pub fn main() -> ExitCode {
    let mut cli = Cli::parse();
    match &cli.command {
        Some(Command::Inject(args)) => return crate::inject_cmd::run(args),
        Some(Command::Webhook(args)) => return crate::webhook_cmd::run(args),
        Some(Command::Schema { chart }) => return print_schema(*chart),
        _ => {}
    }
    let Ok(config) = Config::load_or_report(&cli.config) else {
        return ExitCode::from(EX_USAGE);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::app::worker_threads())
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
        Some(Command::Config) => {
            for w in config.warnings() {
                eprintln!("warning: {w}");
            }
            print!("{}", config.effective_yaml());
            return ExitCode::SUCCESS;
        }
        Some(Command::Schema { .. }) => return ExitCode::SUCCESS,
        Some(Command::Drain { no_wait }) => runtime
            .block_on(crate::drain_cmd::run(&config, !no_wait))
            .map(|drained| i32::from(!drained)),
        // Handled before the config is loaded (it needs none).
        Some(Command::Inject(args)) => return crate::inject_cmd::run(&args),
        Some(Command::Webhook(args)) => return crate::webhook_cmd::run(&args),
        None => {
            let _log = crate::logging::init(&config.log);
            runtime.block_on(crate::app::run(config))
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

/// `lifeguard schema [--chart]`: the config's JSON Schema on stdout.
fn print_schema(chart: bool) -> ExitCode {
    let schema = if chart {
        crate::config::schema::chart_config_schema()
    } else {
        crate::config::schema::config_schema()
    };
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lifeguard: cannot print the schema: {e}");
            ExitCode::FAILURE
        }
    }
}
