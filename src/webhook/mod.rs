//! `lifeguard webhook`: a mutating admission webhook that injects lifeguard
//! into Pods as they are created, with the injection `lifeguard inject`
//! runs (`inject::inject`), answered as a JSON Patch.
//!
//! - `POST /inject`: Pods annotated `lifeguard.io/inject: enabled` (the
//!   chart's webhook entry for every namespace but its own);
//! - `POST /inject-namespace`: every Pod (unless annotated `disabled`); the
//!   chart sends only Pods of namespaces labelled `lifeguard.io/inject:
//!   enabled` here;
//! - `GET /healthz`: the Deployment's probes.
//!
//! HTTPS only (the API server calls webhooks over TLS), HTTP/2 or HTTP/1.1
//! by ALPN, with the proxy's acceptor (`server::tls`) and certificate
//! resolver; the files are polled and a new valid pair is served from the
//! next handshake on (`control::certs::rotate`, the proxy's rotation).
//! Every review is answered `allowed: true`: a Pod the webhook cannot
//! inject is created without lifeguard, with a log line and a warning.
//! On SIGTERM the webhook keeps answering for `shutdown_delay` (while the
//! API server's endpoints forget it), then exits.

mod patch;
pub mod review;

use crate::control::certs::{rotate, Rotation};
use crate::inject::{Mode, Options};
use crate::runtime::CertResolver;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use review::{Outcome, Reviewed};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

/// Largest AdmissionReview read (a Pod is at most ~1.5 MiB in etcd; the
/// review may carry it twice).
const MAX_BODY: usize = 4 * 1024 * 1024;
/// Connections served at once; more are closed at accept.
const MAX_CONNECTIONS: usize = 512;
/// A TLS handshake or a request head must arrive within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How the webhook runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// How often the certificate files are checked for a rotation.
    pub cert_poll: Duration,
    /// How long requests are still answered after SIGTERM.
    pub shutdown_delay: Duration,
    /// The injection (`all` is set per path).
    pub inject: Options,
}

/// The options of each path.
#[derive(Debug)]
struct Injection {
    annotated: Options,
    namespace: Options,
}

/// Runs the webhook until SIGTERM or SIGINT (plus `shutdown_delay`).
/// `Err` when it cannot start (certificate, listener).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let (cert, key) = (settings.cert_file.clone(), settings.key_file.clone());
    let loaded = tokio::task::spawn_blocking(move || crate::config::certs::load(&cert, &key))
        .await?
        .map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
    let resolver = Arc::new(CertResolver::new(Arc::new(loaded.key), loaded.files_sha256));
    let tls = crate::server::tls::acceptor(resolver.clone())?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
    let local = listener.local_addr()?;
    let injection = Arc::new(Injection {
        annotated: Options {
            all: false,
            ..settings.inject.clone()
        },
        namespace: Options {
            all: true,
            ..settings.inject.clone()
        },
    });
    tracing::info!(
        listen = %local,
        cert_file = %settings.cert_file.display(),
        mode = match settings.inject.mode {
            Mode::Classic => "classic",
            Mode::Native => "native",
        },
        image = %settings.inject.image,
        "lifeguard webhook started"
    );
    let rotation = tokio::spawn(watch_certificate(resolver, settings.clone()));
    tokio::select! {
        () = accept_loop(listener, tls, injection) => {}
        () = stop_signal(settings.shutdown_delay) => {}
    }
    rotation.abort();
    tracing::info!("lifeguard webhook stopped");
    Ok(())
}

/// Returns `delay` after the first SIGTERM or SIGINT.
async fn stop_signal(delay: Duration) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the webhook with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        delay_ms = delay.as_millis() as u64,
        "stopping: still answering reviews for the delay"
    );
    tokio::time::sleep(delay).await;
}

/// Polls the certificate files; a valid new pair is served from the next
/// handshake on, a bad one is logged once and the old pair kept.
async fn watch_certificate(resolver: Arc<CertResolver>, settings: Settings) {
    let mut bad = None;
    loop {
        tokio::time::sleep(settings.cert_poll).await;
        let (cert, key) = (settings.cert_file.clone(), settings.key_file.clone());
        match rotate(&resolver, cert, key, &mut bad).await {
            Rotation::Unchanged => {}
            Rotation::Reloaded { sha256 } => {
                tracing::info!(sha256 = %sha256, "webhook certificate reloaded");
            }
            Rotation::Rejected(error) => {
                tracing::error!(error = %error, "new webhook certificate rejected; the old one is still served");
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, tls: TlsAcceptor, injection: Arc<Injection>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and the like: do not spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(peer = %peer, "too many connections; closed at accept");
            continue;
        };
        let (tls, injection) = (tls.clone(), injection.clone());
        tokio::spawn(async move {
            serve_connection(stream, peer, tls, injection).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: TlsAcceptor,
    injection: Arc<Injection>,
) {
    let _ = stream.set_nodelay(true);
    let stream = match tokio::time::timeout(HEAD_TIMEOUT, tls.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake not finished in time; closing");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let svc = service_fn(move |req| route(injection.clone(), req));
    let io = TokioIo::new(stream);
    let result = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .serve_connection(io, svc)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .serve_connection(io, svc)
            .await
    };
    if let Err(e) = result {
        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
    }
}

async fn route(
    injection: Arc<Injection>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let resp = match (req.uri().path(), &method) {
        ("/healthz", &Method::GET | &Method::HEAD) => text(StatusCode::OK, "ok\n"),
        ("/inject", &Method::POST) => admit(&injection.annotated, req).await,
        ("/inject-namespace", &Method::POST) => admit(&injection.namespace, req).await,
        ("/healthz" | "/inject" | "/inject-namespace", _) => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

/// Reads one AdmissionReview and answers it (400 when it is none).
async fn admit(opts: &Options, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let too_large = e.is::<http_body_util::LengthLimitError>();
            tracing::warn!(path = %path, error = %e, "admission review not read");
            return if too_large {
                text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the AdmissionReview is larger than 4 MiB\n",
                )
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read\n",
                )
            };
        }
    };
    match review::review(&body, opts) {
        Ok(r) => {
            log(&path, &r);
            let bytes = serde_json::to_vec(&r.answer).unwrap_or_default();
            let mut resp = Response::new(Full::new(Bytes::from(bytes)));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => {
            tracing::warn!(path = %path, error = %e, "malformed admission review; answered 400");
            text(StatusCode::BAD_REQUEST, &format!("{e}\n"))
        }
    }
}

/// One line per review; an error line when a Pod that asked for lifeguard
/// is created without it.
fn log(path: &str, r: &Reviewed) {
    let warnings = r.warnings.join("; ");
    match r.outcome {
        Outcome::Failed => tracing::error!(
            path,
            uid = %r.uid,
            object = %r.object,
            outcome = r.outcome.as_str(),
            error = r.error.as_deref().unwrap_or_default(),
            "lifeguard not injected: the webhook failed; the pod is admitted unchanged"
        ),
        Outcome::Skipped => tracing::warn!(
            path,
            uid = %r.uid,
            object = %r.object,
            outcome = r.outcome.as_str(),
            warnings = %warnings,
            "lifeguard not injected; the pod is admitted unchanged"
        ),
        _ => tracing::info!(
            path,
            uid = %r.uid,
            object = %r.object,
            outcome = r.outcome.as_str(),
            warnings = %warnings,
            "admission review"
        ),
    }
}

fn text(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
