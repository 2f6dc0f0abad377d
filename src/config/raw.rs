//! The serde mirror of `config.yaml`: every key, as written, with no meaning
//! attached yet, and the JSON Schema of the file derived from it
//! (`config::schema`).
//!
//! Reading never stops at the first mistake: every value is a [`Field`],
//! which keeps a value of the wrong type (`Field::Bad`) instead of failing,
//! and every section keeps its unknown keys (`unknown`) instead of failing,
//! so `validate` can name every problem of a file in one run. Values whose
//! parsing can fail (durations, sizes, addresses) stay text here.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_yaml::{Mapping, Value};
use std::borrow::Cow;

/// One key's value: absent (or empty), of the type the key wants, or not.
#[derive(Debug, Clone, Default)]
pub(super) enum Field<T> {
    #[default]
    Missing,
    Ok(T),
    /// The YAML found, which is not of the key's type.
    Bad(Value),
}

/// A mapping's keys as strings (`1:` → `"1"`, `~:` → `"null"`), so that a
/// key that is not a string is an unknown key like any other instead of
/// failing the whole section. Other values are returned as they are.
pub(super) fn string_keys(v: Value) -> Value {
    let Value::Mapping(m) = v else { return v };
    let mut out = Mapping::with_capacity(m.len());
    for (k, v) in m {
        let key = match k {
            Value::String(s) => s,
            Value::Null => "null".into(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => show(&other),
        };
        // Two keys that read the same (`1` and `"1"`): the first is kept.
        if !out.contains_key(key.as_str()) {
            out.insert(Value::String(key), v);
        }
    }
    Value::Mapping(out)
}

impl<T: DeserializeOwned> Field<T> {
    pub(super) fn from_value(v: Value) -> Field<T> {
        if v.is_null() {
            return Field::Missing;
        }
        let v = string_keys(v);
        match serde_yaml::from_value(v.clone()) {
            Ok(t) => Field::Ok(t),
            Err(_) => Field::Bad(v),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Field::from_value)
    }
}

impl<T: JsonSchema> JsonSchema for Field<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A YAML scalar as text: strings as written, numbers in their decimal form
/// (so `max_body_size: 0` and `poll_interval: 0` read as text).
fn scalar_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(D::Error::custom("expected a string")),
    }
}

/// `DURATION`: `0`, or numbers with units (`250ms`, `5s`, `1m30s`).
const DURATION_PATTERN: &str = r"^\s*(0|([0-9]+\s*(ns|us|µs|ms|s|sec|secs|second|seconds|m|min|mins|minute|minutes|h|hr|hrs|hour|hours|d|day|days)\s*)+)$";
/// `SIZE`: bytes, or a number with a decimal, binary or Kubernetes unit.
const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*(B|KB|kB|k|KiB|Ki|MB|M|MiB|Mi|GB|G|GiB|Gi)?\s*$";
/// `HOST:PORT`, `IP:PORT`, `[IPv6]:PORT`; `:PORT` only for a listener.
const LISTEN_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]*):[0-9]{1,5}$";
const ENDPOINT_PATTERN: &str = r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$";
/// Status codes, `Nxx` classes and `A-B` ranges, comma-separated.
const STATUS_PATTERN: &str = r"^\s*([1-5]([0-9]{2}|xx)(\s*-\s*[1-5][0-9]{2})?)(\s*,\s*[1-5]([0-9]{2}|xx)(\s*-\s*[1-5][0-9]{2})?)*\s*$";

macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(super) struct $name(pub String);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                scalar_text(d).map($name)
            }
        }

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $schema
            }
        }
    };
}

text_type!(
    /// Free text (a path, a header name, a filter).
    Text,
    json_schema!({ "type": "string" })
);
text_type!(
    /// A duration such as `250ms`, `5s`, `1m`.
    DurationText,
    json_schema!({ "type": ["string", "integer"], "pattern": DURATION_PATTERN, "minimum": 0, "maximum": 0 })
);
text_type!(
    /// A byte size such as `65536`, `64KiB`, `64Ki`, `1MiB`.
    SizeText,
    json_schema!({ "type": ["string", "integer"], "pattern": SIZE_PATTERN, "minimum": 0 })
);
text_type!(
    /// A listener address: `IP:PORT`, `HOST:PORT` or `:PORT` (every IPv4 address).
    ListenText,
    json_schema!({ "type": "string", "pattern": LISTEN_PATTERN })
);
text_type!(
    /// An app address: `IP:PORT` or `HOST:PORT` (resolved at load).
    EndpointText,
    json_schema!({ "type": "string", "pattern": ENDPOINT_PATTERN })
);
text_type!(
    /// HTTP status codes: `200`, `2xx`, `200-399`, `200, 204`.
    StatusText,
    json_schema!({ "type": ["string", "integer"], "pattern": STATUS_PATTERN, "minimum": 100, "maximum": 599 })
);

