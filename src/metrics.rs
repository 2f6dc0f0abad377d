//! Every metric lifeguard exports, in one place, on an owned registry (not
//! the global one). Label values come only from closed sets: the method list
//! plus `other`, status classes, error kinds, synthesized-response reasons,
//! and endpoint addresses from the config. Children for the closed sets are
//! resolved once at startup, so the request path takes no lock and hashes no
//! labels.
//!
//! No label is named like one a scraper sets on its own: the Prometheus
//! Operator sets `endpoint` (the scrape port's name), `namespace`, `pod`,
//! `container`, `service`, `job` and `instance` on every series, and renames
//! a metric label that collides to `exported_<name>`. An app endpoint's
//! address is therefore labelled `upstream`.

use crate::error::ProxyError;
use http::Method;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::Duration;

/// The label holding an app endpoint's address (see the module doc).
pub const UPSTREAM: &str = "upstream";

/// Methods with their own label value; anything else is `other`.
const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT", "other",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Latency buckets for request durations (seconds).
const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    requests: Vec<IntCounter>, // METHODS × CLASSES
    duration: Histogram,
    pub in_flight: IntGauge,
    pub connections_open: IntGauge,
    pub connections_accepted: IntCounter,
    pub client_aborts: IntCounter,
    endpoint_up: IntGaugeVec,
    state_changes: IntCounterVec,
    probes: IntCounterVec,
    probe_duration: HistogramVec,
    failures: IntCounterVec,
    synthesized: Vec<IntCounter>, // indexed by SynthReason
    pub outcome_unknown: IntCounter,
    crashes: IntCounterVec,
    pub retries: IntCounter,
    pub retry_budget_exhausted: IntCounter,
    pub queue_wait: Histogram,
    pub draining: IntGauge,
    pub maintenance: IntGauge,
    pub config_generation: IntGauge,
    reloads: IntCounterVec,
    pub last_reload_success: Gauge,
    pub tunnels_open: IntGauge,
    tls_cert_reloads: [IntCounter; 2], // invalid, success
    /// 1 if the last reload attempt left the file in force (applied or
    /// unchanged), 0 if it was rejected or unreadable.
    pub last_reload_successful: IntGauge,
    config_info: IntGaugeVec,
    client_timeouts: [IntCounter; ClientTimeout::ALL.len()],
    client_protocol_errors: [IntCounter; ClientProtocolError::ALL.len()],
    /// `[listener][reason]`, indexed by `Listener` and `ShedReason`.
    connections_shed: [[IntCounter; ShedReason::ALL.len()]; Listener::ALL.len()],
    accept_errors: [IntCounter; Listener::ALL.len()],
    pub drained_waits_refused: IntCounter,
    pub connect_fd_exhausted: IntCounter,
    pub fd_limit: IntGauge,
    pub fd_reserve: IntGauge,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
        .expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Builds and registers every metric. The `expect`s only fire on a
    /// programming error (a bad or duplicate name), caught by any test run.
    pub fn new() -> Metrics {
        let r = Registry::new_custom(Some("lifeguard".into()), None).expect("valid prefix");
        let v = Families::register(&r);
        let requests = METHODS
            .iter()
            .flat_map(|m| CLASSES.iter().map(move |c| (m, c)))
            .map(|(m, c)| v.requests.with_label_values(&[m, c]))
            .collect();
        let synthesized = SynthReason::ALL
            .iter()
            .map(|s| v.synthesized.with_label_values(&[s.label()]))
            .collect();
        let tls_cert_reloads = ["invalid", "success"].map(|l| v.tls.with_label_values(&[l]));
        let client_timeouts =
            ClientTimeout::ALL.map(|t| v.client_timeouts.with_label_values(&[t.label()]));
        let connections_shed = Listener::ALL
            .map(|l| ShedReason::ALL.map(|r| v.shed.with_label_values(&[l.label(), r.label()])));
        let accept_errors = Listener::ALL.map(|l| v.accept_errors.with_label_values(&[l.label()]));
        let client_protocol_errors =
            ClientProtocolError::ALL.map(|k| v.client_protocol.with_label_values(&[k.label()]));
        Metrics {
            client_timeouts,
            client_protocol_errors,
            connections_shed,
            accept_errors,
            requests,
            synthesized,
            tls_cert_reloads,
            endpoint_up: v.endpoint_up,
            state_changes: v.state_changes,
            probes: v.probes,
            probe_duration: v.probe_duration,
            failures: v.failures,
            crashes: v.crashes,
            reloads: v.reloads,
            config_info: v.config_info,
            last_reload_success: v.last_reload_success,
            duration: histogram(&r, "request_duration_seconds", "Time from request accepted to response finished.", &DURATION_BUCKETS),
            in_flight: gauge(&r, "requests_in_flight", "Requests accepted whose response is not finished."),
            connections_open: gauge(&r, "client_connections_open", "Client connections open."),
            connections_accepted: counter(&r, "client_connections_accepted_total", "Client connections accepted."),
            client_aborts: counter(&r, "client_aborts_total", "Requests whose client went away before the response finished (the app request is cancelled)."),
            outcome_unknown: counter(&r, "outcome_unknown_total", "Non-idempotent requests that failed after being sent: the app may or may not have processed them."),
            retries: counter(&r, "retries_total", "Requests resent after failing once sent."),
            retry_budget_exhausted: counter(&r, "retry_budget_exhausted_total", "Resends refused because the retry budget was used up."),
            queue_wait: histogram(&r, "queue_wait_seconds", "Time requests waited for a free slot (app.max_in_flight or slow start).", &DURATION_BUCKETS),
            draining: gauge(&r, "draining", "1 while shutting down (draining or closing)."),
            maintenance: gauge(&r, "maintenance", "1 while maintenance mode is on."),
            config_generation: gauge(&r, "config_generation", "Generation of the config in force (1 at start, +1 per applied reload)."),
            tunnels_open: gauge(&r, "tunnels_open", "Upgraded connections (WebSocket) open."),
            drained_waits_refused: counter(&r, "admin_drained_waits_refused_total", "`/admin/drained?wait=` calls answered at once because the number of waiters was at its cap."),
            connect_fd_exhausted: counter(&r, "connect_fd_exhausted_total", "Connects to the app that failed for want of a file descriptor (answered 503 proxy_internal_error; never counted against the app)."),
            fd_limit: gauge(&r, "fd_limit", "The process's file descriptor limit (soft RLIMIT_NOFILE, raised to the hard limit at startup)."),
            fd_reserve: gauge(&r, "fd_reserve", "File descriptors kept free for lifeguard itself (app connections, probes, files): client connections are shed within this margin of fd_limit."),
            last_reload_successful: gauge(&r, "config_last_reload_successful", "1 if the last config reload attempt succeeded (or found nothing new), 0 if the file was rejected or unreadable."),
            registry: r,
        }
    }

    /// Pre-creates the `config_reloads_total` series for each result (the
    /// labels of `ReloadResult`, which lives with the reload record), so they
    /// read 0 rather than missing.
    pub fn declare_reload_results(&self, results: impl IntoIterator<Item = &'static str>) {
        for result in results {
            self.reloads.with_label_values(&[result]);
        }
    }

    /// Resolves an endpoint's series once (so they read 0 rather than
    /// missing, and counting takes no lock).
    pub fn register_endpoint(&self, endpoint: &str) -> EndpointMetrics {
        EndpointMetrics {
            up: self.endpoint_up.with_label_values(&[endpoint]),
            crashes: self.crashes.with_label_values(&[endpoint]),
            probe_duration: self.probe_duration.with_label_values(&[endpoint]),
            failures: ProxyError::APP_FAILURES
                .map(|e| self.failures.with_label_values(&[endpoint, e.kind()])),
            probes: ProbeResult::ALL.map(|p| self.probes.with_label_values(&[endpoint, p.label()])),
            // Indexed by `up as usize`.
            state_changes: ["down", "up"]
                .map(|to| self.state_changes.with_label_values(&[endpoint, to])),
        }
    }

    /// Drops the series of an endpoint removed from the config.
    pub fn forget_endpoint(&self, endpoint: &str) {
        let _ = self.endpoint_up.remove_label_values(&[endpoint]);
        let _ = self.crashes.remove_label_values(&[endpoint]);
        let _ = self.probe_duration.remove_label_values(&[endpoint]);
        for e in ProxyError::APP_FAILURES {
            let _ = self.failures.remove_label_values(&[endpoint, e.kind()]);
        }
        for p in ProbeResult::ALL {
            let _ = self.probes.remove_label_values(&[endpoint, p.label()]);
        }
        for to in ["up", "down"] {
            let _ = self.state_changes.remove_label_values(&[endpoint, to]);
        }
    }

    /// Counts a finished request.
    pub fn observe_request(&self, method: &Method, status: u16, elapsed: Duration) {
        let m = METHODS
            .iter()
            .position(|m| *m == method.as_str())
            .unwrap_or(METHODS.len() - 1);
        let c = (usize::from(status / 100)).clamp(1, 5) - 1;
        self.requests[m * CLASSES.len() + c].inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// Counts a response lifeguard wrote itself.
    pub fn synthesized(&self, reason: SynthReason) {
        self.synthesized[reason as usize].inc();
    }

    /// Counts a config reload attempt (a `ReloadResult` label).
    pub fn reload(&self, result: &str) {
        self.reloads.with_label_values(&[result]).inc();
    }

    /// Labels `config_info` with the SHA-256 of the config now in force.
    pub fn config_in_force(&self, sha256: &str, previous: Option<&str>) {
        if let Some(old) = previous.filter(|old| *old != sha256) {
            let _ = self.config_info.remove_label_values(&[old]);
        }
        self.config_info.with_label_values(&[sha256]).set(1);
    }

    /// Counts a client connection lifeguard ended for breaking the protocol
    /// (no request reached the proxy's request path).
    pub fn client_protocol_error(&self, kind: ClientProtocolError) {
        self.client_protocol_errors[kind as usize].inc();
    }

    /// Counts a client cut by one of its timeouts.
    pub fn client_timeout(&self, t: ClientTimeout) {
        self.client_timeouts[t as usize].inc();
    }

    /// The counter behind `client_timeout(t)`, for holders that count
    /// without a `Metrics` at hand (a connection's watchdog).
    pub fn client_timeout_counter(&self, t: ClientTimeout) -> IntCounter {
        self.client_timeouts[t as usize].clone()
    }

    /// Counts a connection closed at accept instead of served.
    pub fn connection_shed(&self, l: Listener, r: ShedReason) {
        self.connections_shed[l as usize][r as usize].inc();
    }

    /// Counts a failed `accept` (logged at most once a second).
    pub fn accept_error(&self, l: Listener) {
        self.accept_errors[l as usize].inc();
    }

    /// Counts a TLS certificate change (`success` or `invalid`).
    pub fn tls_cert_reload(&self, ok: bool) {
        self.tls_cert_reloads[usize::from(ok)].inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
    }
}

