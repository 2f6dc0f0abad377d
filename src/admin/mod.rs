//! The admin port. Read-only endpoints (`/livez`, `/readyz`, `/metrics`,
//! `/status`, `/admin/drained`) are open: kubelet and Prometheus reach them
//! from the node. Everything else under `/admin/` changes state or exposes
//! request details, so it is allowed from loopback (a `kubectl exec`, another
//! container's preStop `exec`, `lifeguard drain`) or with the bearer token
//! read from `admin.token_file`. That includes `/admin/reload` and
//! `/admin/maintenance`.
//!
//! The open endpoints are reachable by anyone who reaches the port, so what
//! they may hold is capped: at most [`MAX_DRAINED_WAITERS`] `/admin/drained`
//! long-polls wait at once (beyond, the answer is the current state, at
//! once), and at most 256 admin connections are open (a quarter of the
//! descriptor limit when that is smaller; beyond, new ones are closed at
//! accept), so the admin port can never take the descriptors the proxy
//! serves with.
mod status;

use crate::metrics::{Listener, ShedReason};
use crate::runtime::Shared;
use crate::server::listener::{admin_connection_cap, fd_budget, AcceptErrors};
use crate::shutdown::Phase;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// Longest `/admin/drained?wait=` honoured.
const MAX_WAIT: Duration = Duration::from_secs(600);

/// `/admin/drained?wait=` callers waiting at once; more are answered at once.
/// A pod has a handful (preStop hooks); this leaves room for them many
/// times over.
pub const MAX_DRAINED_WAITERS: usize = 32;

/// Serves the admin port until the process stops.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let fds = fd_budget();
    let slots = Arc::new(Semaphore::new(admin_connection_cap(fds.limit())));
    let mut errors = AcceptErrors::new(Listener::Admin);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                errors.failed(&listener, e, &shared.metrics).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            errors.shed(ShedReason::ConnectionLimit, &shared.metrics);
            continue;
        };
        // Half the reserve: kubelet's probes still get in when client
        // connections are being shed, yet the last descriptors stay ours.
        if !fds.admits(&stream, fds.reserve() / 2) {
            errors.shed(ShedReason::FdReserve, &shared.metrics);
            continue;
        }
        errors.accepted();
        let shared = shared.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, shared).await;
            drop(permit);
        });
    }
}

/// Serves one admin connection from `peer` (whose address decides access to
/// the protected endpoints).
pub async fn serve_connection<I>(io: I, peer: SocketAddr, shared: Arc<Shared>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| route(shared.clone(), peer, req));
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let _ = b.serve_connection(TokioIo::new(io), svc).await;
}

async fn route(
    shared: Arc<Shared>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let resp = match req.uri().path() {
        "/livez" if get => text(StatusCode::OK, "ok\n"),
        "/readyz" if get => readyz(&shared),
        "/metrics" if get => {
            let mut r = Response::new(Full::new(Bytes::from(shared.metrics.render())));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        "/status" if get => json(StatusCode::OK, &status::build(&shared)),
        "/admin/drained" if get => drained(&shared, req.uri().query()).await,
        // GET too: a Kubernetes `httpGet` preStop hook can only GET.
        "/admin/drain" if get || req.method() == Method::POST => {
            match authorize(&shared, peer, &req) {
                Err(denied) => denied.response(),
                Ok(()) => {
                    let started = shared.request_drain("admin");
                    json(
                        StatusCode::ACCEPTED,
                        &serde_json::json!({ "drain_started": started, "phase": shared.phase() }),
                    )
                }
            }
        }
        "/admin/inflight" if get => match authorize(&shared, peer, &req) {
            Err(denied) => denied.response(),
            Ok(()) => json(StatusCode::OK, &shared.inflight.snapshot()),
        },
        "/admin/reload" if req.method() == Method::POST => match authorize(&shared, peer, &req) {
            Err(denied) => denied.response(),
            Ok(()) => reload(&shared).await,
        },
        "/admin/maintenance" if req.method() == Method::POST => {
            match authorize(&shared, peer, &req) {
                Err(denied) => denied.response(),
                Ok(()) => maintenance(&shared, req.uri().query()),
            }
        }
        "/livez" | "/readyz" | "/metrics" | "/status" | "/admin/drained" | "/admin/drain"
        | "/admin/inflight" | "/admin/reload" | "/admin/maintenance" => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

/// `POST /admin/reload`: reloads the config file now and answers with the
/// outcome (200 applied or unchanged, 422 rejected, 500 unreadable).
async fn reload(shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    use crate::control::reload::reload_now;
    use crate::runtime::{ReloadResult, Trigger};
    let outcome = reload_now(shared, Trigger::Admin).await;
    let status = match outcome.result {
        ReloadResult::Success | ReloadResult::Unchanged => StatusCode::OK,
        ReloadResult::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ReloadResult::Error => StatusCode::INTERNAL_SERVER_ERROR,
    };
    json(status, &outcome)
}

/// `POST /admin/maintenance?state=on|off`: sets the admin switch only; the
/// answer says whether maintenance is still on, and by which switches.
fn maintenance(shared: &Shared, query: Option<&str>) -> Response<Full<Bytes>> {
    use crate::runtime::Source;
    let state = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("state="));
    let on = match state {
        Some("on") => true,
        Some("off") => false,
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "state: expected ?state=on or ?state=off\n",
            )
        }
    };
    shared.maintenance.set(Source::Admin, on, &shared.metrics);
    json(
        StatusCode::OK,
        &serde_json::json!({
            "maintenance": shared.maintenance.is_on(),
            "sources": shared.maintenance.sources(),
            "admin": on,
        }),
    )
}

