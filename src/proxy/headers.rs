//! Header rules for both directions: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-*`, the request id, framing checks, and origin-form targets.

use crate::error::ProxyError;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, Method, Uri, Version};

pub use crate::runtime::X_REQUEST_ID;
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// RFC 9110 §9.2.2: methods whose repetition has the same intended effect.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Rejects requests whose framing is ambiguous or unsupported. For HTTP/1.1,
/// hyper's parser already normalises the classic smuggling shapes (both
/// `Content-Length` and `Transfer-Encoding`: the length is dropped and the
/// connection closed after the response, RFC 9112 §6.1; identical repeated
/// lengths collapse; differing ones are a 400). These checks hold the same
/// line for HTTP/2 and any parser change.
pub fn check_request(parts: &request::Parts) -> Result<(), ProxyError> {
    let h = &parts.headers;
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Err(ProxyError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if h.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(ProxyError::BadRequest("repeated Content-Length"));
    }
    if parts.method == Method::CONNECT {
        return Err(ProxyError::BadRequest("CONNECT is not supported"));
    }
    let mut hosts = h.get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => return Err(ProxyError::BadRequest("repeated Host")),
        // RFC 9112 §3.2: an HTTP/1.1 request without Host is a 400. An
        // absolute-form target names the host itself (and wins over any
        // Host, §3.2.2), so it is accepted; HTTP/1.0 predates Host, and
        // HTTP/2 carries `:authority` (hyper puts it in the URI).
        (None, None) if parts.version == Version::HTTP_11 && parts.uri.authority().is_none() => {
            return Err(ProxyError::BadRequest("missing Host"));
        }
        (Some(host), None) if !valid_host(host.as_bytes()) => {
            return Err(ProxyError::BadRequest("invalid Host"));
        }
        _ => {}
    }
    check_transfer_coding(h)
}

/// RFC 9112 §3.2: `Host = uri-host [ ":" port ]`, possibly empty (a target
/// without authority). A value that is not an authority, or carries userinfo,
/// is a 400.
fn valid_host(v: &[u8]) -> bool {
    v.is_empty() || (!v.contains(&b'@') && http::uri::Authority::try_from(v).is_ok())
}

/// RFC 9112 §6.1: lifeguard implements `chunked` only. Any other transfer
/// coding (`gzip, chunked`) is a 501: forwarding the body de-chunked but
/// still gzip-coded, without saying so, would hand the app a different body.
/// hyper's parser already rejects a list that does not end in `chunked`;
/// `chunked` applied twice is malformed (400).
fn check_transfer_coding(h: &HeaderMap) -> Result<(), ProxyError> {
    let codings = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty());
    let mut chunked = 0;
    for c in codings {
        if !c.eq_ignore_ascii_case(b"chunked") {
            return Err(ProxyError::UnsupportedTransferCoding);
        }
        chunked += 1;
    }
    if chunked > 1 {
        return Err(ProxyError::BadRequest("chunked applied more than once"));
    }
    Ok(())
}

/// A request body of unknown length (chunked, or HTTP/2 DATA without
/// `Content-Length`) is sent to the app chunked, whatever the method. hyper's
/// client would otherwise send a GET or HEAD with such a body as
/// `Content-Length: 0`-framed, dropping the body without a word: its
/// documented rule is to assume no body for those methods unless the
/// framing header is set explicitly. Called after `prepare_upstream`, which
/// removed the client's `Transfer-Encoding` (hop-by-hop).
pub fn frame_unsized_body(parts: &mut request::Parts, body: &impl http_body::Body) {
    if !body.is_end_stream()
        && body.size_hint().exact().is_none()
        && !parts.headers.contains_key(header::CONTENT_LENGTH)
    {
        parts.headers.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
    }
}

/// Whether this is an HTTP/1.1 upgrade (e.g. WebSocket) to tunnel.
pub fn is_upgrade(version: Version, headers: &HeaderMap) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token.as_bytes()))
}

/// The comma-separated tokens of every `Connection` value, trimmed, split
/// as bytes: a value with obs-text (bytes 0x80–0xff, which hyper accepts)
/// must not hide the headers it names.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
}

