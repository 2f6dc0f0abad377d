//! Maintenance mode: lifeguard answers `503` with a maintenance page while the
//! app is being migrated, except for requests that bypass it.
//!
//! Three independent switches turn it on: `maintenance.enabled` in the config,
//! the existence of `maintenance.flag_file` (a migration Job or `kubectl exec`
//! can `touch` it in a shared volume), and `POST /admin/maintenance`. Each is
//! kept in its own flag and the request path reads only their OR, one atomic
//! load; the flag file is checked by a background task every second, never
//! per request. Requests already in flight when maintenance starts finish
//! normally: the check happens once, when a request arrives.

use crate::config::MaintenanceConfig;
use crate::metrics::Metrics;
use crate::proxy::body::ProxyBody;
use crate::shutdown::Phase;
use crate::state::Shared;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{HeaderMap, Response, StatusCode};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// How often the flag file's existence is checked.
const FLAG_POLL: Duration = Duration::from_secs(1);

/// What can turn maintenance on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `maintenance.enabled: true`.
    Config,
    /// `maintenance.flag_file` exists.
    FlagFile,
    /// `POST /admin/maintenance?state=on`.
    Admin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::FlagFile => "flag_file",
            Source::Admin => "admin",
        }
    }
}

/// The three switches and their OR.
#[derive(Debug, Default)]
pub struct Maintenance {
    /// Any switch on: the only flag the request path reads.
    on: AtomicBool,
    config: AtomicBool,
    flag_file: AtomicBool,
    admin: AtomicBool,
    /// Serialises updates so `on` never lags behind a concurrent switch.
    update: Mutex<()>,
}

impl Maintenance {
    /// Whether requests get the maintenance page (bypasses aside).
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    fn switch(&self, source: Source) -> &AtomicBool {
        match source {
            Source::Config => &self.config,
            Source::FlagFile => &self.flag_file,
            Source::Admin => &self.admin,
        }
    }

    /// Sets one switch; logs and updates the gauge when the overall state changes.
    pub fn set(&self, source: Source, value: bool, metrics: &Metrics) {
        let _guard = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.switch(source).swap(value, Ordering::AcqRel);
        if before != value {
            tracing::info!(
                source = source.as_str(),
                on = value,
                "maintenance switch changed"
            );
        }
        let on = self.config.load(Ordering::Acquire)
            || self.flag_file.load(Ordering::Acquire)
            || self.admin.load(Ordering::Acquire);
        if self.on.swap(on, Ordering::AcqRel) != on {
            metrics.maintenance.set(i64::from(on));
            if on {
                tracing::warn!(sources = ?self.sources(), "maintenance mode ON: requests get the maintenance page");
            } else {
                tracing::warn!("maintenance mode OFF: requests go to the app again");
            }
        }
    }

    /// The switches that are on, for `/status` and the admin answer.
    pub fn sources(&self) -> Vec<&'static str> {
        [Source::Config, Source::FlagFile, Source::Admin]
            .into_iter()
            .filter(|s| self.switch(*s).load(Ordering::Acquire))
            .map(Source::as_str)
            .collect()
    }
}

/// Whether a request still reaches the app during maintenance: its path is
/// under an allowed prefix, its peer in a bypass CIDR, or it carries the
/// bypass header with the right token.
pub fn bypassed(cfg: &MaintenanceConfig, peer: IpAddr, path: &str, headers: &HeaderMap) -> bool {
    if cfg.allow_paths.iter().any(|p| under_prefix(path, p)) {
        return true;
    }
    let peer = canonical(peer);
    if cfg.bypass_cidrs.iter().any(|net| net.contains(&peer)) {
        return true;
    }
    cfg.bypass.as_ref().is_some_and(|b| {
        headers.get(&b.header).is_some_and(|v| {
            crate::server::admin::constant_time_eq(v.as_bytes(), b.token.as_bytes())
        })
    })
}

/// `/health` allows `/health` and `/health/db` but not `/healthz`: prefixes
/// match whole path segments (a prefix ending in `/` matches anything below).
fn under_prefix(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// A dual-stack listener reports IPv4 clients as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

const PROXY_STATUS: &str = "lifeguard; error=destination_unavailable; details=\"maintenance\"";
const MESSAGE: &str = "The service is down for maintenance. Please try again later.";

/// The maintenance answer: `503`, `Retry-After`, `Proxy-Status`, and the
/// page prepared at config load (or JSON for clients that prefer it).
pub fn response(
    cfg: &MaintenanceConfig,
    wants_json: bool,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let (ctype, body) = if wants_json {
        let v = serde_json::json!({
            "status": 503,
            "error": "maintenance",
            "message": MESSAGE,
            "request_id": request_id.to_str().unwrap_or(""),
            "retry_after": cfg.retry_after.as_secs().max(1),
        });
        ("application/json", Bytes::from(v.to_string()))
    } else {
        ("text/html; charset=utf-8", cfg.page.clone())
    };
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::RETRY_AFTER,
        HeaderValue::from(cfg.retry_after.as_secs().max(1)),
    );
    h.insert("proxy-status", HeaderValue::from_static(PROXY_STATUS));
    resp
}

