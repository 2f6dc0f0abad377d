//! The one closed set of things that can go wrong on the request path, and the
//! one place (`classify_*`) where transport errors become those things.
//!
//! Two facts decide what a failure means for the client (see ARCHITECTURE.md):
//! was anything sent to the app (`request_sent`), and did a response byte reach
//! the client (then nothing can be synthesized: the body is aborted instead).

use http::StatusCode;
use std::io;

/// A failure on the request path. Every variant maps to exactly one status,
/// RFC 9209 error type and metrics label; matches are exhaustive on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The request was malformed in a way that must not reach the app.
    #[error("malformed request: {0}")]
    BadRequest(&'static str),
    /// The request body is larger than `client.max_body_size`.
    #[error("request body exceeds client.max_body_size")]
    BodyTooLarge,
    /// No endpoint was up (within `unavailable.hold`): nothing was sent.
    #[error("no app endpoint is up")]
    AppUnavailable,
    /// Every endpoint is at `app.max_in_flight` (or its slow-start cap) and
    /// no slot freed within `app.queue_timeout`: nothing was sent.
    #[error("app is at its concurrency limit")]
    Overloaded,
    /// The app refused the TCP connection: its process is not listening.
    #[error("app refused the connection")]
    AppRefused,
    /// The TCP connect did not finish within `app.connect_timeout`.
    #[error("connect to app timed out")]
    AppConnectTimeout,
    /// Any other connect failure (nothing was sent).
    #[error("could not connect to app")]
    AppConnectFailed,
    /// The request went out, and the app closed or reset the connection
    /// before any response header: typically the app process died.
    #[error("app closed the connection before responding")]
    AppClosedBeforeResponse,
    /// No response headers within `app.response_timeout`.
    #[error("app did not respond within app.response_timeout")]
    ResponseTimeout,
    /// The app answered with something that is not HTTP/1.1.
    #[error("app sent an invalid response")]
    BadResponse,
    /// The app failed after response headers went to the client.
    #[error("app connection failed after the response started")]
    ResetAfterResponse,
    /// The client's request body failed while being forwarded (client gone).
    #[error("client request body aborted")]
    ClientBodyAborted,
    /// No new request-body byte for `client.body_timeout` (a stalled upload):
    /// the client's pace, never the app's failure.
    #[error("request body stalled past client.body_timeout")]
    ClientBodyTimeout,
    /// lifeguard itself ran out of file descriptors connecting to the app
    /// (EMFILE/ENFILE): nothing was sent, and the app is not to blame.
    #[error("lifeguard is out of file descriptors")]
    FdExhausted,
    /// The request uses a transfer coding other than `chunked` (say
    /// `gzip, chunked`): lifeguard cannot forward the coding, and dropping
    /// it would change the body (RFC 9112 §6.1: 501).
    #[error("unsupported transfer coding")]
    UnsupportedTransferCoding,
}