/// Removes hop-by-hop headers: the fixed list, and every header named in
/// `Connection`. With `keep_upgrade`, `Upgrade` survives and `Connection:
/// upgrade` is restored, as tunnelling an upgrade requires.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Only a Connection header naming something beyond the usual tokens needs
    // the slower path (collecting names before removing them).
    let extra: Option<Vec<HeaderName>> = {
        let mut names = connection_tokens(headers)
            .filter(|t| {
                !t.is_empty()
                    && !["close", "keep-alive", "upgrade", "te"]
                        .iter()
                        .any(|k| t.eq_ignore_ascii_case(k.as_bytes()))
            })
            .peekable();
        names.peek().is_some().then(|| {
            names
                .filter_map(|t| HeaderName::from_bytes(t).ok())
                .collect()
        })
    };
    for name in extra.into_iter().flatten() {
        headers.remove(name);
    }
    headers.remove(header::CONNECTION);
    headers.remove(&PROXY_CONNECTION);
    headers.remove(&KEEP_ALIVE);
    headers.remove(header::TRANSFER_ENCODING);
    headers.remove(header::PROXY_AUTHENTICATE);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::UPGRADE);
    }
}

/// Per-connection facts the forwarding headers need, computed once per connection.
#[derive(Debug, Clone)]
pub struct ClientFacts {
    pub peer_ip: HeaderValue,
    pub proto: &'static str,
}

/// Turns the client's request head into the one sent to the app (HTTP/1.1,
/// origin-form target, hop-by-hop removed, forwarding headers, request id).
pub fn prepare_upstream(
    parts: &mut request::Parts,
    facts: &ClientFacts,
    request_id: &HeaderValue,
    upgrade: bool,
) {
    let h = &mut parts.headers;
    // `TE: trailers` is end-to-end in meaning (the client accepts trailers); any
    // other TE value is about this hop only.
    let te_trailers = h
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    h.remove(header::TE);
    strip_hop_by_hop(h, upgrade);
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }

    // HTTP/2 clients and absolute-form targets carry the host in the URI.
    // RFC 9112 §3.2.2: with an absolute-form target the authority wins over
    // any Host header the client sent.
    let host = match (parts.uri.authority(), h.get(header::HOST)) {
        (Some(auth), _) => HeaderValue::from_str(auth.as_str()).ok(),
        (None, Some(host)) => Some(host.clone()),
        (None, None) => None,
    };
    match host {
        Some(host) => {
            h.insert(&X_FORWARDED_HOST, host.clone());
            h.insert(header::HOST, host);
        }
        // No host to vouch for: the client's own value must not pass as ours
        // (an app trusting the proxy would take it as the request's host).
        None => {
            h.remove(&X_FORWARDED_HOST);
        }
    }
    h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static(facts.proto));
    append_forwarded_for(h, &facts.peer_ip);
    h.insert(&X_REQUEST_ID, request_id.clone());

    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        let pq = parts.uri.path_and_query().cloned();
        parts.uri = pq.map_or_else(|| Uri::from_static("/"), Uri::from);
    }
    parts.version = Version::HTTP_11;
}

fn append_forwarded_for(h: &mut HeaderMap, peer_ip: &HeaderValue) {
    let mut existing = h
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .peekable();
    if existing.peek().is_none() {
        h.insert(&X_FORWARDED_FOR, peer_ip.clone());
        return;
    }
    let mut joined = existing.collect::<Vec<_>>().join(", ");
    joined.push_str(", ");
    joined.push_str(peer_ip.to_str().unwrap_or_default());
    if let Ok(v) = HeaderValue::from_str(&joined) {
        h.insert(&X_FORWARDED_FOR, v);
    }
}