/// `health.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawHealthMode {
    Http,
    Tcp,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawLogFormat {
    Json,
    Text,
}

/// lifeguard's configuration file. Every key is optional; unknown keys are
/// errors. Reference: docs/configuration.md.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields, title = "lifeguard configuration")]
pub(super) struct RawConfig {
    /// Where clients connect: `IP:PORT`, `HOST:PORT` or `:PORT` (all IPv4
    /// addresses). Restart required to change.
    pub listen: Field<ListenText>,
    /// The admin port: probes, metrics, status, operator endpoints.
    pub admin: Field<RawAdmin>,
    /// The app behind lifeguard and how it is reached.
    pub app: Field<RawApp>,
    /// Limits and timeouts for clients.
    pub client: Field<RawClient>,
    /// lifeguard's own answers when the app cannot answer.
    pub unavailable: Field<RawUnavailable>,
    /// Active health probes of each app endpoint.
    pub health: Field<RawHealth>,
    /// Resending requests that failed after they were sent.
    pub retry: Field<RawRetry>,
    /// Graceful shutdown (SIGTERM, preStop).
    pub drain: Field<RawDrain>,
    /// Logging.
    pub log: Field<RawLog>,
    /// Hot reload of this file.
    pub reload: Field<RawReload>,
    /// Maintenance mode: a 503 page for every request except the bypasses.
    pub maintenance: Field<RawMaintenance>,
    /// TLS on the main listener (PEM files); both keys or neither.
    pub tls: Field<RawTls>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawReload {
    /// How often this file (and the TLS files) are re-read; `0s`: no polling
    /// (SIGHUP and POST /admin/reload still reload). Default 2s.
    pub poll_interval: Field<DurationText>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    /// Maintenance on from the config itself.
    pub enabled: Field<bool>,
    /// Maintenance is on while this file exists (checked every second).
    pub flag_file: Field<Text>,
    /// Retry-After on maintenance responses. Default 300s.
    pub retry_after: Field<DurationText>,
    /// An HTML file served as the maintenance page (`{{retry_after}}` is
    /// replaced); unset: a built-in page.
    pub page: Field<Text>,
    /// Path prefixes (whole segments) that still reach the app.
    pub allow_paths: Field<Vec<Text>>,
    /// Client addresses or CIDRs that still reach the app.
    pub bypass_cidrs: Field<Vec<Text>>,
    /// A header whose value, equal to the token in bypass_token_file, still
    /// reaches the app.
    pub bypass_header: Field<Text>,
    /// The file holding the bypass token.
    pub bypass_token_file: Field<Text>,
    /// /readyz stays 200 during maintenance. Default true.
    pub ready: Field<bool>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawTls {
    /// PEM certificate chain.
    pub cert_file: Field<Text>,
    /// PEM private key.
    pub key_file: Field<Text>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawRetry {
    /// Idempotent request bodies up to this size are buffered so they can be
    /// replayed. 0 to 16MiB; default 64KiB.
    pub buffer_limit: Field<SizeText>,
    /// Resends of an idempotent request that failed after it was sent. 0 to
    /// 10; default 2.
    #[schemars(range(max = 10))]
    pub attempts: Field<u32>,
    /// Resends may be at most this share of recent requests. 0 to 100;
    /// default 20.
    #[schemars(range(max = 100))]
    pub budget_percent: Field<u32>,
    /// With this header present (e.g. Idempotency-Key), POST and PATCH count
    /// as idempotent. Empty: never resend POST/PATCH.
    pub idempotency_key_header: Field<Text>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawHealth {
    /// http: GET `path` must answer a status in expect_status. tcp: the app
    /// must accept a connection.
    pub mode: Field<RawHealthMode>,
    /// The probed route. Default /health.
    pub path: Field<Text>,
    /// Statuses that prove the app healthy: codes, classes and ranges such
    /// as `200`, `2xx`, `200-399`, `200, 204`. Default 100-499: any answer
    /// below 500 proves the app alive (an app without the route answers 404).
    pub expect_status: Field<StatusText>,
    /// Probe period while the endpoint is up. 10ms to 1h; default 2s.
    pub interval: Field<DurationText>,
    /// Probe period while the endpoint is down. 10ms to 1h; default 250ms.
    pub down_interval: Field<DurationText>,
    /// A probe slower than this fails. 10ms to 1m; default 1s.
    pub timeout: Field<DurationText>,
    /// Consecutive good probes to go up. 1 to 100; default 2.
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: Field<u32>,
    /// Consecutive bad probes to go down. 1 to 100; default 2.
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: Field<u32>,
    /// Concurrency ramp for an endpoint back from down; 0s disables.
    /// Default 10s.
    pub slow_start: Field<DurationText>,
    /// /readyz answers 503 while no endpoint is up. Default true.
    pub ready_requires_app: Field<bool>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawDrain {
    /// Keep accepting this long after the drain starts. Default 5s.
    pub delay: Field<DurationText>,
    /// Deadline from the start of the drain (delay included). Default 25s.
    pub timeout: Field<DurationText>,
    /// The pod's terminationGracePeriodSeconds. Default 30s.
    pub grace_period: Field<DurationText>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawAdmin {
    /// Admin listener: `IP:PORT`, `HOST:PORT` or `:PORT`. Default
    /// 0.0.0.0:9901. Restart required to change.
    pub listen: Field<ListenText>,
    /// File holding a bearer token for /admin/* from outside loopback.
    pub token_file: Field<Text>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawApp {
    /// The app's processes, `IP:PORT` or `HOST:PORT` (a name is resolved at
    /// start and on every reload; one that does not resolve is an error).
    /// 1 to 64; default ["127.0.0.1:3000"].
    #[schemars(length(min = 1, max = 64))]
    pub endpoints: Field<Vec<EndpointText>>,
    /// TCP connect to the app. 10ms to 1m; default 1s.
    pub connect_timeout: Field<DurationText>,
    /// Time the app has to send response headers. 1ms to 24h; default 60s.
    pub response_timeout: Field<DurationText>,
    /// Idle pooled app connections are closed after this; keep it below the
    /// app's keep-alive timeout (Node: 5s). 1ms to 1h; default 2s.
    pub pool_idle_timeout: Field<DurationText>,
    /// Idle pooled connections kept per endpoint. Default 1024.
    pub pool_max_idle_per_endpoint: Field<u32>,
    /// Requests in flight per endpoint; 0: unlimited. Default 0.
    pub max_in_flight: Field<u32>,
    /// How long a request may queue for a free slot. 0s to 1h; default 1s.
    pub queue_timeout: Field<DurationText>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawClient {
    /// From the first byte of a request head to its last. 100ms to 1h;
    /// default 10s.
    pub header_timeout: Field<DurationText>,
    /// A keep-alive connection with no request is closed after this. 100ms
    /// to 24h; default 60s.
    pub idle_timeout: Field<DurationText>,
    /// Longest pause in a request body (408). 100ms to 1h; default 30s.
    pub body_timeout: Field<DurationText>,
    /// Longest time the client may take to accept response bytes. 100ms to
    /// 1h; default 30s.
    pub send_timeout: Field<DurationText>,
    /// Request line plus headers (431 beyond). 16KiB to 1MiB; default 32KiB.
    pub max_header_size: Field<SizeText>,
    /// Largest request body (413 beyond); 0: unlimited. Default 0.
    pub max_body_size: Field<SizeText>,
    /// Client connections open at once. Default 10000.
    #[schemars(range(min = 1))]
    pub max_connections: Field<u32>,
    /// Concurrent streams per HTTP/2 connection. Default 256.
    #[schemars(range(min = 1))]
    pub http2_max_streams: Field<u32>,
    /// Listen backlog of the main listener. Default 4096. Restart required.
    #[schemars(range(min = 1))]
    pub listen_backlog: Field<u32>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawUnavailable {
    /// Retry-After on lifeguard's own 502/503/504. 1s to 24h; default 5s.
    pub retry_after: Field<DurationText>,
    /// A request not yet sent waits this long for an endpoint to come up.
    /// 0s to 5m; default 2s.
    pub hold: Field<DurationText>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(default)]
#[schemars(deny_unknown_fields)]
pub(super) struct RawLog {
    /// json (one object per line) or text. Restart required.
    pub format: Field<RawLogFormat>,
    /// A tracing filter: error, warn, info, debug, or e.g. "info,access=warn".
    pub level: Field<Text>,
    #[schemars(skip)]
    #[serde(flatten)]
    pub unknown: Mapping,
}

/// A YAML value as a message shows it: scalars as written, collections by kind.
pub(super) fn show(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("\"{s}\""),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}
