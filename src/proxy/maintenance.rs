//! During maintenance, which requests still reach the app (bypass by path
//! prefix, peer CIDR, or header token) and the maintenance answer itself.

use super::answer::{Answer, Page};
use super::body::ProxyBody;
use crate::config::MaintenanceConfig;
use http::header::HeaderValue;
use http::{HeaderMap, Response, StatusCode};
use std::net::IpAddr;

/// Whether a request still reaches the app during maintenance: its path is
/// under an allowed prefix, its peer in a bypass CIDR, or it carries the
/// bypass header with the right token.
pub(super) fn bypassed(
    cfg: &MaintenanceConfig,
    peer: IpAddr,
    path: &str,
    headers: &HeaderMap,
) -> bool {
    if cfg.allow_paths.iter().any(|p| under_prefix(path, p)) {
        return true;
    }
    let peer = canonical(peer);
    if cfg.bypass_cidrs.iter().any(|net| net.contains(&peer)) {
        return true;
    }
    cfg.bypass.as_ref().is_some_and(|b| {
        headers
            .get(&b.header)
            .is_some_and(|v| b.token.matches(v.as_bytes()))
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
pub(super) fn response(
    cfg: &MaintenanceConfig,
    wants_json: bool,
    request_id: &HeaderValue,
) -> Response<ProxyBody> {
    let body = if wants_json {
        let v = serde_json::json!({
            "status": 503,
            "error": "maintenance",
            "message": MESSAGE,
            "request_id": request_id.to_str().unwrap_or(""),
            "retry_after": cfg.retry_after.as_secs().max(1),
        });
        Page::Json(v.to_string())
    } else {
        Page::Html(cfg.page.clone())
    };
    Answer {
        status: StatusCode::SERVICE_UNAVAILABLE,
        body,
        retry_after: Some(cfg.retry_after),
        proxy_status: Some(HeaderValue::from_static(PROXY_STATUS)),
        close: false,
    }
    .into_response()
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
