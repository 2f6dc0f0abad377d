//! The header block every answer lifeguard writes itself shares — the error
//! answers (`respond.rs`) and the maintenance page (`maintenance.rs`) — so
//! the two cannot drift apart: status, content type, `Cache-Control:
//! no-store`, and, where they apply, `Retry-After`, `Proxy-Status` (RFC 9209)
//! and `Connection: close`.

use super::body::ProxyBody;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use std::time::Duration;

/// One answer written by lifeguard rather than the app.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: StatusCode,
    /// A JSON body (for clients that prefer it) or an HTML page.
    pub body: Page,
    /// Sent as whole seconds, at least 1, so clients back off.
    pub retry_after: Option<Duration>,
    pub proxy_status: Option<HeaderValue>,
    /// `Connection: close`: only meaningful, and only sent, on HTTP/1.x.
    pub close: bool,
}

#[derive(Debug)]
pub(super) enum Page {
    Json(String),
    Html(Bytes),
}

impl Answer {
    pub(super) fn into_response(self) -> Response<ProxyBody> {
        let (ctype, body) = match self.body {
            Page::Json(s) => ("application/json", Bytes::from(s)),
            Page::Html(b) => ("text/html; charset=utf-8", b),
        };
        let mut resp = Response::new(ProxyBody::full(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(after) = self.retry_after {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        if let Some(ps) = self.proxy_status {
            h.insert("proxy-status", ps);
        }
        if self.close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
