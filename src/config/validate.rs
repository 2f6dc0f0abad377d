//! Turns a `RawConfig` into the typed `Config` the rest of the program uses.
//! Every problem is collected (not just the first) and names its field, in the
//! form `app.endpoints[1]: invalid socket address "x:y"`. One function per
//! config section; `validate` only assembles them.

use super::problems::{Problem, Problems, DAY, HOUR, MS};

/// The shortest client timeouts (`client.*_timeout`): below this a healthy
/// client on a slow network is cut off.
const CLIENT_FLOOR: Duration = Duration::from_millis(100);
/// The shortest app connect and probe timeouts and probe intervals.
const TEN_MS: Duration = Duration::from_millis(10);
/// `health.healthy_threshold` / `unhealthy_threshold`: above this an
/// endpoint would take minutes to change state.
const MAX_THRESHOLD: u32 = 100;
use super::raw::{
    RawApp, RawClient, RawConfig, RawDrain, RawHealth, RawLog, RawReload, RawRetry, RawTls,
    RawUnavailable,
};
use super::secret::read_secret;
use super::{
    AdminConfig, AppConfig, ClientConfig, Config, DrainConfig, HealthConfig, HealthMode, LogConfig,
    LogFormat, ReloadConfig, RetryConfig, TlsConfig, UnavailableConfig,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Validates everything; `Err` holds every problem found, each naming its field.
pub(super) fn validate(raw: RawConfig) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let (listen, admin) = listeners(&raw, &mut p);
    let own = [listen, admin.listen];
    let config = Config {
        listen,
        admin,
        app: app(&raw.app, own, &mut p),
        client: client(&raw.client, &mut p),
        unavailable: unavailable(&raw.unavailable, &mut p),
        health: health(&raw.health, &mut p),
        retry: retry(&raw.retry, &mut p),
        drain: drain(&raw.drain, &mut p),
        log: log(&raw.log, &mut p),
        reload: reload(&raw.reload, &mut p),
        maintenance: super::maintenance::validate(&raw.maintenance, &mut p),
        tls: tls(&raw.tls, &mut p),
        source_hash: String::new(),
        source_path: None,
    };
    if p.0.is_empty() {
        Ok(config)
    } else {
        Err(p.0)
    }
}

/// The two listeners (they must differ) and the admin token.
fn listeners(raw: &RawConfig, p: &mut Problems) -> (SocketAddr, AdminConfig) {
    let listen = p.addr("listen", raw.listen.as_deref(), "0.0.0.0:8080");
    let admin_listen = p.addr("admin.listen", raw.admin.listen.as_deref(), "0.0.0.0:9901");
    if listen == admin_listen && listen.port() != 0 {
        p.push(
            "admin.listen",
            format!("must differ from listen ({listen})"),
        );
    }
    let token = raw
        .admin
        .token_file
        .as_deref()
        .and_then(|path| read_secret("admin.token_file", path, p));
    let admin = AdminConfig {
        listen: admin_listen,
        token,
    };
    (listen, admin)
}

/// `app.endpoints`: 1 to 64 distinct `IP:PORT`s (default `127.0.0.1:3000`),
/// each one an app can be at, and none of them lifeguard's own listeners
/// (`listen`, `admin.listen`).
fn endpoints(raw: &RawApp, own: [SocketAddr; 2], p: &mut Problems) -> Vec<SocketAddr> {
    match &raw.endpoints {
        None => vec![SocketAddr::from(([127, 0, 0, 1], 3000))],
        Some(list) if list.is_empty() => {
            p.push("app.endpoints", "must list at least one endpoint");
            Vec::new()
        }
        Some(list) if list.len() > 64 => {
            p.push(
                "app.endpoints",
                format!("{} endpoints listed; at most 64 are supported", list.len()),
            );
            Vec::new()
        }
        Some(list) => {
            let mut out = Vec::with_capacity(list.len());
            for (i, text) in list.iter().enumerate() {
                let field = format!("app.endpoints[{i}]");
                match text.parse::<SocketAddr>() {
                    Ok(a) if out.contains(&a) => {
                        p.push(&field, format!("duplicate endpoint \"{text}\""))
                    }
                    Ok(a) => {
                        if let Some(why) = super::addrs::unusable(a) {
                            p.push(&field, format!("\"{text}\" {why}"));
                        } else if let Some((key, l)) = own_listener(a, own) {
                            p.push(
                                &field,
                                format!("\"{text}\" is lifeguard's own {key} ({l}): requests would loop back into lifeguard"),
                            );
                        } else {
                            out.push(a);
                        }
                    }
                    Err(_) => p.push(
                        &field,
                        format!("invalid socket address \"{text}\" (expected IP:PORT)"),
                    ),
                }
            }
            out
        }
    }
}

