//! `GET /status`: everything lifeguard knows, as JSON, for operators.

use crate::inflight::CrashReport;
use crate::runtime::ReloadStatus;
use crate::runtime::Shared;
use crate::shutdown::{DrainOutcome, Phase};
use crate::upstream::health::State;
use serde::Serialize;
use std::time::SystemTime;
use tokio::time::Instant;

#[derive(Debug, Serialize)]
pub(super) struct Status {
    pub version: &'static str,
    pub phase: Phase,
    pub ready: bool,
    pub config: ConfigStatus,
    pub maintenance: MaintenanceStatus,
    pub tls: Option<TlsStatus>,
    pub endpoints: Vec<EndpointStatus>,
    pub in_flight: usize,
    pub client_connections: i64,
    pub tunnels: i64,
    pub drain_outcome: Option<DrainOutcome>,
    pub recent_crashes: Vec<CrashReport>,
}

#[derive(Debug, Serialize)]
pub(super) struct ConfigStatus {
    pub generation: u64,
    pub sha256: String,
    /// The file reloads read (`None`: not loaded from a file).
    pub path: Option<String>,
    /// Last reload attempt (result, trigger, time, errors), settings
    /// awaiting a restart, last success time.
    pub reload: ReloadStatus,
}

#[derive(Debug, Serialize)]
pub(super) struct MaintenanceStatus {
    pub on: bool,
    /// Which switches are on: `config`, `flag_file`, `admin`.
    pub sources: Vec<&'static str>,
    pub flag_file: Option<String>,
    /// `/readyz` stays 200 during maintenance.
    pub ready: bool,
}

#[derive(Debug, Serialize)]
pub(super) struct TlsStatus {
    pub cert_file: String,
    /// SHA-256 over the certificate and key files being served.
    pub files_sha256: String,
}

#[derive(Debug, Serialize)]
pub(super) struct EndpointStatus {
    pub endpoint: String,
    pub state: State,
    pub in_flight: usize,
    pub idle_connections: usize,
    pub last_probe: Option<ProbeStatus>,
    pub last_change_unix_ms: u64,
    pub last_change_reason: String,
}

#[derive(Debug, Serialize)]
pub(super) struct ProbeStatus {
    pub result: &'static str,
    pub status: Option<u16>,
    pub latency_ms: f64,
    pub at_unix_ms: u64,
}

/// Unix milliseconds of a monotonic instant in the past.
fn unix_ms(t: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(t);
    SystemTime::now()
        .checked_sub(ago)
        .and_then(|s| s.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) fn build(shared: &Shared) -> Status {
    use crate::upstream::health::ProbeOutcome;
    let snap = shared.snapshot.load();
    let endpoints = snap
        .endpoints
        .iter()
        .map(|e| {
            let h = e.health();
            EndpointStatus {
                endpoint: e.name.to_string(),
                state: e.state(),
                in_flight: e.outstanding(),
                idle_connections: e.idle_count(),
                last_probe: h.last_probe.map(|p| ProbeStatus {
                    result: p.outcome.label(),
                    status: match p.outcome {
                        ProbeOutcome::Healthy(s) | ProbeOutcome::BadStatus(s) if s > 0 => Some(s),
                        _ => None,
                    },
                    latency_ms: p.latency.as_secs_f64() * 1000.0,
                    at_unix_ms: unix_ms(p.at),
                }),
                last_change_unix_ms: unix_ms(h.last_change),
                last_change_reason: h.last_reason,
            }
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        phase: shared.phase(),
        ready: shared.is_ready(),
        config: ConfigStatus {
            generation: snap.generation,
            sha256: snap.config.source_hash.clone(),
            path: snap
                .config
                .source_path
                .as_ref()
                .map(|p| p.display().to_string()),
            reload: shared.reload.status(),
        },
        maintenance: MaintenanceStatus {
            on: shared.maintenance.is_on(),
            sources: shared.maintenance.sources(),
            flag_file: snap
                .config
                .maintenance
                .flag_file
                .as_ref()
                .map(|p| p.display().to_string()),
            ready: snap.config.maintenance.ready,
        },
        tls: shared
            .tls
            .as_ref()
            .zip(snap.config.tls.as_ref())
            .map(|(r, t)| TlsStatus {
                cert_file: t.cert_file.display().to_string(),
                files_sha256: r.files_sha256(),
            }),
        endpoints,
        in_flight: shared.inflight.len(),
        client_connections: shared.metrics.connections_open.get(),
        tunnels: shared.metrics.tunnels_open.get(),
        drain_outcome: shared.drain_outcome.get().copied(),
        recent_crashes: shared.inflight.recent_crashes(),
    }
}
