//! Test apps on port 0: `TestUpstream` (a well-behaved hyper app with a
//! handler), `RawApp` (a raw TCP peer running the test's code for each
//! connection) and `ScriptedUpstream` (a raw TCP peer that reads a request
//! and then resets, closes, stalls, sends garbage or dies mid-body).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub fn full(data: impl Into<Bytes>) -> TestBody {
    Full::new(data.into())
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// An app's `101 Switching Protocols` answer to [`crate::client::WEBSOCKET_UPGRADE`]
/// (the accept key is the one RFC 6455 derives from that request's key).
pub fn websocket_accepted() -> Response<TestBody> {
    Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        .body(full(""))
        .unwrap()
}

/// A port nothing listens on (bound, then released): connects are refused.
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A hyper HTTP/1.1 app. Dropping it stops it and closes its connections.
#[derive(Debug)]
pub struct TestUpstream {
    pub addr: SocketAddr,
    /// Requests received (counted when the handler is called).
    pub hits: Arc<AtomicUsize>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl TestUpstream {
    pub async fn start<F, Fut>(handler: F) -> TestUpstream
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        Self::start_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), handler).await
    }

    /// Starts on a given listener (to restart an app on the same port).
    pub async fn start_on<F, Fut>(listener: TcpListener, handler: F) -> TestUpstream
    where
        F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let (h, t) = (hits.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let handler = handler.clone();
                let h = h.clone();
                let svc = service_fn(move |req| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                t.lock().unwrap().spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestUpstream { addr, hits, tasks }
    }

    /// Answers every request with its method, path, body length and headers
    /// as JSON: `{"method":..,"path":..,"body_len":..,"headers":{..}}`.
    pub async fn echo() -> TestUpstream {
        TestUpstream::start(|req: Request<Incoming>| async move {
            let method = req.method().to_string();
            let path = req.uri().to_string();
            let version = format!("{:?}", req.version());
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_str().unwrap_or("").to_owned())))
                .collect();
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let v = serde_json::json!({"method": method, "path": path, "version": version, "body_len": body.len(), "headers": headers});
            Response::builder().header("content-type", "application/json").body(full(v.to_string())).unwrap()
        })
        .await
    }

    /// Answers `/slow/<ms>` after `<ms>` milliseconds and anything else
    /// (including lifeguard's `/health` probes) at once, with `done <path>`.
    pub async fn slow() -> TestUpstream {
        TestUpstream::start(|req: Request<Incoming>| async move {
            let path = req.uri().path().to_owned();
            if let Some(ms) = path
                .strip_prefix("/slow/")
                .and_then(|m| m.parse::<u64>().ok())
            {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Response::new(full(format!("done {path}")))
        })
        .await
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        if let Ok(mut t) = self.tasks.lock() {
            t.abort_all();
        }
    }
}

/// What a scripted peer does after reading a complete request.
#[derive(Debug, Clone)]
pub enum Script {
    /// RST (SO_LINGER 0) with no response byte: a crashed process.
    Reset,
    /// FIN with no response byte.
    Close,
    /// Never answers (keeps the socket open).
    Stall,
    /// Writes these bytes, then closes.
    Raw(&'static [u8]),
    /// Writes these bytes (e.g. a head and part of the body), waits a moment,
    /// then resets: death after response headers.
    RawThenReset(&'static [u8]),
}

/// A raw-TCP app on port 0 that hands every connection it accepts to a
/// function of the test's. Dropping it stops it and closes its connections.
#[derive(Debug)]
pub struct RawApp {
    pub addr: SocketAddr,
    listener: Arc<TcpListener>,
    accept: tokio::task::JoinHandle<()>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl RawApp {
    /// Accepts on a new port-0 listener, running `serve` for each connection.
    pub async fn start<F, Fut>(serve: F) -> RawApp
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let (l, c) = (listener.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                c.lock().unwrap().spawn(serve(s));
            }
        });
        RawApp {
            addr,
            listener,
            accept,
            conns,
        }
    }

    /// As [`RawApp::start`], with a counter shared by every connection:
    /// `serve` counts what the app's test wants counted (requests, probes,
    /// crashes).
    pub async fn counting<F, Fut>(serve: F) -> (RawApp, Arc<AtomicUsize>)
    where
        F: Fn(TcpStream, Arc<AtomicUsize>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let count = Arc::new(AtomicUsize::new(0));
        let c = count.clone();
        let app = RawApp::start(move |s| serve(s, c.clone())).await;
        (app, count)
    }

    /// Stops listening right now, as a dead process does (Linux takes a
    /// listening socket out of LISTEN on shutdown): a connect that follows
    /// finds the port refusing, not queued in the backlog of a listener
    /// whose task is still being aborted. Connections already accepted
    /// stay as they are.
    pub fn stop_listening(&self) {
        let _ = socket2::SockRef::from(&*self.listener).shutdown(std::net::Shutdown::Both);
        self.accept.abort();
    }

    /// Stops listening and closes every connection: connects are refused.
    pub async fn stop(&mut self) {
        self.stop_listening();
        let _ = (&mut self.accept).await;
        let mut set = std::mem::take(&mut *self.conns.lock().unwrap());
        set.shutdown().await;
    }
}

impl Drop for RawApp {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(mut c) = self.conns.lock() {
            c.abort_all();
        }
    }
}

/// A raw-TCP app that follows a script for every request it reads.
#[derive(Debug)]
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    /// Complete requests read.
    pub requests: Arc<AtomicUsize>,
    _app: RawApp,
}

impl ScriptedUpstream {
    pub async fn start(script: Script) -> ScriptedUpstream {
        let (app, requests) = RawApp::counting(move |mut s, requests| {
            let script = script.clone();
            async move {
                if read_request(&mut s).await.is_none() {
                    return;
                }
                requests.fetch_add(1, Ordering::SeqCst);
                act(s, script).await;
            }
        })
        .await;
        ScriptedUpstream {
            addr: app.addr,
            requests,
            _app: app,
        }
    }

    /// Two apps following the same script.
    pub async fn pair(script: Script) -> (ScriptedUpstream, ScriptedUpstream) {
        let a = ScriptedUpstream::start(script.clone()).await;
        (a, ScriptedUpstream::start(script).await)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn act(mut s: TcpStream, script: Script) {
    match script {
        Script::Reset => reset(s),
        Script::Close => drop(s),
        Script::Stall => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Script::Raw(bytes) => {
            let _ = s.write_all(bytes).await;
            let _ = s.flush().await;
        }
        Script::RawThenReset(bytes) => write_then_reset(s, bytes, Duration::from_millis(100)).await,
    }
}

/// Writes `bytes` (a response head and part of its body, say), waits
/// `pause`, then resets: death after response headers.
pub async fn write_then_reset(mut s: TcpStream, bytes: &[u8], pause: Duration) {
    let _ = s.write_all(bytes).await;
    let _ = s.flush().await;
    tokio::time::sleep(pause).await;
    reset(s);
}

/// Closes with RST, as the kernel does for a killed process with unread data.
pub fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Reads one request (head, and a Content-Length or chunked body).
pub async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &buf[head_end..];
        let done = match len {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => true,
        };
        if done {
            return Some(buf);
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