/// Why lifeguard answered instead of the app (the `reason` label of
/// `synthesized_responses_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthReason {
    AppDown,
    AppCrashed,
    Timeout,
    Overload,
    BadResponse,
    Maintenance,
    BadRequest,
}

impl SynthReason {
    /// Every reason, in discriminant order (the counters are indexed by it).
    pub const ALL: [SynthReason; 7] = [
        SynthReason::AppDown,
        SynthReason::AppCrashed,
        SynthReason::Timeout,
        SynthReason::Overload,
        SynthReason::BadResponse,
        SynthReason::Maintenance,
        SynthReason::BadRequest,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SynthReason::AppDown => "app_down",
            SynthReason::AppCrashed => "app_crashed",
            SynthReason::Timeout => "timeout",
            SynthReason::Overload => "overload",
            SynthReason::BadResponse => "bad_response",
            SynthReason::Maintenance => "maintenance",
            SynthReason::BadRequest => "bad_request",
        }
    }

    pub fn of(err: ProxyError) -> SynthReason {
        match err {
            ProxyError::AppUnavailable
            | ProxyError::AppRefused
            | ProxyError::AppConnectTimeout
            | ProxyError::AppConnectFailed => SynthReason::AppDown,
            ProxyError::AppClosedBeforeResponse | ProxyError::ResetAfterResponse => {
                SynthReason::AppCrashed
            }
            ProxyError::ResponseTimeout => SynthReason::Timeout,
            // lifeguard's own capacity (`Proxy-Status` tells it from the
            // app's max_in_flight; `connect_fd_exhausted_total` counts it).
            ProxyError::Overloaded | ProxyError::FdExhausted => SynthReason::Overload,
            ProxyError::BadResponse => SynthReason::BadResponse,
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::ClientBodyAborted
            // The 408 (also in client_timeouts_total{reason="body"}).
            | ProxyError::ClientBodyTimeout
            | ProxyError::UnsupportedTransferCoding => SynthReason::BadRequest,
        }
    }
}

