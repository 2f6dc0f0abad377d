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
use super::addrs::{resolve, ENDPOINT_FORMS, LISTEN_FORMS};
use super::raw::{
    EndpointText, Field, ListenText, RawAdmin, RawApp, RawClient, RawConfig, RawDrain, RawHealth,
    RawHealthMode, RawLog, RawLogFormat, RawReload, RawRetry, RawTls, RawUnavailable,
};
use super::secret::read_secret;
use super::statuses::StatusSet;
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
    p.unknown_keys::<RawConfig>("", &raw.unknown);
    let (listen, admin) = listeners(&raw.listen, raw.admin, &mut p);
    let own = [listen, admin.listen];
    let config = Config {
        listen,
        admin,
        app: app(raw.app, own, &mut p),
        client: client(raw.client, &mut p),
        unavailable: unavailable(raw.unavailable, &mut p),
        health: health(raw.health, &mut p),
        retry: retry(raw.retry, &mut p),
        drain: drain(raw.drain, &mut p),
        log: log(raw.log, &mut p),
        reload: reload(raw.reload, &mut p),
        maintenance: {
            let m = p.section("maintenance", raw.maintenance, |s| &s.unknown);
            super::maintenance::validate(&m, &mut p)
        },
        tls: tls(raw.tls, &mut p),
        source_hash: String::new(),
        source_path: None,
    };
    if p.0.is_empty() {
        Ok(config)
    } else {
        Err(p.0)
    }
}

/// A listener address (`IP:PORT`, `HOST:PORT`, `:PORT`).
fn listen_addr(
    p: &mut Problems,
    field: &str,
    f: &Field<ListenText>,
    default: SocketAddr,
) -> SocketAddr {
    let allowed = format!("an address, written {LISTEN_FORMS}");
    let Some(ListenText(text)) = p.get(field, f, &allowed) else {
        return default;
    };
    resolve(&text, true).unwrap_or_else(|e| {
        p.push(field, format!("{e}; allowed: {LISTEN_FORMS}"));
        SocketAddr::from(([0, 0, 0, 0], 0))
    })
}

/// The two listeners (they must differ) and the admin token.
fn listeners(
    listen: &Field<ListenText>,
    admin: Field<RawAdmin>,
    p: &mut Problems,
) -> (SocketAddr, AdminConfig) {
    let admin = p.section("admin", admin, |s| &s.unknown);
    let listen = listen_addr(p, "listen", listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
    let admin_listen = listen_addr(
        p,
        "admin.listen",
        &admin.listen,
        SocketAddr::from(([0, 0, 0, 0], 9901)),
    );
    if listen == admin_listen && listen.port() != 0 {
        p.push(
            "admin.listen",
            format!("{admin_listen} is also listen: the two must differ"),
        );
    }
    let token_file = p
        .text("admin.token_file", &admin.token_file)
        .filter(|s| !s.is_empty());
    let token = token_file
        .as_deref()
        .and_then(|path| read_secret("admin.token_file", path, p));
    let admin = AdminConfig {
        listen: admin_listen,
        token,
        token_file: token_file.map(PathBuf::from),
    };
    (listen, admin)
}

/// `app.endpoints`: 1 to 64 distinct addresses (default `127.0.0.1:3000`),
/// each one an app can be at, and none of them lifeguard's own listeners
/// (`listen`, `admin.listen`). Names are resolved now. Returns the
/// addresses and, beside each, the text it was written as.
fn endpoints(
    raw: &RawApp,
    own: [SocketAddr; 2],
    p: &mut Problems,
) -> (Vec<SocketAddr>, Vec<String>) {
    let allowed = format!("a list of 1 to 64 addresses, each written {ENDPOINT_FORMS}");
    let list = match p.get("app.endpoints", &raw.endpoints, &allowed) {
        None => {
            return (
                vec![SocketAddr::from(([127, 0, 0, 1], 3000))],
                vec!["127.0.0.1:3000".into()],
            )
        }
        Some(list) if list.is_empty() => {
            p.push(
                "app.endpoints",
                format!("found an empty list; allowed: {allowed}"),
            );
            return (Vec::new(), Vec::new());
        }
        Some(list) if list.len() > 64 => {
            p.push(
                "app.endpoints",
                format!("found {} endpoints; allowed: at most 64", list.len()),
            );
            return (Vec::new(), Vec::new());
        }
        Some(list) => list,
    };
    let mut out = Vec::with_capacity(list.len());
    let mut names = Vec::with_capacity(list.len());
    for (i, EndpointText(text)) in list.iter().enumerate() {
        let field = format!("app.endpoints[{i}]");
        match resolve(text, false) {
            Ok(a) if out.contains(&a) => p.push(
                &field,
                format!("duplicate endpoint \"{text}\" ({a} is listed before)"),
            ),
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
                    names.push(text.trim().to_owned());
                }
            }
            Err(e) => p.push(&field, format!("{e}; allowed: {ENDPOINT_FORMS}")),
        }
    }
    (out, names)
}

