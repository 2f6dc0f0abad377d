//! Configuration: `raw` mirrors the YAML (and is what the JSON Schema is
//! generated from, `schema`), `validate` turns it into the typed `Config`
//! below (or every problem, each naming its field), `maintenance` validates
//! the maintenance section, and `effective` prints a `Config` back as YAML
//! with every default filled in.

mod addrs;
pub mod certs;
mod effective;
pub mod files;
mod maintenance;
mod page;
mod problems;
pub use problems::Problem;
mod raw;
pub mod schema;
mod secret;
mod statuses;
mod units;
mod validate;

pub use files::{read_config_file, FileError};
pub use secret::Secret;
pub use statuses::StatusSet;

pub use units::{format_duration, format_size, parse_duration, parse_size};

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A validated configuration. Immutable: a reload builds a new one.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub app: AppConfig,
    pub client: ClientConfig,
    pub unavailable: UnavailableConfig,
    pub health: HealthConfig,
    pub retry: RetryConfig,
    pub drain: DrainConfig,
    pub log: LogConfig,
    pub reload: ReloadConfig,
    pub maintenance: MaintenanceConfig,
    /// TLS on the main listener; `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    /// SHA-256 of the YAML text, hex (compare with `sha256sum config.yaml`).
    pub source_hash: String,
    /// The file this config was read from (`None` for in-process YAML): what
    /// the reloader re-reads.
    pub source_path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ReloadConfig {
    /// How often the config file (and TLS files) are re-read and hashed;
    /// zero disables polling (SIGHUP and `/admin/reload` still work).
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct MaintenanceConfig {
    /// Maintenance on from the config itself.
    pub enabled: bool,
    /// Maintenance is on while this file exists (checked every second).
    pub flag_file: Option<PathBuf>,
    /// `Retry-After` on maintenance responses.
    pub retry_after: Duration,
    /// The HTML page, read and rendered once when the config loads.
    pub page: Bytes,
    /// Where `page` came from (`None`: the built-in page).
    pub page_file: Option<PathBuf>,
    /// Path prefixes (whole segments) that still reach the app.
    pub allow_paths: Vec<String>,
    /// Client peer addresses that still reach the app.
    pub bypass_cidrs: Vec<ipnet::IpNet>,
    /// A header carrying a secret token that still reaches the app.
    pub bypass: Option<MaintenanceBypass>,
    /// `/readyz` stays 200 during maintenance (the pod serves its page).
    pub ready: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaintenanceBypass {
    pub header: http::HeaderName,
    /// Read from `maintenance.bypass_token_file` when the config loads.
    pub token: Secret,
    /// `maintenance.bypass_token_file`.
    pub token_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The chain and key as loaded (and checked to match) at config load.
    pub key: Arc<rustls::sign::CertifiedKey>,
    /// SHA-256 over both files, to notice when they are rotated in place.
    pub files_sha256: String,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Idempotent request bodies up to this size are buffered so the request
    /// can be replayed; larger ones stream and are never retried once sent.
    pub buffer_limit: u64,
    /// Resends of a request that failed after it was sent (idempotent only).
    pub attempts: u32,
    /// Resends allowed as a share of recent requests.
    pub budget_percent: u32,
    /// With this header present, POST and PATCH count as idempotent.
    pub idempotency_key_header: Option<http::HeaderName>,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// What a probe checks.
    pub mode: HealthMode,
    pub path: http::uri::PathAndQuery,
    /// Statuses of `GET path` that count as healthy (default: below 500).
    pub expect_status: StatusSet,
    pub interval: Duration,
    /// Probe interval while an endpoint is down, so a restart is seen fast.
    pub down_interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
    /// Concurrency ramp for an endpoint that came back up.
    pub slow_start: Duration,
    /// `/readyz` is 503 while no endpoint is up.
    pub ready_requires_app: bool,
}

#[derive(Debug, Clone)]
pub struct DrainConfig {
    /// After SIGTERM, keep accepting this long while Kubernetes removes the
    /// pod from Service endpoints.
    pub delay: Duration,
    /// Overall deadline, counted from the start of the drain (delay
    /// included): then lifeguard exits whatever is still in flight.
    pub timeout: Duration,
    /// The pod's `terminationGracePeriodSeconds`: `check` warns when delay +
    /// timeout leaves no margin before SIGKILL.
    pub grace_period: Duration,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token for mutating admin endpoints from outside loopback, read
    /// from `admin.token_file` when the config loads.
    pub token: Option<Secret>,
    /// `admin.token_file`.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AppConfig {
    /// App processes, balanced by least outstanding requests (host names
    /// resolved when the config was loaded).
    pub endpoints: Vec<SocketAddr>,
    /// `endpoints[i]` as written (`localhost:3000` stays a name), for
    /// `lifeguard config`.
    pub endpoint_names: Vec<String>,
    pub connect_timeout: Duration,
    /// Time allowed for the app's response headers once the request is sent.
    pub response_timeout: Duration,
    /// Kept below Node's default `keepAliveTimeout` (5 s) so we never reuse a
    /// connection the app is about to close.
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_endpoint: usize,
    /// Requests in flight per endpoint (0: unlimited); excess requests queue.
    pub max_in_flight: usize,
    /// How long a request may queue for a free slot before `503`.
    pub queue_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// From the first byte of a request head to its end (slowloris bound).
    pub header_timeout: Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: Duration,
    /// Longest time without progress reading a request body (a 1 B/s upload
    /// is cut here with 408, and its app connection released).
    pub body_timeout: Duration,
    /// Longest time without the client accepting response bytes (a client
    /// that stops reading, or an HTTP/2 window held at zero).
    pub send_timeout: Duration,
    /// Request line plus headers; larger gets 431.
    pub max_header_size: usize,
    /// Request body limit; larger gets 413. `None`: unlimited.
    pub max_body_size: Option<u64>,
    pub max_connections: usize,
    pub http2_max_streams: u32,
    pub listen_backlog: u32,
}

#[derive(Debug, Clone)]
pub struct UnavailableConfig {
    /// `Retry-After` on responses lifeguard synthesizes because the app failed.
    pub retry_after: Duration,
    /// How long a request not yet sent may wait for an endpoint to come up.
    pub hold: Duration,
}

/// `http`: `GET health.path` must answer a status in `health.expect_status`
/// (by default any answer below 500). `tcp`: the app must accept a
/// connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    Http,
    Tcp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file itself: missing, not a regular file, too large, not
    /// UTF-8 (see `files`).
    #[error("{0}")]
    Read(#[from] FileError),
    #[error("{path}: {message}")]
    Syntax { path: String, message: String },
    #[error("{path}: {} problem(s):\n  {}", .problems.len(), lines(.problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

fn lines(problems: &[Problem]) -> String {
    let text: Vec<String> = problems.iter().map(Problem::to_string).collect();
    text.join("\n  ")
}

impl ConfigError {
    /// Every problem, one per line, each naming its field where it has one.
    pub fn problems(&self) -> Vec<String> {
        match self {
            ConfigError::Read(_) | ConfigError::Syntax { .. } => vec![self.to_string()],
            ConfigError::Invalid { problems, .. } => {
                problems.iter().map(Problem::to_string).collect()
            }
        }
    }

    /// The fields found invalid (none for a read or syntax error).
    pub fn fields(&self) -> Vec<&str> {
        match self {
            ConfigError::Read(_) | ConfigError::Syntax { .. } => Vec::new(),
            ConfigError::Invalid { problems, .. } => {
                problems.iter().map(|p| p.field.as_str()).collect()
            }
        }
    }
}

impl Config {
    /// Parses and validates YAML text; `origin` names the source in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let syntax = |e: serde_yaml::Error| ConfigError::Syntax {
            path: origin.to_owned(),
            message: e.to_string(),
        };
        // YAML first, then each key on its own: a key of the wrong type or
        // an unknown key is one problem among the others, not the end.
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
        let raw: raw::RawConfig = match value {
            // An empty file is a valid config: every key has a default.
            serde_yaml::Value::Null => raw::RawConfig::default(),
            serde_yaml::Value::Mapping(_) => {
                serde_yaml::from_value(raw::string_keys(value)).map_err(syntax)?
            }
            other => {
                return Err(ConfigError::Invalid {
                    path: origin.to_owned(),
                    problems: vec![Problem {
                        field: "(top level)".into(),
                        message: format!(
                            "found {}; allowed: a mapping of sections (listen, admin, app, health, ...)",
                            raw::show(&other)
                        ),
                    }],
                })
            }
        };
        let mut config = validate::validate(raw).map_err(|problems| ConfigError::Invalid {
            path: origin.to_owned(),
            problems,
        })?;
        config.source_hash = sha256_hex(text.as_bytes());
        Ok(config)
    }

    /// Things that are valid but probably wrong, for `lifeguard check` and the
    /// startup log.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let d = &self.drain;
        // Kubernetes counts preStop and SIGTERM handling against the same
        // period; leave room for the process to exit before SIGKILL.
        let margin = Duration::from_secs(2).max(d.grace_period / 20);
        if d.timeout + margin > d.grace_period {
            w.push(format!(
                "drain.timeout ({}) leaves less than {} before drain.grace_period ({}): requests still in flight at the deadline may be cut by SIGKILL; raise terminationGracePeriodSeconds (and drain.grace_period) or lower drain.timeout",
                humantime::format_duration(d.timeout),
                humantime::format_duration(margin),
                humantime::format_duration(d.grace_period),
            ));
        }
        if d.delay >= d.timeout {
            w.push(format!(
                "drain.delay ({}) is not below drain.timeout ({}): in-flight requests get no time to finish after lifeguard stops accepting",
                humantime::format_duration(d.delay),
                humantime::format_duration(d.timeout),
            ));
        }
        if self.app.pool_idle_timeout >= Duration::from_secs(5) {
            w.push(format!(
                "app.pool_idle_timeout ({}) is not below Node's default keepAliveTimeout (5s): pooled connections may be closed by the app just as a request is sent",
                humantime::format_duration(self.app.pool_idle_timeout)
            ));
        }
        let h = &self.health;
        if h.timeout > h.interval {
            w.push(format!(
                "health.timeout ({}) is longer than health.interval ({}): a probe that hangs holds up the next one, so a stuck app is noticed later than the interval suggests",
                humantime::format_duration(h.timeout),
                humantime::format_duration(h.interval),
            ));
        }
        w
    }

    /// `load`, printing every problem to stderr on failure (for the CLI).
    pub fn load_or_report(path: &Path) -> Result<Config, ConfigError> {
        Config::load(path).inspect_err(|e| {
            eprintln!("lifeguard: invalid config {}:", path.display());
            for p in e.problems() {
                eprintln!("  {p}");
            }
        })
    }

    /// Reads, parses and validates a config file, remembering its path for
    /// reloads.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_config_file(path)?;
        let mut config = Config::from_yaml(&text, &path.display().to_string())?;
        config.source_path = Some(path.to_owned());
        Ok(config)
    }
}