/// Why lifeguard ended a client connection below the request path (the
/// `kind` label of `client_protocol_errors_total`): hyper's parser rejected
/// the head, the head did not arrive in time, or an HTTP/2 client reset too
/// many of the streams lifeguard had accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProtocolError {
    /// An unparseable request head, answered `400` by hyper.
    MalformedHead,
    /// A head over `client.max_header_size` (`431`) or a target too long (`414`).
    HeadTooLarge,
    /// No complete head within `client.header_timeout` (`408`).
    HeaderTimeout,
    /// An HTTP/2 connection over its budget of accepted-then-reset streams (GOAWAY).
    H2ResetFlood,
}

impl ClientProtocolError {
    /// Every kind, in discriminant order (the counters are indexed by it).
    pub const ALL: [ClientProtocolError; 4] = [
        ClientProtocolError::MalformedHead,
        ClientProtocolError::HeadTooLarge,
        ClientProtocolError::HeaderTimeout,
        ClientProtocolError::H2ResetFlood,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ClientProtocolError::MalformedHead => "malformed_head",
            ClientProtocolError::HeadTooLarge => "head_too_large",
            ClientProtocolError::HeaderTimeout => "header_timeout",
            ClientProtocolError::H2ResetFlood => "h2_reset_flood",
        }
    }
}

