//! Load generator and test upstream for `bench/run.sh` (see `bench/README.md`).
//!
//! ```text
//! loadgen upstream --listen 127.0.0.1:0 [--body-bytes 128]
//!     A hyper HTTP/1.1 app; prints its bound address on stdout. Routes:
//!     /sink (reads and counts the request body, answers {"bytes":N}),
//!     /source?bytes=N (streams N bytes), anything else: a fixed small body.
//! loadgen client --target ADDR --connections C --duration S [--label L] [--proxy-pid PID]
//!     Closed loop: C keep-alive HTTP/1.1 connections, each sending GET / as
//!     soon as its previous response ended, for S seconds. Prints one table row.
//! loadgen upload --target ADDR --bytes N    (POST /sink, chunked, generated on the fly)
//! loadgen download --target ADDR --bytes N  (GET /source?bytes=N)
//! loadgen header load|stream                (the table headers for the rows above)
//! loadgen open --target ADDR --rate R --duration S [--connections C]
//!     Open loop: R requests a second due on a fixed schedule, latency from
//!     when each was due (p50/p90/p99/p99.9 in µs).
//! loadgen hold --target ADDR --connections N [--request] [--seconds S]
//!     Opens N connections (each carrying one GET / with --request), prints
//!     `held N`, keeps them S seconds, closes them, prints `closed N`.
//! ```
//!
//! Only 127.0.0.1 is accepted as a target or listen address.

mod hold;
mod open;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use clap::{Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1 as client_http1;
use hyper::server::conn::http1 as server_http1;
use hyper::service::service_fn;
use hyper::{header, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

const MIB: f64 = 1024.0 * 1024.0;
/// Size of the frames `/source` and `upload` produce.
const CHUNK: usize = 64 * 1024;

/// Connections the upstream accepted and requests it answered (for `/stats`).
static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static ANSWERED: AtomicU64 = AtomicU64::new(0);

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "lifeguard benchmark: load generator and test upstream"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a fast HTTP/1.1 test app.
    Upstream {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        /// Size of the body answered on every route but /sink and /source.
        #[arg(long, default_value_t = 128)]
        body_bytes: usize,
    },
    /// Closed-loop request-rate test; prints one table row.
    Client {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "load")]
        label: String,
        /// A process (lifeguard) whose CPU time is measured over the run.
        #[arg(long)]
        proxy_pid: Option<u32>,
        /// The `loadgen upstream` behind the target: the connections it
        /// accepted during the run are reported (`app conns`).
        #[arg(long)]
        upstream: Option<SocketAddr>,
    },
    /// Upload N bytes (chunked) to /sink; prints one table row.
    Upload {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value = "upload")]
        label: String,
        /// A process (lifeguard) whose memory is reported after the transfer.
        #[arg(long)]
        proxy_pid: Option<u32>,
    },
    /// Download N bytes from /source; prints one table row.
    Download {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value = "download")]
        label: String,
        #[arg(long)]
        proxy_pid: Option<u32>,
    },
    /// Open-loop latency at a fixed request rate; prints one table row.
    Open {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        #[arg(long, default_value_t = 50)]
        connections: usize,
        #[arg(long, default_value = "open loop")]
        label: String,
    },
    /// Hold connections open (idle keep-alive with --request, else never used).
    Hold {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        #[arg(long)]
        request: bool,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// Print the header of a result table.
    Header { kind: Table },
}

#[derive(Clone, Copy, ValueEnum)]
enum Table {
    Load,
    Stream,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match cli.command {
            Command::Upstream { listen, body_bytes } => upstream(listen, body_bytes).await,
            Command::Client {
                target,
                connections,
                duration,
                path,
                label,
                proxy_pid,
                upstream,
            } => {
                let run = Run {
                    target,
                    connections,
                    duration: Duration::from_secs_f64(duration),
                    path,
                    label,
                    proxy_pid,
                    upstream,
                };
                client(run).await
            }
            Command::Upload {
                target,
                bytes,
                label,
                proxy_pid,
            } => upload(target, bytes, &label, proxy_pid).await,
            Command::Download {
                target,
                bytes,
                label,
                proxy_pid,
            } => download(target, bytes, &label, proxy_pid).await,
            Command::Open {
                target,
                rate,
                duration,
                connections,
                label,
            } => open::open(target, rate, duration, connections, &label).await,
            Command::Hold {
                target,
                connections,
                request,
                seconds,
            } => hold::hold(target, connections, request, seconds).await,
            Command::Header { kind } => {
                header(kind);
                Ok(())
            }
        }
    })
}

