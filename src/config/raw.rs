//! The serde mirror of `config.yaml`: every key, as written, with no meaning
//! attached yet. Unknown keys are errors (`deny_unknown_fields`) so a typo never
//! silently falls back to a default. Values stay strings where their parsing can
//! fail, so `validate` can name the field and report every problem at once.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub listen: Option<String>,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub app: RawApp,
    #[serde(default)]
    pub client: RawClient,
    #[serde(default)]
    pub unavailable: RawUnavailable,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub retry: RawRetry,
    #[serde(default)]
    pub drain: RawDrain,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub maintenance: RawMaintenance,
    #[serde(default)]
    pub tls: RawTls,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    pub poll_interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    pub enabled: Option<bool>,
    pub flag_file: Option<String>,
    pub retry_after: Option<String>,
    pub page: Option<String>,
    pub allow_paths: Option<Vec<String>>,
    pub bypass_cidrs: Option<Vec<String>>,
    pub bypass_header: Option<String>,
    pub bypass_token_file: Option<String>,
    pub ready: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub buffer_limit: Option<String>,
    pub attempts: Option<u32>,
    pub budget_percent: Option<u32>,
    pub idempotency_key_header: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub mode: Option<String>,
    pub path: Option<String>,
    pub interval: Option<String>,
    pub down_interval: Option<String>,
    pub timeout: Option<String>,
    pub healthy_threshold: Option<u32>,
    pub unhealthy_threshold: Option<u32>,
    pub slow_start: Option<String>,
    pub ready_requires_app: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDrain {
    pub delay: Option<String>,
    pub timeout: Option<String>,
    pub grace_period: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub token_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApp {
    pub endpoints: Option<Vec<String>>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_endpoint: Option<u32>,
    pub max_in_flight: Option<u32>,
    pub queue_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub body_timeout: Option<String>,
    pub send_timeout: Option<String>,
    pub max_header_size: Option<String>,
    pub max_body_size: Option<String>,
    pub max_connections: Option<u32>,
    pub http2_max_streams: Option<u32>,
    pub listen_backlog: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUnavailable {
    pub retry_after: Option<String>,
    pub hold: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}