/// Which client timeout cut a request or a connection (the `reason` label
/// of `client_timeouts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTimeout {
    /// `client.header_timeout`: a request head too slow (slowloris).
    Header,
    /// `client.body_timeout`: no request-body byte for that long.
    Body,
    /// `client.send_timeout`: the client accepted no response byte for that long.
    Send,
}

impl ClientTimeout {
    /// Every reason, in discriminant order (the counters are indexed by it).
    pub const ALL: [ClientTimeout; 3] = [
        ClientTimeout::Header,
        ClientTimeout::Body,
        ClientTimeout::Send,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ClientTimeout::Header => "header",
            ClientTimeout::Body => "body",
            ClientTimeout::Send => "send",
        }
    }
}

/// A listening port (the `listener` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Proxy,
    Admin,
}

impl Listener {
    pub const ALL: [Listener; 2] = [Listener::Proxy, Listener::Admin];

    pub fn label(self) -> &'static str {
        match self {
            Listener::Proxy => "proxy",
            Listener::Admin => "admin",
        }
    }
}

/// Why a connection was closed at accept (the `reason` label of
/// `connections_shed_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShedReason {
    /// Open file descriptors were within the reserve of the limit.
    FdReserve,
    /// `accept` itself failed for want of a descriptor; one was freed to
    /// take the connection off the backlog and close it.
    FdExhausted,
    /// The admin port's connection cap.
    ConnectionLimit,
}

impl ShedReason {
    pub const ALL: [ShedReason; 3] = [
        ShedReason::FdReserve,
        ShedReason::FdExhausted,
        ShedReason::ConnectionLimit,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ShedReason::FdReserve => "fd_reserve",
            ShedReason::FdExhausted => "fd_exhausted",
            ShedReason::ConnectionLimit => "connection_limit",
        }
    }
}

/// What one active health probe found (the `result` label of
/// `health_probes_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeResult {
    Healthy,
    BadStatus,
    Refused,
    Timeout,
    Failed,
}

impl ProbeResult {
    /// Every result, in discriminant order (the counters are indexed by it).
    pub const ALL: [ProbeResult; 5] = [
        ProbeResult::Healthy,
        ProbeResult::BadStatus,
        ProbeResult::Refused,
        ProbeResult::Timeout,
        ProbeResult::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ProbeResult::Healthy => "healthy",
            ProbeResult::BadStatus => "bad_status",
            ProbeResult::Refused => "refused",
            ProbeResult::Timeout => "timeout",
            ProbeResult::Failed => "failed",
        }
    }
}