impl ProxyError {
    /// The status lifeguard answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::ClientBodyAborted => StatusCode::BAD_REQUEST,
            ProxyError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::AppUnavailable
            | ProxyError::Overloaded
            | ProxyError::AppRefused
            | ProxyError::AppConnectTimeout
            | ProxyError::AppConnectFailed
            | ProxyError::AppClosedBeforeResponse => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ResponseTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadResponse | ProxyError::ResetAfterResponse => StatusCode::BAD_GATEWAY,
            ProxyError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::FdExhausted => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::UnsupportedTransferCoding => StatusCode::NOT_IMPLEMENTED,
        }
    }

    /// Whether any byte of the request may have reached the app. When false,
    /// resending is safe for every method.
    pub fn request_sent(self) -> bool {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::AppUnavailable
            | ProxyError::Overloaded
            | ProxyError::AppRefused
            | ProxyError::AppConnectTimeout
            | ProxyError::AppConnectFailed
            | ProxyError::FdExhausted
            | ProxyError::UnsupportedTransferCoding => false,
            ProxyError::AppClosedBeforeResponse
            | ProxyError::ResponseTimeout
            | ProxyError::BadResponse
            | ProxyError::ResetAfterResponse
            | ProxyError::ClientBodyAborted
            | ProxyError::ClientBodyTimeout => true,
        }
    }

    /// Whether the client must be told its request may or may not have been
    /// processed: the app failed after the request reached it, and the method
    /// is not idempotent, so lifeguard did not resend it. Decided here only;
    /// the answer's `Proxy-Status`, its JSON and the metric all ask this.
    pub fn outcome_unknown(self, idempotent: bool) -> bool {
        self.is_upstream() && self.request_sent() && !idempotent
    }

    /// Whether the failure is the app's (so the client may try again later):
    /// those responses carry `Retry-After` and `Proxy-Status`. `FdExhausted`
    /// is lifeguard's own, but as passing: it is answered the same way (with
    /// a lifeguard-side `Proxy-Status`) and is not in `APP_FAILURES`.
    pub fn is_upstream(self) -> bool {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::ClientBodyAborted
            | ProxyError::ClientBodyTimeout
            | ProxyError::UnsupportedTransferCoding => false,
            ProxyError::AppUnavailable
            | ProxyError::Overloaded
            | ProxyError::AppRefused
            | ProxyError::AppConnectTimeout
            | ProxyError::AppConnectFailed
            | ProxyError::AppClosedBeforeResponse
            | ProxyError::ResponseTimeout
            | ProxyError::BadResponse
            | ProxyError::ResetAfterResponse
            | ProxyError::FdExhausted => true,
        }
    }

    /// Whether the app may have crashed (connection died with a request on it).
    pub fn suggests_crash(self) -> bool {
        matches!(
            self,
            ProxyError::AppClosedBeforeResponse | ProxyError::ResetAfterResponse
        )
    }

    /// The app's own failures on an exchange, counted per endpoint
    /// (`upstream_failures_total`, labelled by `kind`).
    pub const APP_FAILURES: [ProxyError; 7] = [
        ProxyError::AppRefused,
        ProxyError::AppConnectTimeout,
        ProxyError::AppConnectFailed,
        ProxyError::AppClosedBeforeResponse,
        ProxyError::ResponseTimeout,
        ProxyError::BadResponse,
        ProxyError::ResetAfterResponse,
    ];

    /// A closed label for logs and metrics.
    pub fn kind(self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::BodyTooLarge => "body_too_large",
            ProxyError::AppUnavailable => "app_down",
            ProxyError::Overloaded => "overload",
            ProxyError::AppRefused => "refused",
            ProxyError::AppConnectTimeout => "connect_timeout",
            ProxyError::AppConnectFailed => "connect_failed",
            ProxyError::AppClosedBeforeResponse => "reset_before_response",
            ProxyError::ResponseTimeout => "response_timeout",
            ProxyError::BadResponse => "bad_response",
            ProxyError::ResetAfterResponse => "reset_after_response",
            ProxyError::ClientBodyAborted => "client_body_aborted",
            ProxyError::ClientBodyTimeout => "body_timeout",
            ProxyError::FdExhausted => "fd_exhausted",
            ProxyError::UnsupportedTransferCoding => "unsupported_transfer_coding",
        }
    }

    /// The RFC 9209 `Proxy-Status` error type.
    pub fn proxy_status_error(self) -> &'static str {
        match self {
            ProxyError::BadRequest(_)
            | ProxyError::BodyTooLarge
            | ProxyError::ClientBodyAborted
            | ProxyError::ClientBodyTimeout
            | ProxyError::UnsupportedTransferCoding => "http_request_error",
            ProxyError::AppUnavailable => "destination_unavailable",
            ProxyError::Overloaded => "connection_limit_reached",
            ProxyError::AppRefused => "connection_refused",
            ProxyError::AppConnectTimeout => "connection_timeout",
            ProxyError::AppConnectFailed => "destination_unavailable",
            ProxyError::AppClosedBeforeResponse | ProxyError::ResetAfterResponse => {
                "connection_terminated"
            }
            ProxyError::ResponseTimeout => "http_response_timeout",
            ProxyError::BadResponse => "http_protocol_error",
            ProxyError::FdExhausted => "proxy_internal_error",
        }
    }
}

