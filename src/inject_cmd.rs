//! `lifeguard inject`: reads Kubernetes YAML (files named with `-f`, or
//! standard input), writes it to standard output with lifeguard injected
//! (`inject`, the pure part) and prints warnings on standard error.

use crate::inject::{self, ConfigSource, Mode, Options, PortRef};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

/// The sidecar mode, on the command line.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ModeArg {
    /// lifeguard as a regular container; the app's preStop waits for its drain.
    Classic,
    /// lifeguard as a native sidecar (init container, restartPolicy Always;
    /// Kubernetes >= 1.29).
    Native,
}

#[derive(Debug, clap::Args)]
pub struct InjectArgs {
    /// A file to read (repeatable; `-` or none: standard input).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Inject every workload, not only those whose pod template is annotated
    /// `lifeguard.io/inject: enabled` (`disabled` still opts out).
    #[arg(long)]
    pub all: bool,
    /// The app's port, by number or name (default: the first port of the
    /// first container).
    #[arg(long, value_name = "PORT")]
    pub app_port: Option<String>,
    /// A ConfigMap of yours holding lifeguard's config.yaml (default: one
    /// generated per workload, `<name>-lifeguard`). Its listen, admin.listen
    /// and app.endpoints must match --port, --admin-port and the app's port.
    #[arg(long, value_name = "NAME", conflicts_with = "config_annotation")]
    pub config_map: Option<String>,
    /// Put the generated config.yaml into the pod template's
    /// `lifeguard.io/config` annotation, mounted by a downwardAPI volume,
    /// instead of a ConfigMap (what the webhook does).
    #[arg(long)]
    pub config_annotation: bool,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
    /// Take lifeguard out again (of what `lifeguard inject` injected).
    #[arg(long)]
    pub uninject: bool,
}

/// What lifeguard's container looks like: shared by `lifeguard inject` and
/// `lifeguard webhook`.
#[derive(Debug, Clone, clap::Args)]
pub struct SidecarArgs {
    /// How lifeguard runs beside the app.
    #[arg(long, value_enum, default_value = "classic")]
    pub mode: ModeArg,
    /// lifeguard's image.
    #[arg(long, default_value = concat!("lifeguard:", env!("CARGO_PKG_VERSION")))]
    pub image: String,
    /// lifeguard's client port (the next free one if the pod uses it).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// lifeguard's admin port (the next free one if the pod uses it).
    #[arg(long, default_value_t = 9901)]
    pub admin_port: u16,
    /// drain.delay, in seconds.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub drain_delay: u32,
    /// drain.timeout, in seconds; the grace period is raised to at least
    /// this plus 10.
    #[arg(long, default_value_t = 25, value_name = "SECONDS")]
    pub drain_timeout: u32,
}

impl SidecarArgs {
    /// The injection options these flags give (`config`, `all`, `app_port`
    /// at their defaults: the caller sets them).
    pub fn options(&self) -> Options {
        Options {
            mode: match self.mode {
                ModeArg::Classic => Mode::Classic,
                ModeArg::Native => Mode::Native,
            },
            image: self.image.clone(),
            port: self.port,
            admin_port: self.admin_port,
            drain_delay: self.drain_delay,
            drain_timeout: self.drain_timeout,
            ..Options::default()
        }
    }
}

impl InjectArgs {
    fn options(&self) -> Options {
        Options {
            all: self.all,
            app_port: self.app_port.as_deref().map(PortRef::parse),
            config: match (&self.config_map, self.config_annotation) {
                (Some(name), _) => ConfigSource::ConfigMap(name.clone()),
                (None, true) => ConfigSource::Annotation,
                (None, false) => ConfigSource::Generated,
            },
            ..self.sidecar.options()
        }
    }
}

fn read_input(files: &[PathBuf]) -> Result<String, String> {
    let stdin = |text: &mut String| {
        std::io::stdin()
            .read_to_string(text)
            .map(|_| ())
            .map_err(|e| format!("standard input: {e}"))
    };
    let mut text = String::new();
    if files.is_empty() {
        stdin(&mut text)?;
    }
    for f in files {
        if f.as_os_str() == "-" {
            stdin(&mut text)?;
        } else {
            let t = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
            text.push_str(&t);
        }
        // Each file is its own set of documents.
        text.push_str("\n---\n");
    }
    Ok(text)
}

/// Runs the command; exit 0, or 1 with a message when the input cannot be
/// read or is not YAML.
pub fn run(args: &InjectArgs) -> ExitCode {
    let result = read_input(&args.files).and_then(|text| {
        let docs = inject::parse_stream(&text).map_err(|e| e.to_string())?;
        let out = if args.uninject {
            inject::uninject(docs)
        } else {
            inject::inject(docs, &args.options()).map_err(|e| e.to_string())?
        };
        let yaml = inject::emit_stream(&out.docs).map_err(|e| e.to_string())?;
        Ok((yaml, out))
    });
    match result {
        Ok((yaml, out)) => {
            for w in &out.warnings {
                eprintln!("lifeguard inject: warning: {w}");
            }
            let verb = if args.uninject {
                "restored"
            } else {
                "injected"
            };
            eprintln!("lifeguard inject: {} pod template(s) {verb}", out.changed);
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout
                .write_all(yaml.as_bytes())
                .and_then(|()| stdout.flush())
            {
                eprintln!("lifeguard inject: cannot write: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("lifeguard inject: {e}");
            ExitCode::FAILURE
        }
    }
}