/// An endpoint's metric handles, resolved once when the endpoint is created.
#[derive(Debug, Clone)]
pub struct EndpointMetrics {
    pub up: IntGauge,
    pub crashes: IntCounter,
    pub probe_duration: Histogram,
    failures: [IntCounter; ProxyError::APP_FAILURES.len()],
    probes: [IntCounter; ProbeResult::ALL.len()],
    state_changes: [IntCounter; 2],
}

impl EndpointMetrics {
    /// Counts a failed exchange. Only the app's own failures
    /// (`ProxyError::APP_FAILURES`) are counted per endpoint.
    pub fn failure(&self, err: ProxyError) {
        if let Some(i) = ProxyError::APP_FAILURES.iter().position(|e| *e == err) {
            self.failures[i].inc();
        }
    }

    pub fn probe(&self, result: ProbeResult, latency: Duration) {
        self.probes[result as usize].inc();
        self.probe_duration.observe(latency.as_secs_f64());
    }

    pub fn state_change(&self, up: bool) {
        self.up.set(i64::from(up));
        self.state_changes[usize::from(up)].inc();
    }
}

/// The labelled families, registered before their children are resolved.
struct Families {
    requests: IntCounterVec,
    synthesized: IntCounterVec,
    failures: IntCounterVec,
    endpoint_up: IntGaugeVec,
    state_changes: IntCounterVec,
    probes: IntCounterVec,
    probe_duration: HistogramVec,
    crashes: IntCounterVec,
    reloads: IntCounterVec,
    tls: IntCounterVec,
    config_info: IntGaugeVec,
    last_reload_success: Gauge,
    client_timeouts: IntCounterVec,
    client_protocol: IntCounterVec,
    shed: IntCounterVec,
    accept_errors: IntCounterVec,
}