/// A listener address as the config writes it (`IP:PORT`, `HOST:PORT`,
/// `:PORT`), for listeners named outside the config file (`lifeguard
/// webhook --listen`). `Err` says why, with the allowed forms.
pub fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    addrs::resolve(text, true).map_err(|e| format!("{e}; allowed: {}", addrs::LISTEN_FORMS))
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    use std::fmt::Write;
    let digest = sha2::Sha256::digest(data);
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_budget_warning() {
        let ok = Config::from_yaml("", "t").unwrap();
        assert!(ok.warnings().is_empty(), "{:?}", ok.warnings());
        let tight = Config::from_yaml("drain:\n  timeout: 29s\n", "t").unwrap();
        assert!(
            tight.warnings()[0].starts_with("drain.timeout (29s) leaves less than 2s"),
            "{:?}",
            tight.warnings()
        );
        let long_delay = Config::from_yaml("drain:\n  delay: 25s\n  timeout: 20s\n", "t").unwrap();
        assert!(
            long_delay.warnings()[0].starts_with("drain.delay (25s) is not below"),
            "{:?}",
            long_delay.warnings()
        );
        assert_eq!(ok.source_hash, sha256_hex(b""));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn defaults_from_empty() {
        let c = Config::from_yaml("", "t").unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(c.admin.listen.to_string(), "0.0.0.0:9901");
        assert_eq!(c.app.endpoints[0].to_string(), "127.0.0.1:3000");
        assert_eq!(c.app.pool_idle_timeout, Duration::from_secs(2));
        assert_eq!(c.unavailable.retry_after, Duration::from_secs(5));
    }

    #[test]
    fn every_problem_names_its_field() {
        let yaml = "app:\n  endpoints: [\"127.0.0.1:1\", \"x:y\"]\n  connect_timeout: 5\nunavailable:\n  retry_after: 0s\nlog:\n  format: xml\n";
        let err = Config::from_yaml(yaml, "t").unwrap_err();
        let p = err.problems();
        assert!(
            p.contains(
                &"app.endpoints[1]: invalid address \"x:y\": port \"y\" is not a number from 0 to 65535; allowed: IP:PORT or HOST:PORT, e.g. 127.0.0.1:3000, localhost:3000, [::1]:3000".to_string()
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("app.connect_timeout: invalid duration \"5\"")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("unavailable.retry_after: 0s is below")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l == "log.format: found \"xml\"; allowed: json or text"),
            "{p:?}"
        );
        assert_eq!(p.len(), 4, "{p:?}");
        assert_eq!(
            err.fields(),
            [
                "app.endpoints[1]",
                "app.connect_timeout",
                "unavailable.retry_after",
                "log.format"
            ]
        );
    }

    #[test]
    fn unknown_key_is_an_error() {
        let err = Config::from_yaml("app:\n  endpoint: []\n", "t").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("app.endpoint: unknown field `endpoint` (did you mean `endpoints`?)"),
            "{text}"
        );
    }

    /// The four mistakes (and more), every one in one run, in the
    /// config's words: no Rust range syntax, no humantime phrasing.
    #[test]
    fn every_mistake_in_one_run() {
        let yaml = "app:\n  conect_timeout: 1s\n  endpoints: [\"x:y\"]\n  max_in_flight: -1\nclient:\n  max_header_size: 1KiB\nhealth: [1]\nretry:\n  attempts: 2\n  budget_percent: lots\n";
        let err = Config::from_yaml(yaml, "t").unwrap_err();
        assert_eq!(
            err.fields(),
            [
                "app.conect_timeout",
                "app.endpoints[0]",
                "app.max_in_flight",
                "client.max_header_size",
                "health",
                "retry.budget_percent"
            ]
        );
        let p = err.problems();
        assert!(p.contains(&"client.max_header_size: 1KiB is below the minimum of 16 KiB; allowed: 16 KiB to 1 MiB".to_owned()), "{p:?}");
        assert!(
            p.contains(
                &"app.max_in_flight: found -1; allowed: a whole number, at least 0".to_owned()
            ),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("health: found a list; allowed: a mapping of ")),
            "{p:?}"
        );
        for l in &p {
            assert!(!l.contains("..="), "{l}");
            assert!(!l.contains("variations"), "{l}");
        }
        let misplaced = Config::from_yaml("intervall: 2s\n", "t").unwrap_err();
        assert!(
            misplaced.problems()[0].starts_with(
                "intervall: unknown field `intervall` (did you mean `health.interval`?)"
            ),
            "{:?}",
            misplaced.problems()
        );
        let keys = Config::from_yaml("1: x\napp: {2: 5ms, ~: 1}\n", "t").unwrap_err();
        assert_eq!(keys.fields(), ["1", "app.2", "app.null"]);
        let not_a_mapping = Config::from_yaml("- listen\n", "t").unwrap_err();
        assert_eq!(not_a_mapping.fields(), ["(top level)"]);
    }

    #[test]
    fn header_limit_never_below_node() {
        let err = Config::from_yaml("client:\n  max_header_size: 8KiB\n", "t").unwrap_err();
        assert_eq!(err.fields(), ["client.max_header_size"]);
    }
}