/// Whether the client prefers JSON over HTML (by `Accept` q-values).
pub fn prefers_json(headers: &HeaderMap) -> bool {
    let (mut json, mut html) = (0.0f32, 0.0f32);
    for v in headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for item in v.split(',') {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if media.eq_ignore_ascii_case("application/json")
                || media.to_ascii_lowercase().ends_with("+json")
            {
                json = json.max(q);
            } else if media.eq_ignore_ascii_case("text/html") {
                html = html.max(q);
            }
        }
    }
    json > 0.0 && json > html
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(raw: &[(&str, &str)]) -> request::Parts {
        let mut b = http::Request::builder().uri("/p?q=1");
        for (k, v) in raw {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn facts() -> ClientFacts {
        ClientFacts {
            peer_ip: HeaderValue::from_static("10.0.0.9"),
            proto: "http",
        }
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_are_removed() {
        let mut p = parts(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
            ("host", "example.com"),
        ]);
        prepare_upstream(&mut p, &facts(), &HeaderValue::from_static("rid"), false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "proxy-connection",
            "te",
            "upgrade",
        ] {
            assert!(!p.headers.contains_key(gone), "{gone} kept");
        }
        assert_eq!(p.headers["x-kept"], "yes");
        assert_eq!(p.headers["x-forwarded-for"], "10.0.0.9");
        assert_eq!(p.headers["x-forwarded-proto"], "http");
        assert_eq!(p.headers["x-forwarded-host"], "example.com");
        assert_eq!(p.headers["x-request-id"], "rid");
    }

    #[test]
    fn forwarded_for_is_appended_and_te_trailers_kept() {
        let mut p = parts(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2"),
            ("te", "trailers"),
        ]);
        prepare_upstream(&mut p, &facts(), &HeaderValue::from_static("rid"), false);
        assert_eq!(p.headers["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.9");
        assert_eq!(p.headers["te"], "trailers");
    }

    #[test]
    fn upgrade_survives_when_tunnelling() {
        let mut p = parts(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(p.version, &p.headers));
        prepare_upstream(&mut p, &facts(), &HeaderValue::from_static("rid"), true);
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_host() {
        let mut p = http::Request::builder()
            .uri("http://app.local:8080/x?y")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        p.version = Version::HTTP_2;
        prepare_upstream(&mut p, &facts(), &HeaderValue::from_static("rid"), false);
        assert_eq!(p.uri, "/x?y");
        assert_eq!(p.headers["host"], "app.local:8080");
        assert_eq!(p.version, Version::HTTP_11);
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let p = parts(&[("content-length", "5"), ("transfer-encoding", "chunked")]);
        assert!(check_request(&p).is_err());
        let p = parts(&[("content-length", "5"), ("content-length", "6")]);
        assert!(check_request(&p).is_err());
    }

    #[test]
    fn host_is_required_on_http11_and_must_be_an_authority() {
        let mut p = parts(&[]);
        p.version = Version::HTTP_11;
        assert_eq!(
            check_request(&p),
            Err(ProxyError::BadRequest("missing Host"))
        );
        p.version = Version::HTTP_10;
        assert_eq!(check_request(&p), Ok(()), "HTTP/1.0 predates Host");
        let mut abs = http::Request::get("http://example.com/x")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        abs.version = Version::HTTP_11;
        assert_eq!(check_request(&abs), Ok(()), "absolute-form names the host");
        for (host, ok) in [
            ("example.com", true),
            ("example.com:8080", true),
            ("[::1]:80", true),
            ("", true),
            ("a b", false),
            ("user@example.com", false),
            ("example.com/path", false),
        ] {
            let p = parts(&[("host", host)]);
            assert_eq!(check_request(&p).is_ok(), ok, "Host: {host:?}");
        }
    }

    #[test]
    fn only_chunked_is_a_known_transfer_coding() {
        for te in ["chunked", "Chunked", " chunked "] {
            let p = parts(&[("host", "a"), ("transfer-encoding", te)]);
            assert_eq!(check_request(&p), Ok(()), "{te}");
        }
        for te in ["gzip, chunked", "gzip,chunked", "identity, chunked", "br"] {
            assert_eq!(
                check_request(&parts(&[("host", "a"), ("transfer-encoding", te)])),
                Err(ProxyError::UnsupportedTransferCoding),
                "{te}"
            );
        }
        let twice = parts(&[
            ("host", "a"),
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
        ]);
        assert!(matches!(
            check_request(&twice),
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[test]
    fn unsized_bodies_are_framed_chunked_for_every_method() {
        use http_body_util::{BodyExt, Empty, Full, StreamBody};
        let stream = || {
            let frame = http_body::Frame::data(bytes::Bytes::from_static(b"hi"));
            StreamBody::new(futures_util::stream::iter([Ok::<
                _,
                std::convert::Infallible,
            >(frame)]))
        };
        let mut get = parts(&[("host", "a")]);
        frame_unsized_body(&mut get, &stream());
        assert_eq!(get.headers["transfer-encoding"], "chunked");
        let mut sized = parts(&[("host", "a")]);
        frame_unsized_body(&mut sized, &Full::new(bytes::Bytes::from_static(b"hi")));
        assert!(!sized.headers.contains_key("transfer-encoding"));
        let mut empty = parts(&[("host", "a")]);
        frame_unsized_body(&mut empty, &Empty::<bytes::Bytes>::new().boxed());
        assert!(!empty.headers.contains_key("transfer-encoding"));
    }

    #[test]
    fn accept_negotiation() {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_static("application/json"));
        assert!(prefers_json(&h));
        h.insert(
            "accept",
            HeaderValue::from_static("text/html,application/json;q=0.9"),
        );
        assert!(!prefers_json(&h));
        h.insert("accept", HeaderValue::from_static("*/*"));
        assert!(!prefers_json(&h));
        assert!(
            is_idempotent(&Method::PUT)
                && !is_idempotent(&Method::POST)
                && !is_idempotent(&Method::PATCH)
        );
    }
}