/// The benchmark never leaves the machine.
fn loopback_only(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.ip() != Ipv4Addr::LOCALHOST {
        bail!("{addr}: only 127.0.0.1 is allowed");
    }
    Ok(addr)
}

// ---------------------------------------------------------------- bodies

/// A response or request body: one buffer, or `remaining` bytes produced on
/// the fly as clones of one shared chunk (no copying, no buffering).
enum Payload {
    Once(Option<Bytes>),
    Repeat {
        chunk: Bytes,
        remaining: u64,
        /// Announce the length (Content-Length) or not (chunked).
        exact: bool,
    },
}

impl Payload {
    fn once(data: impl Into<Bytes>) -> Payload {
        let data = data.into();
        Payload::Once((!data.is_empty()).then_some(data))
    }

    fn repeat(total: u64, exact: bool) -> Payload {
        Payload::Repeat {
            chunk: Bytes::from(vec![0xa5u8; CHUNK]),
            remaining: total,
            exact,
        }
    }
}

impl Body for Payload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let frame = match &mut *self {
            Payload::Once(data) => data.take(),
            Payload::Repeat {
                chunk, remaining, ..
            } => {
                if *remaining == 0 {
                    None
                } else {
                    let n = (*remaining).min(chunk.len() as u64) as usize;
                    *remaining -= n as u64;
                    Some(chunk.slice(..n))
                }
            }
        };
        Poll::Ready(frame.map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Once(data) => data.is_none(),
            Payload::Repeat { remaining, .. } => *remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Once(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |b| b.len() as u64))
            }
            Payload::Repeat {
                remaining, exact, ..
            } => {
                if *exact {
                    SizeHint::with_exact(*remaining)
                } else {
                    SizeHint::default()
                }
            }
        }
    }
}

/// Reads a body to its end, counting its bytes without keeping them.
async fn drain_body(mut body: Incoming) -> Result<u64, hyper::Error> {
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            n += data.len() as u64;
        }
    }
    Ok(n)
}

// ---------------------------------------------------------------- upstream

async fn upstream(listen: SocketAddr, body_bytes: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind(loopback_only(listen)?)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // run.sh reads this line to find the port.
    println!("{}", listener.local_addr()?);
    let small = Bytes::from(vec![b'x'; body_bytes]);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("loadgen upstream: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        ACCEPTED.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let small = small.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| route(req, small.clone()));
            let _ = server_http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn route(req: Request<Incoming>, small: Bytes) -> Result<Response<Payload>, Infallible> {
    ANSWERED.fetch_add(1, Ordering::Relaxed);
    let resp = match req.uri().path() {
        "/stats" => Response::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(Payload::once(
                serde_json::json!({
                    "connections": ACCEPTED.load(Ordering::Relaxed),
                    "requests": ANSWERED.load(Ordering::Relaxed),
                })
                .to_string(),
            )),
        "/sink" => match drain_body(req.into_body()).await {
            Ok(n) => Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Payload::once(format!("{{\"bytes\":{n}}}"))),
            Err(e) => Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Payload::once(format!("body error: {e}\n"))),
        },
        "/source" => {
            let n = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("bytes="))
                .and_then(|v| v.parse::<u64>().ok());
            match n {
                Some(n) => Response::builder()
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(Payload::repeat(n, true)),
                None => Response::builder()
                    .status(StatusCode::BAD_REQUEST)
                    .body(Payload::once("expected ?bytes=N\n")),
            }
        }
        _ => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain")
            .body(Payload::Once(Some(small))),
    };
    Ok(resp.unwrap_or_else(|_| Response::new(Payload::once("internal error\n"))))
}

// ---------------------------------------------------------------- client side

async fn connect<B>(target: SocketAddr) -> anyhow::Result<client_http1::SendRequest<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(loopback_only(target)?)
        .await
        .context("connect")?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = client_http1::handshake(TokioIo::new(stream))
        .await
        .context("handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What one connection of the closed loop saw.
#[derive(Default)]
struct Stats {
    /// Latency of every completed response (request sent to last body byte), in ns.
    latencies: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
    /// Status and `Proxy-Status` of the first non-2xx response.
    first_non_2xx: Option<String>,
}

impl Stats {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        if self.first_non_2xx.is_none() {
            self.first_non_2xx = other.first_non_2xx;
        }
    }
}

