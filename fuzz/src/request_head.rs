//! `request_head`: the fuzzer's bytes read as a request head (request line,
//! then `name: value` lines up to an empty one; LF or CRLF), built into an
//! `http::request::Parts` the way hyper hands one to lifeguard, then run
//! through `proxy::headers`: `strip_hop_by_hop` as the response path calls
//! it (with and without `keep_upgrade`), and `check_request` followed by
//! `prepare_upstream` as the request path does.
//!
//! Pieces that `http` rejects fall back (method `GET`, target `/`) or are
//! skipped (a header line with an invalid name or value), so every input
//! reaches the header code. Invariants, beyond never panicking:
//!
//! - `check_request` refuses exactly: `Content-Length` with
//!   `Transfer-Encoding`, repeated `Content-Length`, repeated `Host`,
//!   `CONNECT`;
//! - after `strip_hop_by_hop`: no `Connection` (or only `Connection:
//!   upgrade` when tunnelling), `Keep-Alive`, `Proxy-Connection`,
//!   `Transfer-Encoding`, `Proxy-Authenticate`, `Upgrade` (unless
//!   tunnelling), nor any header named in a `Connection` value; every other
//!   header kept, values and order intact; stripping again changes nothing;
//! - after `prepare_upstream`, in addition: `TE` absent or exactly
//!   `trailers` (when the client sent `TE: trailers`); one
//!   `X-Forwarded-For`, the client's values (those that are text) joined and
//!   the peer address appended; one `X-Forwarded-Proto`; one `X-Request-Id`,
//!   ours; `Host` from an absolute-form target's authority, else the
//!   client's; `X-Forwarded-Host`, when present, equal to `Host`; an
//!   origin-form target (no scheme, no authority); HTTP/1.1.
//!
//! Findings, both fixed in `src/proxy/headers.rs` (inputs kept in
//! `fuzz/regressions/request_head/`); while a finding is open it is listed
//! in `TOLERATED` and its input carries an `open-` prefix:
//! [`check`] tolerates them so that fuzzing goes on past them, and
//! [`check_strict`] does not; `fuzz/regressions/request_head/open-*` keeps
//! an input for each, which `tests/fuzz_regressions.rs` requires to pass
//! `check` and to fail `check_strict` (so a fix is noticed: then drop the
//! tolerance here and the `open-` prefix of the file).
//!
//! - [`Open::ConnectionNotText`]: a `Connection` value that is not
//!   visible ASCII (obs-text, bytes 0x80-0xff, which hyper accepts) is
//!   skipped whole by `strip_hop_by_hop`, so the headers it names reach the
//!   app (`Connection: caf\xe9, X-Secret` lets `X-Secret` through).
//! - [`Open::ForwardedHostWithoutHost`]: a request with no host (no `Host`
//!   header, no authority in the target: HTTP/1.0, or HTTP/1.1 and HTTP/2
//!   clients that leave it out) keeps the client's own `X-Forwarded-Host`,
//!   since `prepare_upstream` only sets it when there is a host; an app
//!   that trusts the proxy's `X-Forwarded-Host` (Express's `req.hostname`
//!   with `trust proxy`) then sees a host of the client's choosing.

use crate::api::headers::{self, ClientFacts};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{request, Method, Uri, Version};

/// The peer address and request id every input is prepared with.
const PEER: &str = "10.0.0.9";
const REQUEST_ID: &str = "fuzz-rid-0001";

/// Always removed by `strip_hop_by_hop` (`upgrade` unless tunnelling).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "proxy-authenticate",
    "upgrade",
];

/// Set by `prepare_upstream` after stripping, whatever the client sent.
const SET_BY_PROXY: [&str; 5] = [
    "host",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-request-id",
];

/// The open findings [`check`] tolerates: none today (both below are
/// fixed; their inputs stay in `fuzz/regressions/request_head/`). An entry
/// goes here while a new finding waits for its fix.
const TOLERATED: &[Open] = &[];

