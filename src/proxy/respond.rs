//! Responses lifeguard writes itself when the app cannot answer. They say
//! plainly what happened: `Proxy-Status` (RFC 9209) for machines, a short HTML
//! or JSON body for people, `Retry-After` so clients back off, and
//! `Connection: close` so an HTTP/1.1 client never reuses a connection whose
//! fate is unclear (and a browser does not resend the request on it).

use super::answer::{Answer, Page};
use super::body::ProxyBody;
use crate::error::ProxyError;
use http::header::HeaderValue;
use http::{Response, StatusCode, Version};
use std::time::Duration;

/// What a synthesized response needs to know about its request.
#[derive(Debug, Clone, Copy)]
pub(super) struct RequestFacts {
    pub version: Version,
    pub idempotent: bool,
    pub wants_json: bool,
}

/// Why lifeguard answered instead of the app, in words for the page.
fn explain(err: ProxyError, facts: RequestFacts) -> &'static str {
    match err {
        ProxyError::BadRequest(why) => why,
        ProxyError::BodyTooLarge => "The request body is larger than this service accepts.",
        ProxyError::ClientBodyAborted => "The request body could not be read.",
        ProxyError::UnsupportedTransferCoding => {
            "The request uses a transfer coding this service does not implement (only chunked is)."
        }
        ProxyError::Overloaded => "The application is at capacity. The request was not processed.",
        ProxyError::AppUnavailable => {
            "No instance of the application is up right now. The request was not processed."
        }
        ProxyError::AppRefused
        | ProxyError::AppConnectTimeout
        | ProxyError::AppConnectFailed => {
            "The application is not accepting connections right now. The request was not processed."
        }
        ProxyError::AppClosedBeforeResponse if !facts.idempotent => {
            "The application stopped while handling this request. It may or may not have been processed; it was not retried."
        }
        ProxyError::AppClosedBeforeResponse => "The application stopped while handling this request.",
        ProxyError::ResponseTimeout if !facts.idempotent => {
            "The application did not answer in time. It may or may not have processed the request; it was not retried."
        }
        ProxyError::ResponseTimeout => "The application did not answer in time.",
        ProxyError::BadResponse | ProxyError::ResetAfterResponse => "The application sent an invalid response.",
        ProxyError::ClientBodyTimeout => "The request body stopped arriving; the request was abandoned.",
        ProxyError::FdExhausted => "The proxy is out of file descriptors. The request was not processed.",
    }
}

/// The `Proxy-Status` value: error type, plus a detail when the request may
/// have been processed (sent, not idempotent, not retried).
fn proxy_status(err: ProxyError, facts: RequestFacts) -> HeaderValue {
    let ty = err.proxy_status_error();
    if err == ProxyError::FdExhausted {
        HeaderValue::from_static(
            "lifeguard; error=proxy_internal_error; details=\"out of file descriptors\"",
        )
    } else if err.outcome_unknown(facts.idempotent) {
        let v = format!("lifeguard; error={ty}; details=\"request was sent to the app; outcome unknown; not retried\"");
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("lifeguard"))
    } else {
        let v = format!("lifeguard; error={ty}");
        HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("lifeguard"))
    }
}

/// Builds lifeguard's own answer for `err`; `cause` (why the app is down,
/// from the health record) is named in the page's (or JSON) message.
pub(super) fn error_response(
    err: ProxyError,
    facts: RequestFacts,
    request_id: &HeaderValue,
    retry_after: Duration,
    cause: Option<&str>,
) -> Response<ProxyBody> {
    let status = err.status();
    let cause = cause.filter(|c| !c.is_empty());
    let message = match cause {
        Some(c) => format!("{} Cause: {c}.", explain(err, facts)),
        None => explain(err, facts).to_owned(),
    };
    let message = message.as_str();
    let id = request_id.to_str().unwrap_or("");
    let body = if facts.wants_json {
        let v = serde_json::json!({
            "status": status.as_u16(),
            "error": err.proxy_status_error(),
            "message": message,
            "request_id": id,
            "outcome_unknown": err.outcome_unknown(facts.idempotent),
        });
        Page::Json(v.to_string())
    } else {
        Page::Html(html_page(status, message, id).into())
    };
    let upstream = err.is_upstream();
    Answer {
        status,
        body,
        retry_after: upstream.then_some(retry_after),
        proxy_status: upstream.then(|| proxy_status(err, facts)),
        // HTTP/2 has no Connection header (RFC 9113 §8.2.2); its streams are
        // independent.
        close: facts.version <= Version::HTTP_11,
    }
    .into_response()
}

fn html_page(status: StatusCode, message: &str, request_id: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let code = status.as_u16();
    let id = escape(request_id);
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {reason}</title></head>\n<body><h1>{code} {reason}</h1>\n<p>{message}</p>\n<p>Request id: <code>{id}</code></p></body></html>\n"
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(idempotent: bool, json: bool) -> RequestFacts {
        RequestFacts {
            version: Version::HTTP_11,
            idempotent,
            wants_json: json,
        }
    }

    /// lifeguard's answer for `err`, with `Retry-After` of 5 s.
    fn answer(
        err: ProxyError,
        idempotent: bool,
        json: bool,
        id: &'static str,
    ) -> Response<ProxyBody> {
        error_response(
            err,
            facts(idempotent, json),
            &HeaderValue::from_static(id),
            Duration::from_secs(5),
            None,
        )
    }

    #[test]
    fn post_after_send_says_outcome_unknown() {
        let r = answer(ProxyError::AppClosedBeforeResponse, false, false, "id1");
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["connection"], "close");
        assert_eq!(r.headers()["retry-after"], "5");
        let ps = r.headers()["proxy-status"].to_str().unwrap();
        assert!(
            ps.starts_with("lifeguard; error=connection_terminated; details=\"request was sent"),
            "{ps}"
        );
    }

    #[test]
    fn refused_has_no_unknown_outcome() {
        let r = answer(ProxyError::AppRefused, false, true, "id");
        assert_eq!(
            r.headers()["proxy-status"],
            "lifeguard; error=connection_refused"
        );
        assert_eq!(r.headers()["content-type"], "application/json");
    }

    #[tokio::test]
    async fn no_endpoint_up_names_the_cause() {
        use http_body_util::BodyExt;
        let cause = "GET /health answered 503 (health.expect_status: 100-499)";
        let r = error_response(
            ProxyError::AppUnavailable,
            facts(true, false),
            &HeaderValue::from_static("id"),
            Duration::from_secs(5),
            Some(cause),
        );
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers()["proxy-status"],
            "lifeguard; error=destination_unavailable"
        );
        let body = r.into_body().collect().await.ok().map(|c| c.to_bytes());
        let page = String::from_utf8_lossy(&body.unwrap_or_default()).into_owned();
        assert!(
            page.contains(&format!("No instance of the application is up right now. The request was not processed. Cause: {cause}.")),
            "{page}"
        );
    }

    #[test]
    fn unsupported_transfer_coding_is_501_and_closes() {
        let r = answer(ProxyError::UnsupportedTransferCoding, true, false, "id");
        assert_eq!(r.status(), 501);
        assert_eq!(r.headers()["connection"], "close");
        assert!(!r.headers().contains_key("retry-after"));
        assert!(!r.headers().contains_key("proxy-status"));
    }

    #[test]
    fn client_errors_carry_no_retry_after() {
        let r = answer(ProxyError::BodyTooLarge, true, false, "<x>");
        assert_eq!(r.status(), 413);
        assert!(!r.headers().contains_key("retry-after"));
    }
}
