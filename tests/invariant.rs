//! The core invariant as a property (proptest): for any sequence of client
//! behaviour (complete, slow, partial, aborted) and app behaviour (answer,
//! reset or close before the response, stall past `app.response_timeout`,
//! die mid-body after the response head), GET or POST, concurrently on
//! separate connections or one after another on a kept-alive one:
//!
//! - every complete request gets a whole HTTP response (any status), or a
//!   truncated one only when response bytes had already gone out (the app
//!   died mid-body after its head); never a close without a response, never
//!   garbage, never silence;
//! - a POST reaches the app at most once, a GET at most twice
//!   (`retry.attempts: 1`), an incomplete request never;
//! - an answer is passed on as it is (`200 ok`), and a failure before the
//!   response head is lifeguard's own 5xx.
//!
//! One proxy and one scripted app serve every case, so state carries over
//! between cases as it does in production (pooled app connections, health,
//! retry budget). 64 cases, each well under a second (the response timeout
//! is 300 ms), after a few fixed ones; no persistence file: a failure
//! prints its shrunk case, which belongs in `fixed_cases()` once understood.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::client::read_response;
use support::raw::{connect, read_for};
use support::synth::TCP_PROBES;
use support::upstream::{read_request, reset, write_then_reset};
use support::{Proxy, RawApp, RawOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// What the client does with its request bytes.
#[derive(Debug, Clone)]
enum Client {
    /// All of it in one write.
    Complete,
    /// All of it, in `pieces` writes `gap_ms` apart.
    Slow { pieces: usize, gap_ms: u64 },
    /// Part of it, then it waits a moment and goes away.
    Partial { cut: Index },
    /// Part of it, then a close (FIN) or a reset.
    Aborted { cut: Index, rst: bool },
}

impl Client {
    fn completes(&self) -> bool {
        matches!(self, Client::Complete | Client::Slow { .. })
    }
}

/// What the app does once it has read the whole request (the path says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum App {
    Answer,
    Reset,
    Close,
    Stall,
    DieMidBody,
}

impl App {
    fn path(self) -> &'static str {
        match self {
            App::Answer => "answer",
            App::Reset => "reset",
            App::Close => "close",
            App::Stall => "stall",
            App::DieMidBody => "midbody",
        }
    }
}

#[derive(Debug, Clone)]
struct Step {
    method: Method,
    /// POST body length (GET has none).
    body: usize,
    client: Client,
    app: App,
}

#[derive(Debug, Clone)]
struct Case {
    steps: Vec<Step>,
    /// One after another on one kept-alive connection (a new one whenever
    /// the last closed), rather than all at once on their own.
    keep_alive: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let method = prop_oneof![Just(Method::Get), Just(Method::Post)];
    // Mostly small bodies (buffered); sometimes over `retry.buffer_limit`
    // (64 KiB), which is streamed to the app.
    let body = prop_oneof![4 => 1usize..2048, 1 => 65_000usize..70_000];
    let client = prop_oneof![
        3 => Just(Client::Complete),
        2 => (2usize..6, 1u64..8).prop_map(|(pieces, gap_ms)| Client::Slow { pieces, gap_ms }),
        1 => any::<Index>().prop_map(|cut| Client::Partial { cut }),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(cut, rst)| Client::Aborted { cut, rst }),
    ];
    let app = prop_oneof![
        Just(App::Answer),
        Just(App::Reset),
        Just(App::Close),
        Just(App::Stall),
        Just(App::DieMidBody),
    ];
    (method, body, client, app).prop_map(|(method, body, client, app)| Step {
        method,
        body,
        client,
        app,
    })
}

fn case() -> impl Strategy<Value = Case> {
    (prop::collection::vec(step(), 1..5), any::<bool>())
        .prop_map(|(steps, keep_alive)| Case { steps, keep_alive })
}

/// Requests read completely, by request id (the last path segment).
type Deliveries = Arc<Mutex<HashMap<u64, usize>>>;