/// The listener (its key and address) that `endpoint` would reach, if any.
fn own_listener(endpoint: SocketAddr, own: [SocketAddr; 2]) -> Option<(&'static str, SocketAddr)> {
    ["listen", "admin.listen"]
        .into_iter()
        .zip(own)
        .find(|(_, l)| super::addrs::reaches(endpoint, *l))
}

fn app(raw: &RawApp, own: [SocketAddr; 2], p: &mut Problems) -> AppConfig {
    let a = raw;
    AppConfig {
        endpoints: endpoints(raw, own, p),
        connect_timeout: p.duration(
            "app.connect_timeout",
            a.connect_timeout.as_deref(),
            Duration::from_secs(1),
            TEN_MS,
            Duration::from_secs(60),
        ),
        response_timeout: p.duration(
            "app.response_timeout",
            a.response_timeout.as_deref(),
            Duration::from_secs(60),
            MS,
            DAY,
        ),
        pool_idle_timeout: p.duration(
            "app.pool_idle_timeout",
            a.pool_idle_timeout.as_deref(),
            Duration::from_secs(2),
            MS,
            HOUR,
        ),
        pool_max_idle_per_endpoint: a.pool_max_idle_per_endpoint.unwrap_or(1024) as usize,
        max_in_flight: a.max_in_flight.unwrap_or(0) as usize,
        queue_timeout: p.duration(
            "app.queue_timeout",
            a.queue_timeout.as_deref(),
            Duration::from_secs(1),
            Duration::ZERO,
            HOUR,
        ),
    }
}

fn client(raw: &RawClient, p: &mut Problems) -> ClientConfig {
    let c = raw;
    let max_header_size = p.size(
        "client.max_header_size",
        c.max_header_size.as_deref(),
        32 * 1024,
        16 * 1024,
        1024 * 1024,
    );
    let max_body_size = p.size(
        "client.max_body_size",
        c.max_body_size.as_deref(),
        0,
        0,
        u64::MAX,
    );
    let client = ClientConfig {
        header_timeout: p.duration(
            "client.header_timeout",
            c.header_timeout.as_deref(),
            Duration::from_secs(10),
            CLIENT_FLOOR,
            HOUR,
        ),
        idle_timeout: p.duration(
            "client.idle_timeout",
            c.idle_timeout.as_deref(),
            Duration::from_secs(60),
            CLIENT_FLOOR,
            DAY,
        ),
        body_timeout: p.duration(
            "client.body_timeout",
            c.body_timeout.as_deref(),
            Duration::from_secs(30),
            CLIENT_FLOOR,
            HOUR,
        ),
        send_timeout: p.duration(
            "client.send_timeout",
            c.send_timeout.as_deref(),
            Duration::from_secs(30),
            CLIENT_FLOOR,
            HOUR,
        ),
        max_header_size: max_header_size as usize,
        max_body_size: (max_body_size > 0).then_some(max_body_size),
        max_connections: c.max_connections.unwrap_or(10_000) as usize,
        http2_max_streams: c.http2_max_streams.unwrap_or(256),
        listen_backlog: c.listen_backlog.unwrap_or(4096),
    };
    if client.max_connections == 0 {
        p.push("client.max_connections", "must be at least 1");
    }
    if client.http2_max_streams == 0 {
        p.push("client.http2_max_streams", "must be at least 1");
    }
    if client.listen_backlog == 0 {
        p.push("client.listen_backlog", "must be at least 1");
    }
    client
}

