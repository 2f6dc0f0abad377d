//! What lifeguard's own answers for a failed app say, for the assertions:
//! the `Proxy-Status` values of its synthesized responses, and the health
//! config that keeps an app misbehaving on cue in rotation.

/// The `Proxy-Status` details of a request that reached the app before the
/// app failed (so it is not resent).
pub const OUTCOME_UNKNOWN: &str =
    "; details=\"request was sent to the app; outcome unknown; not retried\"";

/// Nothing sent: the connect was refused.
pub fn refused() -> String {
    "lifeguard; error=connection_refused".to_owned()
}

/// Sent, and the app's connection died before the response head.
pub fn terminated() -> String {
    "lifeguard; error=connection_terminated".to_owned()
}

/// As [`terminated`], for a request that is not resent.
pub fn terminated_unknown() -> String {
    format!("lifeguard; error=connection_terminated{OUTCOME_UNKNOWN}")
}

/// No endpoint up: nothing tried.
pub fn destination_unavailable() -> String {
    "lifeguard; error=destination_unavailable".to_owned()
}

/// Health config for apps that misbehave on cue (`ScriptedUpstream`, the
/// raw apps, a Node app without a `/health` route): a TCP probe only
/// connects, so the app is seen up and the probe is neither counted nor
/// answered with the script (an HTTP probe would be, and would take the
/// endpoint down before any request).
pub const TCP_PROBES: &str = "health:\n  mode: tcp\n";
