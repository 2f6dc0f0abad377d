//! Validation of the `maintenance:` section. Everything a maintenance
//! response needs is prepared here, once per config load: the page is read and
//! rendered, the bypass token read, the CIDRs parsed. A page or token file
//! that cannot be read is a config error naming its key, so a typo shows up in
//! `lifeguard check` (or a rejected reload), not as a broken page mid-migration.

use super::files::{read_capped, PAGE_CAP};
use super::problems::{Problems, DAY};
use super::raw::RawMaintenance;
use super::secret::read_secret;
use super::{MaintenanceBypass, MaintenanceConfig};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub(super) fn validate(raw: &RawMaintenance, p: &mut Problems) -> MaintenanceConfig {
    let retry_after = p.duration(
        "maintenance.retry_after",
        &raw.retry_after,
        Duration::from_secs(300),
        Duration::from_secs(1),
        DAY,
    );
    let page_file = p
        .text("maintenance.page", &raw.page)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    let template = page_file.as_ref().and_then(|path| read_page(path, p));
    let page = super::page::render_page(template.as_deref(), retry_after);

    MaintenanceConfig {
        enabled: p.flag("maintenance.enabled", &raw.enabled, false),
        flag_file: p
            .text("maintenance.flag_file", &raw.flag_file)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from),
        retry_after,
        page,
        page_file,
        allow_paths: allow_paths(raw, p),
        bypass_cidrs: bypass_cidrs(raw, p),
        bypass: bypass(raw, p),
        ready: p.flag("maintenance.ready", &raw.ready, true),
    }
}

/// Path prefixes still sent to the app; each must start with `/`.
fn allow_paths(raw: &RawMaintenance, p: &mut Problems) -> Vec<String> {
    let allow_paths = p
        .texts("maintenance.allow_paths", &raw.allow_paths)
        .unwrap_or_default();
    for (i, prefix) in allow_paths.iter().enumerate() {
        if !prefix.starts_with('/') {
            p.push(
                &format!("maintenance.allow_paths[{i}]"),
                format!("\"{prefix}\" must start with /"),
            );
        }
    }
    allow_paths
}

/// Peers whose requests still reach the app: CIDRs or bare addresses.
fn bypass_cidrs(raw: &RawMaintenance, p: &mut Problems) -> Vec<ipnet::IpNet> {
    let mut bypass_cidrs = Vec::new();
    let written = p
        .texts("maintenance.bypass_cidrs", &raw.bypass_cidrs)
        .unwrap_or_default();
    for (i, text) in written.iter().enumerate() {
        // A bare address means just that address.
        let parsed = text.parse::<ipnet::IpNet>().or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(ipnet::IpNet::from)
                .map_err(|_| ())
        });
        match parsed {
            Ok(net) => bypass_cidrs.push(net.trunc()),
            Err(()) => p.push(
                &format!("maintenance.bypass_cidrs[{i}]"),
                format!("invalid CIDR \"{text}\" (expected e.g. 10.0.0.0/8 or 192.168.1.7)"),
            ),
        }
    }
    bypass_cidrs
}

/// The bypass header and its token: both or neither.
fn bypass(raw: &RawMaintenance, p: &mut Problems) -> Option<MaintenanceBypass> {
    let header = p
        .text("maintenance.bypass_header", &raw.bypass_header)
        .filter(|s| !s.is_empty());
    let token_file = p
        .text("maintenance.bypass_token_file", &raw.bypass_token_file)
        .filter(|s| !s.is_empty());
    match (header.as_deref(), token_file.as_deref()) {
        (None, None) => None,
        (Some(_), None) => {
            p.push(
                "maintenance.bypass_token_file",
                "required when maintenance.bypass_header is set",
            );
            None
        }
        (None, Some(_)) => {
            p.push(
                "maintenance.bypass_header",
                "required when maintenance.bypass_token_file is set",
            );
            None
        }
        (Some(name), Some(path)) => {
            let header = match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    p.push(
                        "maintenance.bypass_header",
                        format!("invalid header name \"{name}\""),
                    );
                    None
                }
            };
            let token = read_secret("maintenance.bypass_token_file", path, p);
            header.zip(token).map(|(header, token)| MaintenanceBypass {
                header,
                token,
                token_file: PathBuf::from(path),
            })
        }
    }
}

/// The page template: a regular file of at most 1 MiB (see `files`).
fn read_page(path: &Path, p: &mut Problems) -> Option<Vec<u8>> {
    read_capped(path, PAGE_CAP)
        .inspect_err(|e| p.push("maintenance.page", e))
        .ok()
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn defaults_and_field_named_errors() {
        let c = Config::from_yaml("", "t").unwrap();
        let m = &c.maintenance;
        assert!(!m.enabled && m.ready && m.bypass.is_none() && m.flag_file.is_none());
        assert_eq!(m.retry_after.as_secs(), 300);
        assert!(String::from_utf8_lossy(&m.page).contains("maintenance"));

        let yaml = "maintenance:\n  page: /nonexistent/page.html\n  allow_paths: [health]\n  bypass_cidrs: [\"10.0.0.0/8\", \"nope\", \"192.168.1.7\"]\n  bypass_header: X-Bypass\n  retry_after: 0s\n";
        let p = Config::from_yaml(yaml, "t").unwrap_err().problems();
        let starts = |s: &str| p.iter().any(|l| l.starts_with(s));
        assert!(
            starts("maintenance.page: cannot read \"/nonexistent/page.html\""),
            "{p:?}"
        );
        assert!(starts("maintenance.allow_paths[0]:"), "{p:?}");
        assert!(
            starts("maintenance.bypass_cidrs[1]: invalid CIDR \"nope\""),
            "{p:?}"
        );
        assert!(starts("maintenance.bypass_token_file: required"), "{p:?}");
        assert!(starts("maintenance.retry_after: 0s is below"), "{p:?}");
        assert_eq!(p.len(), 5, "{p:?}");
    }

    #[test]
    fn page_and_token_are_read_once_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let page = dir.path().join("page.html");
        let token = dir.path().join("token");
        std::fs::write(&page, "<p>back in {{retry_after}}</p>").unwrap();
        std::fs::write(&token, "s3cret\n").unwrap();
        let yaml = format!(
            "maintenance:\n  page: {}\n  retry_after: 10m\n  bypass_header: X-Bypass\n  bypass_token_file: {}\n  bypass_cidrs: [\"10.1.2.3\"]\n",
            page.display(),
            token.display()
        );
        let c = Config::from_yaml(&yaml, "t").unwrap();
        assert_eq!(&c.maintenance.page[..], b"<p>back in 10m</p>");
        let b = c.maintenance.bypass.as_ref().unwrap();
        assert_eq!(
            (b.header.as_str(), b.token.expose()),
            ("x-bypass", "s3cret")
        );
        assert_eq!(c.maintenance.bypass_cidrs[0].to_string(), "10.1.2.3/32");
    }
}