fn unavailable(raw: &RawUnavailable, p: &mut Problems) -> UnavailableConfig {
    // Never 0: `Retry-After: 0` invites an immediate retry storm against a dead app.
    UnavailableConfig {
        retry_after: p.duration(
            "unavailable.retry_after",
            raw.retry_after.as_deref(),
            Duration::from_secs(5),
            Duration::from_secs(1),
            DAY,
        ),
        hold: p.duration(
            "unavailable.hold",
            raw.hold.as_deref(),
            Duration::from_secs(2),
            Duration::ZERO,
            Duration::from_secs(300),
        ),
    }
}

fn health(raw: &RawHealth, p: &mut Problems) -> HealthConfig {
    let h = raw;
    let path = h.path.as_deref().unwrap_or("/health");
    let health = HealthConfig {
        mode: match h.mode.as_deref() {
            None | Some("http") => HealthMode::Http,
            Some("tcp") => HealthMode::Tcp,
            Some(other) => {
                p.push(
                    "health.mode",
                    format!("unknown mode \"{other}\" (expected http or tcp)"),
                );
                HealthMode::Http
            }
        },
        path: match path.parse::<http::uri::PathAndQuery>() {
            Ok(pq) if path.starts_with('/') => pq,
            _ => {
                p.push(
                    "health.path",
                    format!("invalid path \"{path}\" (expected e.g. /health)"),
                );
                http::uri::PathAndQuery::from_static("/health")
            }
        },
        interval: p.duration(
            "health.interval",
            h.interval.as_deref(),
            Duration::from_secs(2),
            TEN_MS,
            HOUR,
        ),
        down_interval: p.duration(
            "health.down_interval",
            h.down_interval.as_deref(),
            Duration::from_millis(250),
            TEN_MS,
            HOUR,
        ),
        timeout: p.duration(
            "health.timeout",
            h.timeout.as_deref(),
            Duration::from_secs(1),
            TEN_MS,
            Duration::from_secs(60),
        ),
        healthy_threshold: h.healthy_threshold.unwrap_or(2),
        unhealthy_threshold: h.unhealthy_threshold.unwrap_or(2),
        slow_start: p.duration(
            "health.slow_start",
            h.slow_start.as_deref(),
            Duration::from_secs(10),
            Duration::ZERO,
            HOUR,
        ),
        ready_requires_app: h.ready_requires_app.unwrap_or(true),
    };
    for (field, n) in [
        ("health.healthy_threshold", health.healthy_threshold),
        ("health.unhealthy_threshold", health.unhealthy_threshold),
    ] {
        if n == 0 {
            p.push(field, "must be at least 1");
        } else if n > MAX_THRESHOLD {
            p.push(
                field,
                format!("{n} is above the maximum of {MAX_THRESHOLD}"),
            );
        }
    }
    health
}

fn retry(raw: &RawRetry, p: &mut Problems) -> RetryConfig {
    let retry = RetryConfig {
        buffer_limit: p.size(
            "retry.buffer_limit",
            raw.buffer_limit.as_deref(),
            64 * 1024,
            0,
            16 * 1024 * 1024,
        ),
        attempts: raw.attempts.unwrap_or(2),
        budget_percent: raw.budget_percent.unwrap_or(20),
        idempotency_key_header: idempotency_key_header(raw, p),
    };
    if retry.attempts > 10 {
        p.push(
            "retry.attempts",
            format!("{} is above the maximum of 10", retry.attempts),
        );
    }
    if retry.budget_percent > 100 {
        p.push(
            "retry.budget_percent",
            format!("{} is above 100", retry.budget_percent),
        );
    }
    retry
}

/// Headers that (nearly) every request carries, or that belong to the
/// connection rather than the request: as `retry.idempotency_key_header`
/// they would make every POST and PATCH count as idempotent (and resend a
/// POST that crashed the app). `x-forwarded-` is a prefix.
const NOT_AN_IDEMPOTENCY_KEY: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
    "content-type",
    "accept",
    "accept-encoding",
    "accept-language",
    "user-agent",
    "cookie",
    "authorization",
    "proxy-authorization",
    "origin",
    "referer",
    "forwarded",
    "via",
    "x-real-ip",
    "x-request-id",
    "x-forwarded-",
];