/// The listener (its key and address) that `endpoint` would reach, if any.
fn own_listener(endpoint: SocketAddr, own: [SocketAddr; 2]) -> Option<(&'static str, SocketAddr)> {
    ["listen", "admin.listen"]
        .into_iter()
        .zip(own)
        .find(|(_, l)| super::addrs::reaches(endpoint, *l))
}

fn app(raw: Field<RawApp>, own: [SocketAddr; 2], p: &mut Problems) -> AppConfig {
    let a = p.section("app", raw, |s| &s.unknown);
    let (endpoints, endpoint_names) = endpoints(&a, own, p);
    AppConfig {
        endpoints,
        endpoint_names,
        connect_timeout: p.duration(
            "app.connect_timeout",
            &a.connect_timeout,
            Duration::from_secs(1),
            TEN_MS,
            Duration::from_secs(60),
        ),
        response_timeout: p.duration(
            "app.response_timeout",
            &a.response_timeout,
            Duration::from_secs(60),
            MS,
            DAY,
        ),
        pool_idle_timeout: p.duration(
            "app.pool_idle_timeout",
            &a.pool_idle_timeout,
            Duration::from_secs(2),
            MS,
            HOUR,
        ),
        pool_max_idle_per_endpoint: p.count(
            "app.pool_max_idle_per_endpoint",
            &a.pool_max_idle_per_endpoint,
            1024,
            0,
            u32::MAX,
        ) as usize,
        max_in_flight: p.count("app.max_in_flight", &a.max_in_flight, 0, 0, u32::MAX) as usize,
        queue_timeout: p.duration(
            "app.queue_timeout",
            &a.queue_timeout,
            Duration::from_secs(1),
            Duration::ZERO,
            HOUR,
        ),
    }
}

fn client(raw: Field<RawClient>, p: &mut Problems) -> ClientConfig {
    let c = p.section("client", raw, |s| &s.unknown);
    let max_header_size = p.size(
        "client.max_header_size",
        &c.max_header_size,
        32 * 1024,
        16 * 1024,
        1024 * 1024,
    );
    let max_body_size = p.size("client.max_body_size", &c.max_body_size, 0, 0, u64::MAX);
    ClientConfig {
        header_timeout: p.duration(
            "client.header_timeout",
            &c.header_timeout,
            Duration::from_secs(10),
            CLIENT_FLOOR,
            HOUR,
        ),
        idle_timeout: p.duration(
            "client.idle_timeout",
            &c.idle_timeout,
            Duration::from_secs(60),
            CLIENT_FLOOR,
            DAY,
        ),
        body_timeout: p.duration(
            "client.body_timeout",
            &c.body_timeout,
            Duration::from_secs(30),
            CLIENT_FLOOR,
            HOUR,
        ),
        send_timeout: p.duration(
            "client.send_timeout",
            &c.send_timeout,
            Duration::from_secs(30),
            CLIENT_FLOOR,
            HOUR,
        ),
        max_header_size: max_header_size as usize,
        max_body_size: (max_body_size > 0).then_some(max_body_size),
        max_connections: p.count(
            "client.max_connections",
            &c.max_connections,
            10_000,
            1,
            u32::MAX,
        ) as usize,
        http2_max_streams: p.count(
            "client.http2_max_streams",
            &c.http2_max_streams,
            256,
            1,
            u32::MAX,
        ),
        listen_backlog: p.count(
            "client.listen_backlog",
            &c.listen_backlog,
            4096,
            1,
            u32::MAX,
        ),
    }
}

fn unavailable(raw: Field<RawUnavailable>, p: &mut Problems) -> UnavailableConfig {
    let u = p.section("unavailable", raw, |s| &s.unknown);
    // Never 0: `Retry-After: 0` invites an immediate retry storm against a dead app.
    UnavailableConfig {
        retry_after: p.duration(
            "unavailable.retry_after",
            &u.retry_after,
            Duration::from_secs(5),
            Duration::from_secs(1),
            DAY,
        ),
        hold: p.duration(
            "unavailable.hold",
            &u.hold,
            Duration::from_secs(2),
            Duration::ZERO,
            Duration::from_secs(300),
        ),
    }
}