fn readyz(shared: &Shared) -> Response<Full<Bytes>> {
    if shared.is_ready() {
        return text(StatusCode::OK, "ready\n");
    }
    let why = match shared.phase() {
        Phase::Running if shared.maintenance.is_on() => {
            "maintenance (maintenance.ready is false)".to_owned()
        }
        Phase::Running => format!(
            "no app endpoint is up ({})",
            crate::upstream::why_none_up(&shared.snapshot.load().endpoints, true)
        ),
        other => other.as_str().to_owned(),
    };
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("not ready: {why}\n"),
    )
}

/// `GET /admin/drained?wait=30s`: answers once lifeguard has drained (200),
/// or when the wait runs out first (503). The process stays up until such
/// waiters are answered. With `MAX_DRAINED_WAITERS` waiting already, the
/// answer is the current state, at once (`"waited": false`).
async fn drained(shared: &Shared, query: Option<&str>) -> Response<Full<Bytes>> {
    let wait = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("wait="))
        .map(crate::config::parse_duration);
    let wait = match wait {
        None => Duration::ZERO,
        Some(Ok(d)) => d.min(MAX_WAIT),
        Some(Err(e)) => return text(StatusCode::BAD_REQUEST, &format!("wait: {e}\n")),
    };
    let waiting = shared.drained_waiters.try_hold(MAX_DRAINED_WAITERS);
    let waited = waiting.is_some() || wait.is_zero();
    if waiting.is_some() {
        let mut phase = shared.phase.subscribe();
        let _ = tokio::time::timeout(wait, phase.wait_for(|p| *p == Phase::Stopped)).await;
    } else if !wait.is_zero() {
        shared.metrics.drained_waits_refused.inc();
    }
    let drained = shared.phase() == Phase::Stopped;
    let body = serde_json::json!({
        "drained": drained,
        "phase": shared.phase(),
        "in_flight": shared.inflight.len(),
        "outcome": shared.drain_outcome.get(),
        "waited": waited,
    });
    json(
        if drained {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

/// Loopback, or the bearer token from `admin.token_file`.
fn authorize(shared: &Shared, peer: SocketAddr, req: &Request<Incoming>) -> Result<(), Denied> {
    if is_loopback(peer.ip()) {
        return Ok(());
    }
    let snap = shared.snapshot.load();
    let Some(token) = &snap.config.admin.token else {
        return Err(Denied::Forbidden);
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        // RFC 9110 §11.1: the scheme is case-insensitive.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(g) if token.matches(g.as_bytes()) => Ok(()),
        _ => Err(Denied::Unauthorized),
    }
}

/// Why a request to a protected admin endpoint was refused.
enum Denied {
    /// Not loopback, and no token is configured.
    Forbidden,
    /// Not loopback, and the bearer token is missing or wrong.
    Unauthorized,
}

impl Denied {
    fn response(self) -> Response<Full<Bytes>> {
        match self {
            Denied::Forbidden => text(
                StatusCode::FORBIDDEN,
                "forbidden: only from loopback (no admin.token_file configured)\n",
            ),
            Denied::Unauthorized => {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized: bearer token required\n",
                );
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
        }
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"null".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_peers() {
        assert!(is_loopback("127.0.0.1".parse().unwrap()));
        assert!(is_loopback("::1".parse().unwrap()));
        assert!(is_loopback("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_loopback("10.0.0.1".parse().unwrap()));
    }
}