const DEFAULT_PAGE: &str = "<!doctype html>
<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">
<title>Down for maintenance</title></head>
<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto;padding:0 1em\">
<h1>Down for maintenance</h1>
<p>This service is being updated and will be back shortly. Please try again in {{retry_after}}.</p>
</body></html>
";

/// Renders the page once per config load: `template` (the `maintenance.page`
/// file) or the built-in page, with `{{retry_after}}` replaced (e.g. `5m`).
pub fn render_page(template: Option<&[u8]>, retry_after: Duration) -> Bytes {
    let template = template.unwrap_or(DEFAULT_PAGE.as_bytes());
    match std::str::from_utf8(template) {
        Ok(text) => {
            let wait = humantime::format_duration(retry_after).to_string();
            Bytes::from(text.replace("{{retry_after}}", &wait))
        }
        // Not UTF-8: served as it is.
        Err(_) => Bytes::copy_from_slice(template),
    }
}

/// Keeps the flag-file switch in step with the file's existence until the
/// process stops. The path is read from the current snapshot each time, so a
/// reload that changes it applies within a second.
pub async fn watch_flag_file(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    loop {
        let path = shared.snapshot.load().config.maintenance.flag_file.clone();
        let present = match path {
            Some(p) => tokio::fs::try_exists(&p).await.unwrap_or(false),
            None => false,
        };
        shared
            .maintenance
            .set(Source::FlagFile, present, &shared.metrics);
        tokio::select! {
            _ = tokio::time::sleep(FLAG_POLL) => {}
            _ = phase.wait_for(|p| *p == Phase::Stopped) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under_prefix("/health", "/health"));
        assert!(under_prefix("/health/db", "/health"));
        assert!(!under_prefix("/healthz", "/health"));
        assert!(under_prefix("/static/x.css", "/static/"));
        assert!(!under_prefix("/", "/health"));
    }

    #[test]
    fn bypass_rules() {
        let c = Config::from_yaml(
            "maintenance:\n  allow_paths: [/health]\n  bypass_cidrs: [\"10.0.0.0/8\"]\n",
            "t",
        )
        .unwrap();
        let m = &c.maintenance;
        let h = HeaderMap::new();
        let outside: IpAddr = "192.168.0.1".parse().unwrap();
        assert!(bypassed(m, outside, "/health", &h));
        assert!(!bypassed(m, outside, "/orders", &h));
        assert!(bypassed(m, "10.2.3.4".parse().unwrap(), "/orders", &h));
        assert!(bypassed(
            m,
            "::ffff:10.2.3.4".parse().unwrap(),
            "/orders",
            &h
        ));
    }

    #[test]
    fn switches_or_together() {
        let m = Maintenance::default();
        let metrics = Metrics::new();
        assert!(!m.is_on());
        m.set(Source::FlagFile, true, &metrics);
        m.set(Source::Admin, true, &metrics);
        assert!(m.is_on());
        assert_eq!(m.sources(), ["flag_file", "admin"]);
        m.set(Source::Admin, false, &metrics);
        assert!(m.is_on(), "flag file still on");
        m.set(Source::FlagFile, false, &metrics);
        assert!(!m.is_on());
        assert_eq!(metrics.maintenance.get(), 0);
    }

    #[test]
    fn json_and_html_answers() {
        let c = Config::from_yaml("maintenance:\n  retry_after: 2m\n", "t").unwrap();
        let id = HeaderValue::from_static("r1");
        let html = response(&c.maintenance, false, &id);
        assert_eq!(html.status(), 503);
        assert_eq!(html.headers()["retry-after"], "120");
        assert_eq!(html.headers()["proxy-status"], PROXY_STATUS);
        assert_eq!(html.headers()["cache-control"], "no-store");
        assert!(String::from_utf8_lossy(&c.maintenance.page).contains("try again in 2m"));
        let json = response(&c.maintenance, true, &id);
        assert_eq!(json.headers()["content-type"], "application/json");
    }
}