/// Classifies a failed TCP connect (nothing was sent).
pub fn classify_connect(err: &io::Error) -> ProxyError {
    match err.kind() {
        _ if is_fd_exhaustion(err) => ProxyError::FdExhausted,
        io::ErrorKind::ConnectionRefused => ProxyError::AppRefused,
        io::ErrorKind::TimedOut => ProxyError::AppConnectTimeout,
        _ => ProxyError::AppConnectFailed,
    }
}

/// EMFILE (this process) or ENFILE (the whole system): out of descriptors.
pub fn is_fd_exhaustion(err: &io::Error) -> bool {
    use rustix::io::Errno;
    err.raw_os_error()
        .is_some_and(|c| c == Errno::MFILE.raw_os_error() || c == Errno::NFILE.raw_os_error())
}

/// The request body went over `client.max_body_size` while streaming: the
/// error our request body yields to hyper, found again by `classify_exchange`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds client.max_body_size")]
pub struct BodyTooLarge;

/// Classifies a failed exchange on an established app connection, before any
/// response header arrived. Our own request-body limit tripping reaches us
/// as a hyper body error whose source is `BodyTooLarge`.
pub fn classify_exchange(err: &hyper::Error) -> ProxyError {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if e.is::<BodyTooLarge>() {
            return ProxyError::BodyTooLarge;
        }
        source = e.source();
    }
    if err.is_parse() || err.is_parse_status() || err.is_parse_too_large() {
        return ProxyError::BadResponse;
    }
    if err.is_body_write_aborted() || err.is_user() {
        // Our request body (the client's upload) failed. hyper reports the
        // client going away mid-upload this way.
        return ProxyError::ClientBodyAborted;
    }
    // Incomplete message, reset, broken pipe, canceled mid-flight: the app
    // connection died with our request on it.
    ProxyError::AppClosedBeforeResponse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_errors_are_never_sent() {
        for kind in [
            io::ErrorKind::ConnectionRefused,
            io::ErrorKind::TimedOut,
            io::ErrorKind::Other,
        ] {
            let e = classify_connect(&io::Error::from(kind));
            assert!(!e.request_sent(), "{e:?}");
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(
            classify_connect(&io::ErrorKind::ConnectionRefused.into()).proxy_status_error(),
            "connection_refused"
        );
    }

    #[test]
    fn fd_exhaustion_is_lifeguards_own() {
        for errno in [rustix::io::Errno::MFILE, rustix::io::Errno::NFILE] {
            let e = classify_connect(&io::Error::from_raw_os_error(errno.raw_os_error()));
            assert_eq!(e, ProxyError::FdExhausted);
            assert!(!e.request_sent());
            assert!(!ProxyError::APP_FAILURES.contains(&e));
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.proxy_status_error(), "proxy_internal_error");
        }
        let t = ProxyError::ClientBodyTimeout;
        assert_eq!(t.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(!t.is_upstream() && !t.suggests_crash());
        assert!(!t.outcome_unknown(false));
    }

    #[test]
    fn statuses() {
        assert_eq!(
            ProxyError::ResponseTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert_eq!(ProxyError::BadResponse.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(
            ProxyError::AppClosedBeforeResponse.status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(ProxyError::AppClosedBeforeResponse.request_sent());
        assert!(ProxyError::AppClosedBeforeResponse.suggests_crash());
        let te = ProxyError::UnsupportedTransferCoding;
        assert_eq!(te.status(), StatusCode::NOT_IMPLEMENTED);
        assert!(!te.request_sent() && !te.is_upstream() && !te.suggests_crash());
    }
}