impl Families {
    fn register(r: &Registry) -> Families {
        let probe_duration = HistogramVec::new(
            HistogramOpts::new(
                "health_probe_duration_seconds",
                "Duration of active health probes.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &[UPSTREAM],
        )
        .expect("valid metric");
        let last_reload_success = Gauge::new(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
        )
        .expect("valid metric");
        let build = gauge_vec(
            r,
            "build_info",
            "Build information; always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for c in [
            Box::new(probe_duration.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(last_reload_success.clone()),
        ] {
            r.register(c).expect("unique metric");
        }
        Families {
            requests: counter_vec(r, "requests_total", "Requests answered, by method and status class.", &["method", "code_class"]),
            synthesized: counter_vec(r, "synthesized_responses_total", "Responses lifeguard wrote itself instead of the app, by reason.", &["reason"]),
            failures: counter_vec(r, "upstream_failures_total", "Failed exchanges with the app, by endpoint and kind.", &[UPSTREAM, "kind"]),
            endpoint_up: gauge_vec(r, "app_endpoint_up", "1 if the app endpoint is up, 0 if down or not yet probed.", &[UPSTREAM]),
            state_changes: counter_vec(r, "app_endpoint_state_changes_total", "Health state changes of app endpoints, by new state.", &[UPSTREAM, "to"]),
            probes: counter_vec(r, "health_probes_total", "Active health probes, by endpoint and result.", &[UPSTREAM, "result"]),
            crashes: counter_vec(r, "app_crashes_total", "App connections lost with requests in flight (crash reports), by endpoint.", &[UPSTREAM]),
            reloads: counter_vec(r, "config_reloads_total", "Config reload attempts, by result.", &["result"]),
            tls: counter_vec(r, "tls_certificate_reloads_total", "TLS certificate files found changed, by result (success: now served; invalid: rejected, the old one stays).", &["result"]),
            client_protocol: counter_vec(r, "client_protocol_errors_total", "Client connections ended for a protocol error before any request reached the proxy (malformed or oversized head, header timeout, HTTP/2 reset flood), by kind.", &["kind"]),
            client_timeouts: counter_vec(r, "client_timeouts_total", "Requests or client connections cut by a client timeout, by reason (header, body, send).", &["reason"]),
            shed: counter_vec(r, "connections_shed_total", "Connections closed at accept instead of served, by listener and reason.", &["listener", "reason"]),
            accept_errors: counter_vec(r, "accept_errors_total", "Failed accepts (EMFILE and the like), by listener.", &["listener"]),
            config_info: gauge_vec(r, "config_info", "The config in force; always 1, labelled with its SHA-256.", &["sha256"]),
            probe_duration,
            last_reload_success,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_follow_their_enums() {
        for (i, r) in SynthReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, r) in ProbeResult::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, k) in ClientProtocolError::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
        for (i, r) in ClientTimeout::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, r) in ShedReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
        }
        for (i, l) in Listener::ALL.iter().enumerate() {
            assert_eq!(*l as usize, i, "{l:?}");
        }
        let m = Metrics::new();
        let e = m.register_endpoint("e");
        e.state_change(true);
        m.tls_cert_reload(true);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("lifeguard_app_endpoint_state_changes_total{to=\"up\",upstream=\"e\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("lifeguard_tls_certificate_reloads_total{result=\"success\"} 1"),
            "{text}"
        );
        for r in ProbeResult::ALL {
            assert!(text.contains(&format!("result=\"{}\"", r.label())), "{r:?}");
        }
        m.client_timeout(ClientTimeout::Send);
        m.connection_shed(Listener::Admin, ShedReason::ConnectionLimit);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("lifeguard_client_timeouts_total{reason=\"send\"} 1"),
            "{text}"
        );
        assert!(text.contains("lifeguard_client_timeouts_total{reason=\"body\"} 0"));
        assert!(text.contains(
            "lifeguard_connections_shed_total{listener=\"admin\",reason=\"connection_limit\"} 1"
        ));
        assert!(text.contains(
            "lifeguard_connections_shed_total{listener=\"proxy\",reason=\"fd_reserve\"} 0"
        ));
    }

    /// No metric label may collide with a target label the Prometheus
    /// Operator (or Prometheus itself) sets: it would be renamed
    /// `exported_<name>` and the alerts would read the wrong one.
    #[test]
    fn no_label_collides_with_a_scraper_label() {
        const SCRAPER: [&str; 8] = [
            "endpoint",
            "namespace",
            "pod",
            "container",
            "service",
            "job",
            "instance",
            "exported_endpoint",
        ];
        let m = Metrics::new();
        let e = m.register_endpoint("127.0.0.1:3000");
        e.failure(ProxyError::AppRefused);
        let text = String::from_utf8(m.render()).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((_, rest)) = line.split_once('{') else {
                continue;
            };
            let labels = rest.split_once('}').map_or("", |(l, _)| l);
            for pair in labels.split("\",") {
                if let Some((name, _)) = pair.split_once('=') {
                    names.insert(name.trim_start_matches(',').to_owned());
                }
            }
        }
        assert!(names.contains(UPSTREAM), "{names:?}");
        for n in &names {
            assert!(
                !SCRAPER.contains(&n.as_str()),
                "label {n} collides: {names:?}"
            );
        }
    }

    #[test]
    fn renders_prometheus_text_with_prefix() {
        let m = Metrics::new();
        m.observe_request(&Method::GET, 200, Duration::from_millis(3));
        m.observe_request(
            &Method::from_bytes(b"PROPFIND").unwrap(),
            503,
            Duration::from_millis(3),
        );
        m.synthesized(SynthReason::AppCrashed);
        let e = m.register_endpoint("127.0.0.1:3000");
        e.failure(ProxyError::AppRefused);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(
            text.contains("lifeguard_requests_total{code_class=\"2xx\",method=\"GET\"} 1"),
            "{text}"
        );
        assert!(text.contains("lifeguard_requests_total{code_class=\"5xx\",method=\"other\"} 1"));
        assert!(text.contains("lifeguard_synthesized_responses_total{reason=\"app_crashed\"} 1"));
        assert!(text.contains(
            "lifeguard_upstream_failures_total{kind=\"refused\",upstream=\"127.0.0.1:3000\"} 1"
        ));
        assert!(text.contains("lifeguard_build_info{version=\""));
        m.forget_endpoint("127.0.0.1:3000");
        assert!(!String::from_utf8(m.render())
            .unwrap()
            .contains("127.0.0.1:3000"));
    }
}