async fn connection_loop(target: SocketAddr, path: String, deadline: Instant) -> Stats {
    let mut stats = Stats {
        latencies: Vec::with_capacity(1 << 16),
        ..Stats::default()
    };
    let host = target.to_string();
    let mut sender: Option<client_http1::SendRequest<Empty<Bytes>>> = None;
    while Instant::now() < deadline {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(target).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    stats.error(format!("{e:#}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let req = Request::get(path.as_str())
            .header(header::HOST, host.as_str())
            .body(Empty::new())
            .expect("valid request");
        let started = Instant::now();
        let result = async {
            s.ready().await?;
            let resp = s.send_request(req).await?;
            let status = resp.status();
            let non_2xx = (!status.is_success()).then(|| {
                let proxy_status = resp.headers().get("proxy-status");
                format!(
                    "{status}, Proxy-Status: {}",
                    proxy_status.map_or("-".into(), |v| String::from_utf8_lossy(v.as_bytes()))
                )
            });
            let close = resp
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            drain_body(resp.into_body()).await?;
            Ok::<_, hyper::Error>((status, close, non_2xx))
        }
        .await;
        match result {
            Ok((status, close, non_2xx)) => {
                if stats.first_non_2xx.is_none() {
                    stats.first_non_2xx = non_2xx;
                }
                stats.latencies.push(started.elapsed().as_nanos() as u64);
                *stats.statuses.entry(status.as_u16()).or_default() += 1;
                if close {
                    sender = None;
                }
            }
            Err(e) => {
                stats.error(e);
                sender = None;
            }
        }
    }
    stats
}

/// One request-rate pass.
struct Run {
    target: SocketAddr,
    connections: usize,
    duration: Duration,
    path: String,
    label: String,
    proxy_pid: Option<u32>,
    upstream: Option<SocketAddr>,
}

/// Connections accepted so far by a `loadgen upstream` (asking opens one more).
async fn upstream_connections(upstream: SocketAddr) -> anyhow::Result<u64> {
    let mut sender = connect::<Empty<Bytes>>(upstream).await?;
    let req = Request::get("/stats")
        .header(header::HOST, upstream.to_string())
        .body(Empty::new())?;
    let body = sender
        .send_request(req)
        .await?
        .into_body()
        .collect()
        .await?
        .to_bytes();
    serde_json::from_slice::<serde_json::Value>(&body)?
        .get("connections")
        .and_then(serde_json::Value::as_u64)
        .context("bad /stats answer")
}

async fn client(run: Run) -> anyhow::Result<()> {
    let Run {
        target,
        connections,
        duration,
        path,
        label,
        proxy_pid,
        upstream,
    } = run;
    let target = loopback_only(target)?;
    let accepted_before = match upstream {
        Some(u) => Some(upstream_connections(u).await?),
        None => None,
    };
    let cpu_before = proxy_pid.map(cpu_seconds).transpose()?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..connections.max(1) {
        tasks.spawn(connection_loop(target, path.clone(), deadline));
    }
    let mut total = Stats::default();
    while let Some(stats) = tasks.join_next().await {
        total.merge(stats?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = match (proxy_pid, cpu_before) {
        (Some(pid), Some(before)) => Some(cpu_seconds(pid)? - before),
        _ => None,
    };
    let app_conns = match (upstream, accepted_before) {
        // Minus the connection this second question opens.
        (Some(u), Some(before)) => (upstream_connections(u).await? - before - 1).to_string(),
        _ => "-".to_owned(),
    };

    let lat = &mut total.latencies;
    lat.sort_unstable();
    let count = lat.len();
    let pct = |q: f64| -> String {
        if count == 0 {
            return "-".to_owned();
        }
        let i = ((q * count as f64).ceil() as usize).clamp(1, count) - 1;
        ms(lat[i])
    };
    let non_2xx: u64 = total
        .statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    let (cpu_per_k, cores) = match cpu {
        Some(c) if count > 0 => (
            format!("{:.1}ms", c * 1000.0 / (count as f64 / 1000.0)),
            format!("{:.2}", c / elapsed),
        ),
        _ => ("-".to_owned(), "-".to_owned()),
    };
    println!(
        "{label:<30} {connections:>5} {count:>9} {rps:>9.0} {p50:>8} {p90:>8} {p99:>8} {max:>8} {non_2xx:>7} {errors:>6} {app_conns:>9} {cpu_per_k:>9} {cores:>6}",
        rps = count as f64 / elapsed,
        p50 = pct(0.50),
        p90 = pct(0.90),
        p99 = pct(0.99),
        max = lat.last().map_or("-".to_owned(), |&v| ms(v)),
        errors = total.errors,
    );
    if non_2xx > 0 {
        let by_status: Vec<String> = total
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        println!("    statuses: {}", by_status.join(", "));
        if let Some(first) = &total.first_non_2xx {
            println!("    first non-2xx: {first}");
        }
    }
    if let Some(e) = &total.first_error {
        println!("    first error: {e}");
    }
    Ok(())
}

async fn upload(
    target: SocketAddr,
    bytes: u64,
    label: &str,
    proxy_pid: Option<u32>,
) -> anyhow::Result<()> {
    let target = loopback_only(target)?;
    let mut sender = connect::<Payload>(target).await?;
    let req = Request::post("/sink")
        .header(header::HOST, target.to_string())
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Payload::repeat(bytes, false))?;
    let started = Instant::now();
    let resp = sender.send_request(req).await.context("upload")?;
    let status = resp.status();
    let answer = resp.into_body().collect().await?.to_bytes();
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!(
            "upload: status {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    let received = serde_json::from_slice::<serde_json::Value>(&answer)
        .ok()
        .and_then(|v| v.get("bytes")?.as_u64());
    if received != Some(bytes) {
        bail!(
            "upload: sent {bytes} bytes, upstream says {}",
            String::from_utf8_lossy(&answer)
        );
    }
    stream_row(label, bytes, elapsed, proxy_pid);
    Ok(())
}

async fn download(
    target: SocketAddr,
    bytes: u64,
    label: &str,
    proxy_pid: Option<u32>,
) -> anyhow::Result<()> {
    let target = loopback_only(target)?;
    let mut sender = connect::<Empty<Bytes>>(target).await?;
    let req = Request::get(format!("/source?bytes={bytes}"))
        .header(header::HOST, target.to_string())
        .body(Empty::new())?;
    let started = Instant::now();
    let resp = sender.send_request(req).await.context("download")?;
    let status = resp.status();
    if !status.is_success() {
        bail!("download: status {status}");
    }
    let received = drain_body(resp.into_body())
        .await
        .context("download body")?;
    let elapsed = started.elapsed();
    if received != bytes {
        bail!("download: asked for {bytes} bytes, received {received}");
    }
    stream_row(label, bytes, elapsed, proxy_pid);
    Ok(())
}

// ---------------------------------------------------------------- output

fn header(kind: Table) {
    match kind {
        Table::Load => {
            println!(
                "{:<30} {:>5} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>9} {:>9} {:>6}",
                "pass",
                "conns",
                "requests",
                "req/s",
                "p50",
                "p90",
                "p99",
                "max",
                "non-2xx",
                "errors",
                "app conns",
                "CPU/1k",
                "cores"
            );
            println!("{}", "-".repeat(140));
        }
        Table::Stream => {
            println!(
                "{:<30} {:>9} {:>8} {:>9} {:>11} {:>11}",
                "transfer", "MiB", "seconds", "MiB/s", "VmRSS after", "VmHWM after"
            );
            println!("{}", "-".repeat(83));
        }
    }
}

fn stream_row(label: &str, bytes: u64, elapsed: Duration, proxy_pid: Option<u32>) {
    let mem = |key: &str| {
        proxy_pid
            .and_then(|pid| proc_status_kib(pid, key))
            .map_or("-".to_owned(), |kib| {
                format!("{:.1} MiB", kib as f64 / 1024.0)
            })
    };
    let secs = elapsed.as_secs_f64();
    println!(
        "{label:<30} {mib:>9.0} {secs:>8.2} {rate:>9.0} {rss:>11} {hwm:>11}",
        mib = bytes as f64 / MIB,
        rate = bytes as f64 / MIB / secs,
        rss = mem("VmRSS"),
        hwm = mem("VmHWM"),
    );
}

fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.2}s", ms / 1000.0)
    }
}

// ---------------------------------------------------------------- /proc

/// User + system CPU time of a process (fields 14 and 15 of /proc/PID/stat).
fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces: count from after its ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed /proc/PID/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so utime (14) and stime (15) are at 11, 12.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/PID/stat")?
        .iter()
        .map(|f| f.parse::<u64>())
        .sum::<Result<u64, _>>()?;
    Ok(ticks as f64 / clock_ticks())
}

/// USER_HZ, the unit of /proc/PID/stat times (100 on every common Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|&t| t > 0.0)
        .unwrap_or(100.0)
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM).
fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}
