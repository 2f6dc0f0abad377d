//! `loadgen open`: an open-loop latency test. Requests are due at a fixed
//! rate whatever the responses do (up to `connections` at once), so the
//! load does not slow down when responses do. Latency counts from the send
//! to the last response byte.

use super::{connect, drain_body, loopback_only};
use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::{header, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

pub(crate) async fn open(
    target: SocketAddr,
    rate: u32,
    seconds: f64,
    connections: usize,
    label: &str,
) -> anyhow::Result<()> {
    let target = loopback_only(target)?;
    let (tx, rx) = mpsc::channel::<Instant>(connections.max(1) * 4);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = JoinSet::new();
    for _ in 0..connections.max(1) {
        let rx = rx.clone();
        workers.spawn(async move {
            let mut sender = connect::<Empty<Bytes>>(target).await?;
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let host = target.to_string();
            loop {
                let Some(_due) = rx.lock().await.recv().await else {
                    break;
                };
                let req = Request::get("/")
                    .header(header::HOST, host.as_str())
                    .body(Empty::new())?;
                // Service time from the send: at this rate nothing queues, and
                // tokio's 1 ms timer would otherwise add its own lateness.
                let sent = Instant::now();
                let ok = async {
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    let ok = resp.status().is_success();
                    drain_body(resp.into_body()).await?;
                    Ok::<_, hyper::Error>(ok)
                }
                .await;
                match ok {
                    Ok(true) => lat.push(sent.elapsed().as_nanos() as u64),
                    Ok(false) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        sender = connect::<Empty<Bytes>>(target).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>((lat, errors))
        });
    }
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let total = (f64::from(rate) * seconds) as u64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for _ in 0..total {
        let due = tick.tick().await;
        tx.send(due).await.context("workers gone")?;
    }
    drop(tx);
    let mut lat = Vec::with_capacity(total as usize);
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (l, e) = done??;
        lat.extend(l);
        errors += e;
    }
    lat.sort_unstable();
    let pct = |q: f64| {
        if lat.is_empty() {
            return "-".to_owned();
        }
        let i = ((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        format!("{}us", lat[i] / 1000)
    };
    println!(
        "{label:<30} {rate:>6} {n:>8} {p50:>9} {p90:>9} {p99:>9} {p999:>9} {errors:>6}",
        n = lat.len(),
        p50 = pct(0.5),
        p90 = pct(0.9),
        p99 = pct(0.99),
        p999 = pct(0.999),
    );
    Ok(())
}