fn health(raw: Field<RawHealth>, p: &mut Problems) -> HealthConfig {
    let h = p.section("health", raw, |s| &s.unknown);
    let path = p
        .text("health.path", &h.path)
        .unwrap_or_else(|| "/health".into());
    let expect_status = match p.get(
        "health.expect_status",
        &h.expect_status,
        "status codes, classes or ranges, e.g. 200, 2xx, 200-399, \"200, 204\"",
    ) {
        None => StatusSet::below_500(),
        Some(text) => StatusSet::parse(&text.0).unwrap_or_else(|e| {
            p.push(
                "health.expect_status",
                format!("{e}; allowed: status codes, classes or ranges, e.g. 200, 2xx, 200-399, \"200, 204\""),
            );
            StatusSet::below_500()
        }),
    };
    HealthConfig {
        mode: match p.get("health.mode", &h.mode, "http or tcp") {
            None | Some(RawHealthMode::Http) => HealthMode::Http,
            Some(RawHealthMode::Tcp) => HealthMode::Tcp,
        },
        path: match path.parse::<http::uri::PathAndQuery>() {
            Ok(pq) if path.starts_with('/') => pq,
            _ => {
                p.push(
                    "health.path",
                    format!("found \"{path}\"; allowed: a path starting with /, e.g. /health"),
                );
                http::uri::PathAndQuery::from_static("/health")
            }
        },
        expect_status,
        interval: p.duration(
            "health.interval",
            &h.interval,
            Duration::from_secs(2),
            TEN_MS,
            HOUR,
        ),
        down_interval: p.duration(
            "health.down_interval",
            &h.down_interval,
            Duration::from_millis(250),
            TEN_MS,
            HOUR,
        ),
        timeout: p.duration(
            "health.timeout",
            &h.timeout,
            Duration::from_secs(1),
            TEN_MS,
            Duration::from_secs(60),
        ),
        healthy_threshold: p.count(
            "health.healthy_threshold",
            &h.healthy_threshold,
            2,
            1,
            MAX_THRESHOLD,
        ),
        unhealthy_threshold: p.count(
            "health.unhealthy_threshold",
            &h.unhealthy_threshold,
            2,
            1,
            MAX_THRESHOLD,
        ),
        slow_start: p.duration(
            "health.slow_start",
            &h.slow_start,
            Duration::from_secs(10),
            Duration::ZERO,
            HOUR,
        ),
        ready_requires_app: p.flag("health.ready_requires_app", &h.ready_requires_app, true),
    }
}

fn retry(raw: Field<RawRetry>, p: &mut Problems) -> RetryConfig {
    let r = p.section("retry", raw, |s| &s.unknown);
    RetryConfig {
        buffer_limit: p.size(
            "retry.buffer_limit",
            &r.buffer_limit,
            64 * 1024,
            0,
            16 * 1024 * 1024,
        ),
        attempts: p.count("retry.attempts", &r.attempts, 2, 0, 10),
        budget_percent: p.count("retry.budget_percent", &r.budget_percent, 20, 0, 100),
        idempotency_key_header: idempotency_key_header(&r, p),
    }
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
    let name = p
        .text(FIELD, &raw.idempotency_key_header)
        .filter(|s| !s.is_empty())?;
    let name = name.as_str();
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

fn drain(raw: Field<RawDrain>, p: &mut Problems) -> DrainConfig {
    let d = p.section("drain", raw, |s| &s.unknown);
    DrainConfig {
        delay: p.duration(
            "drain.delay",
            &d.delay,
            Duration::from_secs(5),
            Duration::ZERO,
            HOUR,
        ),
        timeout: p.duration(
            "drain.timeout",
            &d.timeout,
            Duration::from_secs(25),
            Duration::ZERO,
            HOUR,
        ),
        grace_period: p.duration(
            "drain.grace_period",
            &d.grace_period,
            Duration::from_secs(30),
            Duration::from_secs(1),
            DAY,
        ),
    }
}

fn log(raw: Field<RawLog>, p: &mut Problems) -> LogConfig {
    let l = p.section("log", raw, |s| &s.unknown);
    let format = match p.get("log.format", &l.format, "json or text") {
        None | Some(RawLogFormat::Text) => LogFormat::Text,
        Some(RawLogFormat::Json) => LogFormat::Json,
    };
    let level = p
        .text("log.level", &l.level)
        .unwrap_or_else(|| "info".to_owned());
    if let Err(e) = level.parse::<tracing_subscriber::EnvFilter>() {
        p.push(
            "log.level",
            format!("invalid filter \"{level}\": {e}; allowed: error, warn, info, debug, trace, or a filter such as \"info,access=warn\""),
        );
    }
    LogConfig { format, level }
}

fn reload(raw: Field<RawReload>, p: &mut Problems) -> ReloadConfig {
    let r = p.section("reload", raw, |s| &s.unknown);
    let reload = ReloadConfig {
        poll_interval: p.duration(
            "reload.poll_interval",
            &r.poll_interval,
            Duration::from_secs(2),
            Duration::ZERO,
            HOUR,
        ),
    };
    if !reload.poll_interval.is_zero() && reload.poll_interval < Duration::from_millis(100) {
        p.push(
            "reload.poll_interval",
            format!(
                "{} is too short; allowed: 0s (off), or 100ms to 1h",
                super::units::format_duration(reload.poll_interval)
            ),
        );
    }
    reload
}

/// Both TLS files or neither; the pair is loaded now, so a bad certificate is
/// a config error (at startup, in `lifeguard check`, and on reload).
fn tls(raw: Field<RawTls>, p: &mut Problems) -> Option<TlsConfig> {
    let t = p.section("tls", raw, |s| &s.unknown);
    let cert = p
        .text("tls.cert_file", &t.cert_file)
        .filter(|s| !s.is_empty());
    let key = p
        .text("tls.key_file", &t.key_file)
        .filter(|s| !s.is_empty());
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
