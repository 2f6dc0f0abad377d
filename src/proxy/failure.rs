//! What a failed exchange tells lifeguard about the app, written once for
//! every place one is seen (a connect, a send, a response body cut short):
//! the endpoint's failure counter, the passive health signal, and the crash
//! report naming the requests that were in flight when the app died.

use crate::error::ProxyError;
use crate::inflight::{CrashReport, Ticket};
use crate::upstream::Endpoint;

/// A connect to `endpoint` failed (nothing was sent). A refusal means the
/// process is not listening: down now. Anything else (often one dropped SYN
/// on a full accept queue) only makes it suspect.
pub(super) fn on_connect_failure(endpoint: &Endpoint, err: ProxyError) {
    tracing::debug!(endpoint = %endpoint.name, error = err.kind(), "connect failed");
    endpoint.metrics.failure(err);
    if err == ProxyError::AppRefused {
        endpoint.passive_refused();
    } else {
        endpoint.passive_suspect();
    }
}

/// The app failed a request that had reached it (`ticket`'s).
pub(super) fn on_app_failure(endpoint: &Endpoint, err: ProxyError, ticket: &Ticket) {
    if err.is_upstream() {
        endpoint.metrics.failure(err);
    }
    if err.suggests_crash() {
        endpoint.passive_suspect();
        if let Some(report) = ticket.crash_report(err.kind()) {
            endpoint.metrics.crashes.inc();
            log_crash(&report);
        }
    }
}

/// The app answered before the request body was sent (an early `413`, say),
/// closed, and so cut its own response short. The failure is counted, but it
/// is no crash: a process that answered and closed is alive and chose to;
/// only a connection lost before any response (or mid-response to a request
/// it had read completely) suggests one.
pub(super) fn on_cut_after_early_answer(endpoint: &Endpoint, err: ProxyError) {
    endpoint.metrics.failure(err);
}

/// The `app_connection_lost` event: which requests were in flight on the
/// endpoint when its connection died.
fn log_crash(report: &CrashReport) {
    let requests = serde_json::to_string(&report.requests).unwrap_or_default();
    tracing::error!(
        event = "app_connection_lost",
        endpoint = %report.endpoint,
        trigger = report.trigger,
        in_flight = report.requests.len(),
        requests = %requests,
        "app connection lost with requests in flight"
    );
}
