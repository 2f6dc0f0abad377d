//! `lifeguard webhook`: the command line of the admission webhook
//! (`webhook`): flags, JSON logs, the runtime. The injection flags are
//! `lifeguard inject`'s (`inject_cmd::SidecarArgs`).

use crate::config::{listen_address, parse_duration, LogConfig, LogFormat};
use crate::inject::{ConfigSource, Options};
use crate::inject_cmd::SidecarArgs;
use crate::webhook::{self, Settings};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct WebhookArgs {
    /// Where to listen for the API server (HTTPS): IP:PORT, HOST:PORT or :PORT.
    #[arg(long, default_value = ":8443", value_parser = listen_address)]
    pub listen: SocketAddr,
    /// The serving certificate (PEM chain); re-read when it changes.
    #[arg(long, value_name = "FILE")]
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE")]
    pub key_file: PathBuf,
    /// How often the certificate files are checked for a rotation.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub cert_poll: Duration,
    /// How long reviews are still answered after SIGTERM (while the API
    /// server stops sending them here).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// A ConfigMap of yours, in every namespace lifeguard is injected into,
    /// holding lifeguard's config.yaml (its ports must match --port,
    /// --admin-port and the app's). Default: the generated config, carried
    /// in the pod's `lifeguard.io/config` annotation (downwardAPI volume).
    #[arg(long, value_name = "NAME")]
    pub config_map: Option<String>,
    /// Log filter (JSON lines on stdout).
    #[arg(long, default_value = "info")]
    pub log_level: String,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

impl WebhookArgs {
    fn settings(&self) -> Settings {
        Settings {
            listen: self.listen,
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            cert_poll: self.cert_poll.max(Duration::from_millis(100)),
            shutdown_delay: self.shutdown_delay,
            inject: Options {
                config: match &self.config_map {
                    Some(name) => ConfigSource::ConfigMap(name.clone()),
                    None => ConfigSource::Annotation,
                },
                // The webhook sees one Pod, never the Services selecting it.
                warn_unseen_services: false,
                ..self.sidecar.options()
            },
        }
    }
}

/// Runs the webhook; exit 1 when it cannot start, 64 on bad flags.
pub fn run(args: &WebhookArgs) -> ExitCode {
    let settings = args.settings();
    if settings.inject.drain_delay >= settings.inject.drain_timeout {
        eprintln!(
            "lifeguard webhook: --drain-delay ({}s) must be below --drain-timeout ({}s)",
            settings.inject.drain_delay, settings.inject.drain_timeout
        );
        return ExitCode::from(64);
    }
    if tracing_subscriber::EnvFilter::try_new(&args.log_level).is_err() {
        eprintln!(
            "lifeguard webhook: invalid --log-level {:?}",
            args.log_level
        );
        return ExitCode::from(64);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(crate::app::worker_threads().min(4))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lifeguard webhook: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _log = crate::logging::init(&LogConfig {
        format: LogFormat::Json,
        level: args.log_level.clone(),
    });
    let result = runtime.block_on(webhook::run(settings));
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "lifeguard webhook cannot start");
            eprintln!("lifeguard webhook: {e:#}");
            ExitCode::FAILURE
        }
    }
}