/// `retry.idempotency_key_header`: a header name a client sends on purpose.
fn idempotency_key_header(raw: &RawRetry, p: &mut Problems) -> Option<http::HeaderName> {
    const FIELD: &str = "retry.idempotency_key_header";
    let name = raw
        .idempotency_key_header
        .as_deref()
        .filter(|s| !s.is_empty())?;
    if name.starts_with(':') {
        p.push(
            FIELD,
            format!("\"{name}\" is an HTTP/2 pseudo-header, present on every request"),
        );
        return None;
    }
    let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
        p.push(FIELD, format!("invalid header name \"{name}\""));
        return None;
    };
    let n = header.as_str();
    let common = NOT_AN_IDEMPOTENCY_KEY
        .iter()
        .any(|c| n == *c || (c.ends_with('-') && n.starts_with(c)));
    if common {
        p.push(
            FIELD,
            format!("\"{name}\" is a standard, hop-by-hop or proxy-set header that most requests carry: every POST and PATCH would count as idempotent and be resent after a failure; use a dedicated header such as Idempotency-Key"),
        );
        return None;
    }
    Some(header)
}

fn drain(raw: &RawDrain, p: &mut Problems) -> DrainConfig {
    DrainConfig {
        delay: p.duration(
            "drain.delay",
            raw.delay.as_deref(),
            Duration::from_secs(5),
            Duration::ZERO,
            HOUR,
        ),
        timeout: p.duration(
            "drain.timeout",
            raw.timeout.as_deref(),
            Duration::from_secs(25),
            Duration::ZERO,
            HOUR,
        ),
        grace_period: p.duration(
            "drain.grace_period",
            raw.grace_period.as_deref(),
            Duration::from_secs(30),
            Duration::from_secs(1),
            DAY,
        ),
    }
}

fn log(raw: &RawLog, p: &mut Problems) -> LogConfig {
    let format = match raw.format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.push(
                "log.format",
                format!("unknown format \"{other}\" (expected json or text)"),
            );
            LogFormat::Text
        }
    };
    let level = raw.level.clone().unwrap_or_else(|| "info".to_owned());
    if let Err(e) = level.parse::<tracing_subscriber::EnvFilter>() {
        p.push("log.level", format!("invalid filter \"{level}\": {e}"));
    }
    LogConfig { format, level }
}

fn reload(raw: &RawReload, p: &mut Problems) -> ReloadConfig {
    let reload = ReloadConfig {
        poll_interval: p.duration(
            "reload.poll_interval",
            raw.poll_interval.as_deref(),
            Duration::from_secs(2),
            Duration::ZERO,
            HOUR,
        ),
    };
    if !reload.poll_interval.is_zero() && reload.poll_interval < Duration::from_millis(100) {
        p.push("reload.poll_interval", "must be 0s (off) or at least 100ms");
    }
    reload
}

/// Both TLS files or neither; the pair is loaded now, so a bad certificate is
/// a config error (at startup, in `lifeguard check`, and on reload).
fn tls(raw: &RawTls, p: &mut Problems) -> Option<TlsConfig> {
    let cert = raw.cert_file.as_deref().filter(|s| !s.is_empty());
    let key = raw.key_file.as_deref().filter(|s| !s.is_empty());
    let (cert_file, key_file) = match (cert, key) {
        (None, None) => return None,
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        (Some(_), None) => {
            p.push("tls.key_file", "required when tls.cert_file is set");
            return None;
        }
        (None, Some(_)) => {
            p.push("tls.cert_file", "required when tls.key_file is set");
            return None;
        }
    };
    match super::certs::load(&cert_file, &key_file) {
        Ok(loaded) => Some(TlsConfig {
            cert_file,
            key_file,
            key: Arc::new(loaded.key),
            files_sha256: loaded.files_sha256,
        }),
        Err(e) => {
            p.push(e.field(), e);
            None
        }
    }
}
