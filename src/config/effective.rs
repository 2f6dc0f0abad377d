//! A `Config` printed back as YAML, every default filled in (`lifeguard
//! config`, like nginx's `-T`): what lifeguard actually runs with. The
//! output is itself a config that validates to the same values; secrets are
//! never printed (their files are). Keys that have no value unless set
//! (token files, the page, the flag file, TLS) are left out when unset.

use super::units::{format_duration, format_size};
use super::{Config, HealthMode, LogFormat};
use serde_yaml::{Mapping, Value};
use std::path::Path;
use std::time::Duration;

fn d(v: Duration) -> Value {
    Value::String(format_duration(v))
}

fn size(n: u64) -> Value {
    Value::String(format_size(n))
}

fn n(v: impl Into<u64>) -> Value {
    Value::Number(v.into().into())
}

fn s(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

fn path(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

fn list<T: std::fmt::Display>(items: &[T]) -> Value {
    Value::Sequence(items.iter().map(s).collect())
}

/// A mapping from `(key, value)` pairs, in order; `None` values left out.
fn map<const N: usize>(entries: [(&str, Option<Value>); N]) -> Value {
    let mut m = Mapping::new();
    for (k, v) in entries {
        if let Some(v) = v {
            m.insert(Value::String(k.to_owned()), v);
        }
    }
    Value::Mapping(m)
}

impl Config {
    /// The effective configuration as a YAML value, keys in `config.yaml`'s order.
    pub fn effective(&self) -> Value {
        let a = &self.app;
        let h = &self.health;
        let c = &self.client;
        let r = &self.retry;
        let m = &self.maintenance;
        map([
            ("listen", Some(s(self.listen))),
            (
                "admin",
                Some(map([
                    ("listen", Some(s(self.admin.listen))),
                    ("token_file", self.admin.token_file.as_deref().map(path)),
                ])),
            ),
            (
                "app",
                Some(map([
                    ("endpoints", Some(list(&a.endpoint_names))),
                    ("connect_timeout", Some(d(a.connect_timeout))),
                    ("response_timeout", Some(d(a.response_timeout))),
                    ("pool_idle_timeout", Some(d(a.pool_idle_timeout))),
                    (
                        "pool_max_idle_per_endpoint",
                        Some(n(a.pool_max_idle_per_endpoint as u64)),
                    ),
                    ("max_in_flight", Some(n(a.max_in_flight as u64))),
                    ("queue_timeout", Some(d(a.queue_timeout))),
                ])),
            ),
            (
                "health",
                Some(map([
                    (
                        "mode",
                        Some(s(match h.mode {
                            HealthMode::Http => "http",
                            HealthMode::Tcp => "tcp",
                        })),
                    ),
                    ("path", Some(s(&h.path))),
                    ("expect_status", Some(s(&h.expect_status))),
                    ("interval", Some(d(h.interval))),
                    ("down_interval", Some(d(h.down_interval))),
                    ("timeout", Some(d(h.timeout))),
                    ("healthy_threshold", Some(n(h.healthy_threshold))),
                    ("unhealthy_threshold", Some(n(h.unhealthy_threshold))),
                    ("slow_start", Some(d(h.slow_start))),
                    (
                        "ready_requires_app",
                        Some(Value::Bool(h.ready_requires_app)),
                    ),
                ])),
            ),
            (
                "client",
                Some(map([
                    ("header_timeout", Some(d(c.header_timeout))),
                    ("idle_timeout", Some(d(c.idle_timeout))),
                    ("body_timeout", Some(d(c.body_timeout))),
                    ("send_timeout", Some(d(c.send_timeout))),
                    ("max_header_size", Some(size(c.max_header_size as u64))),
                    ("max_body_size", Some(size(c.max_body_size.unwrap_or(0)))),
                    ("max_connections", Some(n(c.max_connections as u64))),
                    ("http2_max_streams", Some(n(c.http2_max_streams))),
                    ("listen_backlog", Some(n(c.listen_backlog))),
                ])),
            ),
            (
                "unavailable",
                Some(map([
                    ("retry_after", Some(d(self.unavailable.retry_after))),
                    ("hold", Some(d(self.unavailable.hold))),
                ])),
            ),
            (
                "retry",
                Some(map([
                    ("attempts", Some(n(r.attempts))),
                    ("budget_percent", Some(n(r.budget_percent))),
                    ("buffer_limit", Some(size(r.buffer_limit))),
                    (
                        "idempotency_key_header",
                        Some(s(r
                            .idempotency_key_header
                            .as_ref()
                            .map_or("", |h| h.as_str()))),
                    ),
                ])),
            ),
            (
                "drain",
                Some(map([
                    ("delay", Some(d(self.drain.delay))),
                    ("timeout", Some(d(self.drain.timeout))),
                    ("grace_period", Some(d(self.drain.grace_period))),
                ])),
            ),
            (
                "log",
                Some(map([
                    (
                        "format",
                        Some(s(match self.log.format {
                            LogFormat::Json => "json",
                            LogFormat::Text => "text",
                        })),
                    ),
                    ("level", Some(s(&self.log.level))),
                ])),
            ),
            (
                "reload",
                Some(map([("poll_interval", Some(d(self.reload.poll_interval)))])),
            ),
            (
                "maintenance",
                Some(map([
                    ("enabled", Some(Value::Bool(m.enabled))),
                    ("flag_file", m.flag_file.as_deref().map(path)),
                    ("retry_after", Some(d(m.retry_after))),
                    ("page", m.page_file.as_deref().map(path)),
                    ("allow_paths", Some(list(&m.allow_paths))),
                    ("bypass_cidrs", Some(list(&m.bypass_cidrs))),
                    ("bypass_header", m.bypass.as_ref().map(|b| s(&b.header))),
                    (
                        "bypass_token_file",
                        m.bypass.as_ref().map(|b| path(&b.token_file)),
                    ),
                    ("ready", Some(Value::Bool(m.ready))),
                ])),
            ),
            (
                "tls",
                self.tls.as_ref().map(|t| {
                    map([
                        ("cert_file", Some(path(&t.cert_file))),
                        ("key_file", Some(path(&t.key_file))),
                    ])
                }),
            ),
        ])
    }

    /// [`Config::effective`] as YAML text, with a header saying where it
    /// came from.
    pub fn effective_yaml(&self) -> String {
        let source = self
            .source_path
            .as_ref()
            .map_or("in-process YAML".to_owned(), |p| p.display().to_string());
        let body = serde_yaml::to_string(&self.effective()).unwrap_or_default();
        format!(
            "# lifeguard's effective configuration: every key, defaults filled in.\n# Read from {source} (sha256 {}).\n{body}",
            self.source_hash
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn the_printed_config_reads_back_to_the_same_values() {
        let yaml = "listen: \":18080\"\napp:\n  endpoints: [\"localhost:3000\", \"127.0.0.1:3001\"]\n  connect_timeout: 1500ms\nclient:\n  max_body_size: 10Mi\n  max_header_size: 64Ki\nhealth:\n  expect_status: 2xx\nretry:\n  idempotency_key_header: Idempotency-Key\nmaintenance:\n  bypass_cidrs: [\"10.0.0.0/8\"]\n  allow_paths: [\"/health\"]\n";
        let first = Config::from_yaml(yaml, "t").unwrap();
        let printed = first.effective_yaml();
        let second = Config::from_yaml(&printed, "t").unwrap();
        assert_eq!(second.effective(), first.effective(), "{printed}");
        let v = first.effective();
        assert_eq!(v["listen"].as_str(), Some("0.0.0.0:18080"));
        assert_eq!(v["app"]["endpoints"][0].as_str(), Some("localhost:3000"));
        assert_eq!(v["app"]["connect_timeout"].as_str(), Some("1s500ms"));
        assert_eq!(v["client"]["max_body_size"].as_str(), Some("10MiB"));
        assert_eq!(v["health"]["expect_status"].as_str(), Some("200-299"));
        assert_eq!(
            v["retry"]["idempotency_key_header"].as_str(),
            Some("idempotency-key")
        );
        assert!(v.get("tls").is_none());
        let empty = Config::from_yaml("", "t").unwrap().effective();
        assert_eq!(empty["health"]["expect_status"].as_str(), Some("100-499"));
        assert_eq!(empty["client"]["max_body_size"].as_str(), Some("0"));
    }
}