/// Findings [`check`] can tolerate while they wait for a fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // tolerated by no one while nothing is open
enum Open {
    ConnectionNotText,
    ForwardedHostWithoutHost,
}

/// Runs one input, tolerating the open findings; `Err` names the first
/// broken invariant. What the fuzz target runs.
pub fn check(data: &[u8]) -> Result<(), String> {
    run(data, TOLERATED)
}

/// As [`check`], tolerating nothing.
pub fn check_strict(data: &[u8]) -> Result<(), String> {
    run(data, &[])
}

fn run(data: &[u8], tolerated: &[Open]) -> Result<(), String> {
    let parts = parse(data);
    let cx = Cx { tolerated };
    for keep_upgrade in [false, true] {
        let mut h = parts.headers.clone();
        headers::strip_hop_by_hop(&mut h, keep_upgrade);
        cx.check_stripped(&parts.headers, &h, keep_upgrade, &[])?;
    }

    let refused = check_request_expectation(&parts);
    match (headers::check_request(&parts), refused) {
        (Ok(()), None) => {}
        (Err(_), Some(_)) => return Ok(()), // the proxy answers 400 itself
        (Ok(()), Some(why)) => return Err(format!("check_request accepted {why}")),
        (Err(e), None) => return Err(format!("check_request refused a fine head: {e:?}")),
    }

    let upgrade = headers::is_upgrade(parts.version, &parts.headers);
    let facts = ClientFacts {
        peer_ip: HeaderValue::from_static(PEER),
        proto: "http",
    };
    let mut out = parts.clone();
    headers::prepare_upstream(
        &mut out,
        &facts,
        &HeaderValue::from_static(REQUEST_ID),
        upgrade,
    );
    cx.check_prepared(&parts, &out, upgrade)
}

/// What one run tolerates.
struct Cx<'a> {
    tolerated: &'a [Open],
}

/// Reads `data` as a request head. Never fails: see the module doc.
pub fn parse(data: &[u8]) -> request::Parts {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(3, |&b| b == b' ');
    let method = words
        .next()
        .and_then(|m| Method::from_bytes(m).ok())
        .unwrap_or(Method::GET);
    let uri = words
        .next()
        .and_then(|u| Uri::try_from(u).ok())
        .unwrap_or_else(|| Uri::from_static("/"));
    let version = match words.next() {
        Some(b"HTTP/1.0") => Version::HTTP_10,
        Some(b"HTTP/2") | Some(b"HTTP/2.0") => Version::HTTP_2,
        Some(b"HTTP/0.9") => Version::HTTP_09,
        _ => Version::HTTP_11,
    };
    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = trim(&line[colon + 1..]);
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            req.headers_mut().append(name, value);
        }
    }
    req.into_parts().0
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Why `check_request` must refuse `parts`, if it must.
fn check_request_expectation(parts: &request::Parts) -> Option<&'static str> {
    let h = &parts.headers;
    let count = |n: header::HeaderName| h.get_all(n).iter().count();
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        Some("Content-Length with Transfer-Encoding")
    } else if count(header::CONTENT_LENGTH) > 1 {
        Some("a repeated Content-Length")
    } else if parts.method == Method::CONNECT {
        Some("CONNECT")
    } else if count(header::HOST) > 1 {
        Some("a repeated Host")
    } else if !h.contains_key(header::HOST)
        && parts.version == Version::HTTP_11
        && parts.uri.authority().is_none()
    {
        Some("HTTP/1.1 without Host (RFC 9112 §3.2)")
    } else if h.get(header::HOST).is_some_and(|v| {
        let v = v.as_bytes();
        !v.is_empty() && (v.contains(&b'@') || http::uri::Authority::try_from(v).is_err())
    }) {
        Some("a Host that is not an authority")
    } else if !only_chunked_once(h) {
        Some("a transfer coding other than one chunked")
    } else {
        None
    }
}