/// The scripted app: for each request read, count it, then do what its path
/// says. Answers keep the connection for the next request.
async fn app(deliveries: Deliveries) -> RawApp {
    RawApp::start(move |mut s: TcpStream| {
        let deliveries = deliveries.clone();
        async move {
            while let Some(req) = read_request(&mut s).await {
                let head = String::from_utf8_lossy(&req).into_owned();
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let mut parts = path.trim_start_matches('/').split('/');
                let what = parts.next().unwrap_or("").to_owned();
                if let Some(id) = parts.next().and_then(|id| id.parse().ok()) {
                    *deliveries.lock().unwrap().entry(id).or_default() += 1;
                }
                match what.as_str() {
                    "reset" => return reset(s),
                    "close" => return,
                    "stall" => {
                        // Until lifeguard gives up on it and closes.
                        let mut buf = [0u8; 1024];
                        let _ =
                            tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
                        return;
                    }
                    "midbody" => {
                        let partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial";
                        return write_then_reset(s, partial, Duration::from_millis(50)).await;
                    }
                    _ => {
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    })
    .await
}

struct World {
    proxy: Proxy,
    deliveries: Deliveries,
    _app: RawApp,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn request_bytes(step: &Step, id: u64) -> Vec<u8> {
    let (method, body) = match step.method {
        Method::Get => ("GET", 0),
        Method::Post => ("POST", step.body),
    };
    let length = if body > 0 {
        format!("Content-Length: {body}\r\n")
    } else {
        String::new()
    };
    let mut bytes = format!(
        "{method} /{}/{id} HTTP/1.1\r\nHost: app.test\r\n{length}\r\n",
        step.app.path()
    )
    .into_bytes();
    bytes.extend(std::iter::repeat_n(b'b', body));
    bytes
}

/// What one step saw, for the property.
#[derive(Debug)]
enum Seen {
    /// The request was never completed.
    Incomplete,
    Outcome(RawOutcome),
}

/// Plays one step on `conn` (or a new connection). Returns what it saw and
/// the connection if it may carry the next request.
async fn play(
    addr: SocketAddr,
    conn: Option<TcpStream>,
    step: &Step,
    id: u64,
) -> (Seen, Option<TcpStream>) {
    let mut s = match conn {
        Some(s) => s,
        None => connect(addr).await,
    };
    let bytes = request_bytes(step, id);
    // Strictly inside the request: at least one byte, never all of them.
    let cut = |i: &Index| 1 + i.index(bytes.len() - 1);
    match &step.client {
        Client::Complete => {
            if s.write_all(&bytes).await.is_err() {
                return (Seen::Outcome(RawOutcome::ClosedWithoutResponse), None);
            }
        }
        Client::Slow { pieces, gap_ms } => {
            for piece in bytes.chunks(bytes.len().div_ceil(*pieces)) {
                if s.write_all(piece).await.is_err() {
                    return (Seen::Outcome(RawOutcome::ClosedWithoutResponse), None);
                }
                tokio::time::sleep(Duration::from_millis(*gap_ms)).await;
            }
        }
        Client::Partial { cut: i } => {
            let _ = s.write_all(&bytes[..cut(i)]).await;
            let _ = read_for(&mut s, Duration::from_millis(150)).await;
            return (Seen::Incomplete, None);
        }
        Client::Aborted { cut: i, rst } => {
            let _ = s.write_all(&bytes[..cut(i)]).await;
            if *rst {
                reset(s);
            } else {
                let _ = s.shutdown().await;
            }
            return (Seen::Incomplete, None);
        }
    }
    let outcome = read_response(&mut s, 5, false).await;
    let reusable = matches!(&outcome, RawOutcome::Response(r)
        if !r.truncated && r.header("connection").is_none_or(|v| !v.eq_ignore_ascii_case("close")));
    (Seen::Outcome(outcome), reusable.then_some(s))
}

/// The property, for one step and what it saw.
fn judge(step: &Step, seen: &Seen, delivered: usize) -> Result<(), String> {
    let limit = match (step.method, step.client.completes()) {
        (_, false) => 0,
        (Method::Post, true) => 1,
        (Method::Get, true) => 2, // retry.attempts: 1
    };
    if delivered > limit {
        return Err(format!(
            "delivered to the app {delivered} times (at most {limit})"
        ));
    }
    let outcome = match seen {
        Seen::Incomplete => return Ok(()),
        Seen::Outcome(o) => o,
    };
    let r = match outcome {
        RawOutcome::Response(r) => r,
        other => return Err(format!("a complete request got {other:?}")),
    };
    if r.truncated {
        // Only where response bytes had already gone out.
        if step.app != App::DieMidBody || r.status != 200 {
            return Err(format!("a truncated response: {r:?}"));
        }
        return Ok(());
    }
    match step.app {
        App::Answer if (r.status, r.body.as_slice()) != (200, b"ok") => {
            Err(format!("the app's answer was not passed on: {r:?}"))
        }
        App::Reset | App::Close | App::Stall | App::DieMidBody if r.status < 500 => {
            Err(format!("a failed app met with {}: {r:?}", r.status))
        }
        _ => Ok(()),
    }
}

async fn run_case(world: &World, case: &Case, tally: &Tally) -> Result<(), String> {
    let addr = world.proxy.addr();
    let ids: Vec<u64> = case
        .steps
        .iter()
        .map(|_| NEXT_ID.fetch_add(1, Ordering::Relaxed))
        .collect();
    let seen: Vec<Seen> = if case.keep_alive {
        let mut conn = None;
        let mut seen = Vec::new();
        for (step, id) in case.steps.iter().zip(&ids) {
            let (s, next) = play(addr, conn.take(), step, *id).await;
            seen.push(s);
            conn = next;
        }
        seen
    } else {
        let tasks: Vec<_> = case
            .steps
            .iter()
            .cloned()
            .zip(ids.clone())
            .map(|(step, id)| tokio::spawn(async move { play(addr, None, &step, id).await.0 }))
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.map_err(|e| format!("client task: {e}"))?);
        }
        seen
    };
    for (i, ((step, id), seen)) in case.steps.iter().zip(&ids).zip(&seen).enumerate() {
        let delivered = world
            .deliveries
            .lock()
            .unwrap()
            .get(id)
            .copied()
            .unwrap_or(0);
        let got = match seen {
            Seen::Incomplete => "incomplete".to_owned(),
            Seen::Outcome(RawOutcome::Response(r)) if r.truncated => {
                format!("{} truncated", r.status)
            }
            Seen::Outcome(RawOutcome::Response(r)) => r.status.to_string(),
            Seen::Outcome(other) => format!("{other:?}"),
        };
        let client = match step.client {
            Client::Complete => "complete",
            Client::Slow { .. } => "slow",
            Client::Partial { .. } => "partial",
            Client::Aborted { .. } => "aborted",
        };
        let key = format!("{:?} {client} {:?} -> {got}", step.method, step.app);
        *tally.lock().unwrap().entry(key).or_default() += 1;
        judge(step, seen, delivered).map_err(|e| format!("step {i} {step:?}: {e}"))?;
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn world() -> World {
    let deliveries = Deliveries::default();
    let app = app(deliveries.clone()).await;
    let proxy = Proxy::with_endpoints(
        &[app.addr],
        &format!(
            "  response_timeout: 300ms\n{TCP_PROBES}unavailable:\n  hold: 0s\nretry:\n  attempts: 1\n  budget_percent: 100\n"
        ),
    )
    .await;
    proxy.endpoint_up(0, "the scripted app is up").await;
    World {
        proxy,
        deliveries,
        _app: app,
    }
}

/// The fixed cases first (each app failure after a slow upload, and a
/// kept-alive connection through every app behaviour), then 64 drawn ones.
#[test]
fn complete_requests_always_get_a_response() {
    // lifeguard logs every app failure (a crash report at error level):
    // hundreds of lines here. LIFEGUARD_TEST_LOG=warn shows them. Set before
    // any thread of this binary (its only test) reads the environment.
    if std::env::var_os("LIFEGUARD_TEST_LOG").is_none() {
        std::env::set_var("LIFEGUARD_TEST_LOG", "off");
    }
    let rt = runtime();
    let world = rt.block_on(world());
    let tally = Tally::default();

    for case in &fixed_cases() {
        if let Err(e) = rt.block_on(run_case(&world, case, &tally)) {
            panic!("{e}\n{case:?}");
        }
    }

    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        rt.block_on(run_case(&world, &case, &tally))
            .map_err(TestCaseError::fail)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    // What the cases covered (shown with --nocapture).
    let mut seen: Vec<_> = tally.lock().unwrap().clone().into_iter().collect();
    seen.sort();
    for (what, n) in seen {
        println!("{n:5}  {what}");
    }
}

/// Steps played, by method, client, app and what came back.
type Tally = Mutex<HashMap<String, usize>>;

fn fixed_cases() -> Vec<Case> {
    let every_app = [
        App::Answer,
        App::Reset,
        App::Close,
        App::Stall,
        App::DieMidBody,
    ];
    let mut cases = Vec::new();
    for method in [Method::Get, Method::Post] {
        let slow = every_app.map(|app| Step {
            method,
            body: 300,
            client: Client::Slow {
                pieces: 3,
                gap_ms: 5,
            },
            app,
        });
        cases.push(Case {
            steps: slow.to_vec(),
            keep_alive: false,
        });
        let mut kept = Vec::new();
        for app in every_app {
            // An answer first, so the failure comes on a reused connection.
            kept.push(Step {
                method,
                body: 10,
                client: Client::Complete,
                app: App::Answer,
            });
            kept.push(Step {
                method,
                body: 10,
                client: Client::Complete,
                app,
            });
        }
        cases.push(Case {
            steps: kept,
            keep_alive: true,
        });
    }
    cases
}
