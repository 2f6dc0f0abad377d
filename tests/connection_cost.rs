//! What a client connection costs a child-process lifeguard while it sits
//! there, read from `/proc/PID/status` (VmRSS): one that never sent a byte
//! holds its socket, a few bytes of buffer and a timer (the connection's
//! state and hyper's are built on its first byte), and an idle keep-alive
//! connection gives hyper's buffers back after a second at rest. These are
//! ceilings against regressions, several times what the release build
//! measures (`bench/compare.sh`: about 1 and 4 KiB): this is the debug
//! build, and RSS moves in pages.

use std::time::Duration;
use support::raw::{connect, exchange_on};
use support::upstream::TestUpstream;
use support::*;
use tokio::net::TcpStream;

const CONNECTIONS: usize = 1000;

/// KiB of RSS each of `CONNECTIONS` connections adds while held.
async fn cost_per_connection(p: &ProxyProcess, request: bool) -> f64 {
    let before = p.status_kib("VmRSS");
    let mut held: Vec<TcpStream> = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut s = connect(p.addr).await;
        if request {
            let r = exchange_on(&mut s, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
            assert_eq!(r.status, 200);
        }
        held.push(s);
    }
    // Past the one second at rest after which hyper's buffers go, and
    // jemalloc's one-second decay of the pages they were in.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let during = p.status_kib("VmRSS");
    drop(held);
    during.saturating_sub(before) as f64 / CONNECTIONS as f64
}

#[tokio::test]
async fn held_connections_cost_little() {
    let app = TestUpstream::echo().await;
    let p = ProxyProcess::with_endpoints(&[app.addr], "client:\n  idle_timeout: 60s\n").await;
    wait_ready(p.admin).await;
    // Warm up: the first requests build the pool, the metrics, the caches.
    for _ in 0..20 {
        let mut s = connect(p.addr).await;
        exchange_on(
            &mut s,
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        )
        .await;
    }
    let never_used = cost_per_connection(&p, false).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keep_alive = cost_per_connection(&p, true).await;
    eprintln!(
        "per connection: {never_used:.2} KiB never used, {keep_alive:.2} KiB idle keep-alive after one request"
    );
    assert!(
        never_used < 4.0,
        "a connection that never sent a byte costs {never_used:.2} KiB: is hyper built before the first byte?"
    );
    assert!(
        keep_alive < 10.0,
        "an idle keep-alive connection costs {keep_alive:.2} KiB: are hyper's buffers still held at rest?"
    );
}
