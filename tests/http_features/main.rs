//! What lifeguard promises as an HTTP proxy, over real sockets: streaming both
//! ways without buffering (and bounded memory), upgrades, header rules,
//! rejection of malformed requests before they reach the app, body limits,
//! 100-continue, HEAD, trailers, h2c, absolute-form targets, client keep-alive
//! and its timeouts, the app connection pool, and early app answers.

mod absolute_form;
mod early_answers;
mod framing;
mod h2;
mod headers;
mod keep_alive;
mod malformed;
mod pool;
mod streaming;
mod upgrades;

use support::upstream::{full, TestBody};
use support::*;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------
// A test app that tells requests apart from health probes
// ---------------------------------------------------------------------------

/// One request the app handled.
#[derive(Debug, Clone)]
struct Seen {
    /// Which accepted connection it came on (1-based, in accept order).
    conn: usize,
    method: String,
    target: String,
}

/// A hyper HTTP/1.1 app (with upgrades) that records the requests it handles
/// and the connection each came on. Requests for `/health` (lifeguard's own
/// probes, if it sends any) are answered 200 and not recorded, so counts here
/// are client requests only.
struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    async fn start<F, Fut>(handler: F) -> App
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            let mut accepted = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                accepted += 1;
                let conn = accepted;
                let handler = handler.clone();
                let log = log.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let fut = if req.uri().path() == "/health" {
                        None
                    } else {
                        log.lock().unwrap().push(Seen {
                            conn,
                            method: req.method().to_string(),
                            target: req.uri().to_string(),
                        });
                        Some(handler(req))
                    };
                    async move {
                        Ok::<_, Infallible>(match fut {
                            Some(f) => f.await,
                            None => Response::new(full("ok")),
                        })
                    }
                });
                conns.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        App { addr, seen, task }
    }

    /// Answers with what it received, as JSON: method, target, version, body
    /// length and headers (see `TestUpstream::echo`).
    async fn echo() -> App {
        App::start(echo_handler).await
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_handler(req: Request<Incoming>) -> Response<TestBody> {
    let method = req.method().to_string();
    let path = req.uri().to_string();
    let version = format!("{:?}", req.version());
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        // Repeated headers are joined with a newline, so a test sees every copy.
        match headers.get_mut(k.as_str()) {
            Some(serde_json::Value::String(s)) => {
                s.push('\n');
                s.push_str(&v);
            }
            _ => {
                headers.insert(k.to_string(), serde_json::Value::String(v));
            }
        }
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let v = serde_json::json!({
        "method": method,
        "path": path,
        "version": version,
        "body_len": body.as_ref().map_or(0, |b| b.len()),
        "body_ok": body.is_ok(),
        "headers": headers,
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(full(v.to_string()))
        .unwrap()
}

/// An echo app (`App::echo`) and a proxy in front of it, with `extra` config.
async fn echo_proxy(extra: &str) -> (App, Proxy) {
    let app = App::echo().await;
    let proxy = Proxy::with_endpoints(&[app.addr], extra).await;
    (app, proxy)
}

/// Sends `request` as is on a new connection to `proxy` and reads the
/// response, which must come within 5 s.
async fn send(proxy: &Proxy, request: &[u8]) -> RawResponse {
    raw_exchange(proxy.addr(), request, 5).await.response()
}

fn json(r: &RawResponse) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("app JSON expected ({e}): {:?} {}", r.status, r.body_text()))
}

// ---------------------------------------------------------------------------
// Streaming: a pattern that is cheap to produce and to check at any offset
// ---------------------------------------------------------------------------

/// Pattern period: prime, so a lost, repeated or reordered frame (frames are
/// `FRAME` bytes) shifts the data and fails verification.
const PERIOD: usize = 65_521;
const FRAME: usize = 32 * 1024;
/// Bytes sent before a streaming test waits for the other side to see some.
const GATE: u64 = 1 << 20;
/// The size of the large transfers.
const BIG: u64 = 256 << 20;

/// Two periods of pseudo-random bytes, so any `FRAME` at any offset is one slice.
fn pattern() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut v: Vec<u8> = (0..PERIOD)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        v.extend_from_within(..);
        v
    })
}

/// The `len` bytes of the stream at `offset`.
fn pattern_at(offset: u64, len: usize) -> Bytes {
    assert!(len <= PERIOD);
    let s = (offset % PERIOD as u64) as usize;
    Bytes::from_static(&pattern()[s..s + len])
}

/// Whether `data` is what the stream holds at `offset`.
fn pattern_matches(mut offset: u64, mut data: &[u8]) -> bool {
    while !data.is_empty() {
        let s = (offset % PERIOD as u64) as usize;
        let n = data.len().min(PERIOD);
        if data[..n] != pattern()[s..s + n] {
            return false;
        }
        offset += n as u64;
        data = &data[n..];
    }
    true
}

/// Whether `id` has the shape of a request id lifeguard generated.
fn is_generated_id(id: &str) -> bool {
    id.len() == 33
        && id.as_bytes()[16] == b'-'
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 16 || b.is_ascii_hexdigit())
}