/// Transfer-Encoding absent, or naming `chunked` exactly once and nothing else.
fn only_chunked_once(h: &HeaderMap) -> bool {
    let codings: Vec<&[u8]> = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(trim)
        .filter(|c| !c.is_empty())
        .collect();
    codings.is_empty() || (codings.len() == 1 && codings[0].eq_ignore_ascii_case(b"chunked"))
}

/// The header names a `Connection` header of `h` names, read byte by byte
/// (RFC 9110 §7.6.1: each connection option names a header to remove),
/// each with whether its value is text (visible ASCII).
fn connection_options(h: &HeaderMap) -> Vec<(HeaderName, bool)> {
    h.get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| {
            let text = v.to_str().is_ok();
            v.as_bytes()
                .split(|&b| b == b',')
                .map(trim)
                .filter_map(move |t| HeaderName::from_bytes(t).ok().map(|n| (n, text)))
        })
        .collect()
}

fn values<'a>(h: &'a HeaderMap, name: &HeaderName) -> Vec<&'a [u8]> {
    h.get_all(name).iter().map(HeaderValue::as_bytes).collect()
}

fn shown(v: &[&[u8]]) -> Vec<String> {
    v.iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

/// `out` is `before` after `strip_hop_by_hop(.., keep_upgrade)`, except for
/// the names in `rewritten`, which a later step sets (checked there).
impl Cx<'_> {
    fn check_stripped(
        &self,
        before: &HeaderMap,
        out: &HeaderMap,
        keep_upgrade: bool,
        rewritten: &[&str],
    ) -> Result<(), String> {
        let options = connection_options(before);
        let named = |n: &HeaderName| options.iter().any(|(o, _)| o == n);
        let context = if keep_upgrade { " (tunnelling)" } else { "" };
        for name in HOP_BY_HOP {
            let got = values(out, &HeaderName::from_static(name));
            let allowed: Vec<&[u8]> = match name {
                "connection" if keep_upgrade => vec![b"upgrade"],
                "upgrade" if keep_upgrade => values(before, &header::UPGRADE),
                _ => Vec::new(),
            };
            if got != allowed {
                return Err(format!(
                    "hop-by-hop {name} survived{context}: {:?}",
                    shown(&got)
                ));
            }
        }
        for (name, text) in &options {
            let s = name.as_str();
            // Not header names: `close`, `keep-alive` (a header, removed above)
            // and `upgrade`/`te` are the options every client sends; lifeguard
            // does not look for a header called `Close`.
            // Hop-by-hop names are checked exactly above.
            if ["close", "keep-alive", "upgrade", "te"].contains(&s)
                || HOP_BY_HOP.contains(&s)
                || rewritten.contains(&s)
            {
                continue;
            }
            if !text && self.tolerated.contains(&Open::ConnectionNotText) {
                continue;
            }
            if out.contains_key(name) {
                return Err(format!(
                    "{s} survived{context} though Connection names it: {:?}",
                    shown(&values(out, name))
                ));
            }
        }
        for name in before.keys() {
            if HOP_BY_HOP.contains(&name.as_str())
                || rewritten.contains(&name.as_str())
                || (named(name) && name.as_str() != "close")
            {
                continue;
            }
            if values(before, name) != values(out, name) {
                return Err(format!(
                    "end-to-end {name} changed{context}: {:?} -> {:?}",
                    shown(&values(before, name)),
                    shown(&values(out, name))
                ));
            }
        }
        for name in out.keys() {
            if !before.contains_key(name)
                && !rewritten.contains(&name.as_str())
                && name != "connection"
            {
                return Err(format!("{name} appeared{context}"));
            }
        }
        let mut again = out.clone();
        headers::strip_hop_by_hop(&mut again, keep_upgrade);
        // `rewritten` names are set after stripping; stripping again may only
        // touch them if the client's Connection named them, which `out` no
        // longer carries.
        if &again != out {
            return Err(format!("stripping twice changed the headers{context}"));
        }
        Ok(())
    }

    fn check_prepared(
        &self,
        before: &request::Parts,
        out: &request::Parts,
        upgrade: bool,
    ) -> Result<(), String> {
        let b = &before.headers;
        let h = &out.headers;
        let mut rewritten = SET_BY_PROXY.to_vec();
        rewritten.push("te");
        self.check_stripped(b, h, upgrade, &rewritten)?;

        let options = connection_options(b);
        let named = |n: &str| {
            options
                .iter()
                .any(|(o, text)| o == n && (*text || !self.tolerates_not_text()))
        };
        let one = |name: &str| -> Result<&[u8], String> {
            match values(h, &HeaderName::from_bytes(name.as_bytes()).unwrap()).as_slice() {
                [v] => Ok(v),
                other => Err(format!("{name}: {:?}, not exactly one", shown(other))),
            }
        };

        // TE: only `trailers` crosses, and only if the client sent it.
        let te_trailers = b
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        let te = values(h, &header::TE);
        let want_te: Vec<&[u8]> = if te_trailers {
            vec![b"trailers"]
        } else {
            Vec::new()
        };
        if te != want_te {
            return Err(format!(
                "TE {:?} for a client TE {:?}",
                shown(&te),
                shown(&values(b, &header::TE))
            ));
        }

        if one("x-request-id")? != REQUEST_ID.as_bytes() {
            return Err("x-request-id is not ours".into());
        }
        if one("x-forwarded-proto")? != b"http" {
            return Err("x-forwarded-proto is not the listener's".into());
        }
        let prior: Vec<&str> = if named("x-forwarded-for") {
            Vec::new()
        } else {
            b.get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect()
        };
        let want_xff = if prior.is_empty() {
            PEER.to_owned()
        } else {
            format!("{}, {PEER}", prior.join(", "))
        };
        let xff = one("x-forwarded-for")?;
        if xff != want_xff.as_bytes() {
            return Err(format!(
                "x-forwarded-for {:?}, expected {want_xff:?}",
                String::from_utf8_lossy(xff)
            ));
        }

        let want_host: Option<Vec<u8>> = match before.uri.authority() {
            Some(a) => Some(a.as_str().as_bytes().to_vec()),
            None if named("host") => None,
            None => b.get(header::HOST).map(|v| v.as_bytes().to_vec()),
        };
        let host = values(h, &header::HOST);
        let want: Vec<&[u8]> = want_host.iter().map(Vec::as_slice).collect();
        if host != want {
            return Err(format!(
                "host {:?}, expected {:?}",
                shown(&host),
                shown(&want)
            ));
        }
        let xfh = values(h, &HeaderName::from_static("x-forwarded-host"));
        let tolerated = want.is_empty() && self.tolerated.contains(&Open::ForwardedHostWithoutHost);
        if !xfh.is_empty() && xfh != want && !tolerated {
            return Err(format!(
                "x-forwarded-host {:?} is not the request's host {:?}",
                shown(&xfh),
                shown(&want)
            ));
        }

        if out.uri.scheme().is_some() || out.uri.authority().is_some() {
            return Err(format!("target {} is not in origin-form", out.uri));
        }
        let absolute = before.uri.scheme().is_some() || before.uri.authority().is_some();
        if absolute {
            let want = before.uri.path_and_query().map_or("/", |pq| pq.as_str());
            let got = out.uri.path_and_query().map_or("", |pq| pq.as_str());
            if got != want {
                return Err(format!(
                    "{} reached the app as {got:?}, expected {want:?}",
                    before.uri
                ));
            }
        } else if out.uri != before.uri {
            return Err(format!(
                "origin-form target {} became {}",
                before.uri, out.uri
            ));
        }
        if out.version != Version::HTTP_11 || out.method != before.method {
            return Err(format!(
                "{} {:?} sent as {} {:?}",
                before.method, before.version, out.method, out.version
            ));
        }
        Ok(())
    }

    fn tolerates_not_text(&self) -> bool {
        self.tolerated.contains(&Open::ConnectionNotText)
    }
}
