//! Running a rendered `preStop` handler the way the kubelet would, against a
//! given admin address on 127.0.0.1, and a fake lifeguard admin port that
//! records what a hook (or the maintenance Job's script) calls.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_yaml::Value;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// One request received by [`FakeAdmin`].
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub authorization: Option<String>,
}

/// Answers like lifeguard's admin port would for a drain that is already
/// over: `/admin/drain` 202, `/admin/drained` 200, `/admin/maintenance`
/// 200, anything else 404. Records every request.
pub(crate) struct FakeAdmin {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeAdmin {
    pub(crate) async fn start() -> FakeAdmin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let recorded = calls.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let call = Call {
                            method: req.method().to_string(),
                            target: req
                                .uri()
                                .path_and_query()
                                .map(|p| p.to_string())
                                .unwrap_or_default(),
                            authorization: req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned),
                        };
                        let status = match req.uri().path() {
                            "/admin/drain" => 202,
                            "/admin/drained" | "/admin/maintenance" => 200,
                            _ => 404,
                        };
                        recorded.lock().unwrap().push(call);
                        async move {
                            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                                b"{\"drained\":true}\n",
                            )));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeAdmin { addr, calls, task }
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for FakeAdmin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What running a hook did.
#[derive(Debug)]
pub(crate) struct HookRun {
    pub took: Duration,
    /// The exec hook exited 0 / the httpGet hook got a 2xx.
    pub ok: bool,
    /// Exit status of an exec hook, or the HTTP status of an httpGet hook.
    pub result: String,
}

/// Runs a `preStop` handler (`exec` or `httpGet`) as the kubelet would, with
/// lifeguard's admin port `admin_port` rewritten to `target` (a 127.0.0.1
/// address). Gives up after `limit`.
pub(crate) async fn run_handler(
    handler: &Value,
    admin_port: u16,
    target: SocketAddr,
    limit: Duration,
) -> HookRun {
    assert!(target.ip().is_loopback(), "hooks only ever target loopback");
    let started = Instant::now();
    if let Some(command) = handler["exec"]["command"].as_sequence() {
        let from = format!("127.0.0.1:{admin_port}");
        let to = target.to_string();
        let argv: Vec<String> = command
            .iter()
            .map(|a| {
                a.as_str()
                    .expect("exec args are strings")
                    .replace(&from, &to)
            })
            .collect();
        assert!(
            argv.iter().any(|a| a.contains(&to)),
            "the exec hook never calls lifeguard's admin port {from}: {argv:?}"
        );
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run hook {argv:?}: {e}"));
        let (ok, result) = match tokio::time::timeout(limit, child.wait()).await {
            Ok(status) => {
                let status = status.unwrap();
                (status.success(), status.to_string())
            }
            Err(_) => (false, format!("still running after {limit:?}")),
        };
        return HookRun {
            took: started.elapsed(),
            ok,
            result,
        };
    }
    if handler["httpGet"].is_mapping() {
        let get = &handler["httpGet"];
        let port = get["port"].as_u64().expect("httpGet hook port is a number");
        assert_eq!(
            port,
            u64::from(admin_port),
            "httpGet hook does not call lifeguard's admin port"
        );
        let path = get["path"].as_str().expect("httpGet path");
        let (ok, result) = match tokio::time::timeout(limit, http_get(target, path)).await {
            Ok(Ok(status)) => ((200..300).contains(&status), status.to_string()),
            Ok(Err(e)) => (false, format!("error: {e}")),
            Err(_) => (false, format!("no answer within {limit:?}")),
        };
        return HookRun {
            took: started.elapsed(),
            ok,
            result,
        };
    }
    panic!("unsupported preStop handler: {handler:?}");
}

/// A GET on a fresh connection; the status code.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let stream = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", addr.to_string())
        .header("connection", "close")
        .body(Full::new(Bytes::new()))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok(status)
}
