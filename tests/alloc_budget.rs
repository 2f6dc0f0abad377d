//! The allocation budget of the request path: heap allocations per proxied
//! request, counted by a counting global allocator (`stats_alloc`) around a
//! keep-alive loop of GETs through an in-process lifeguard. The client and
//! the app in this test are raw sockets with fixed buffers that allocate
//! nothing per request, so the count is lifeguard's (with tokio's and
//! hyper's). No timing is involved: the count is the same on a busy machine.
//!
//! The budget is the count measured when it was set plus a little room.
//! If a change needs more, raise it here on purpose, with the reason in the
//! commit; if a change brings it down, lower it.

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::net::SocketAddr;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations per request through lifeguard (HTTP/1.1 keep-alive on both
/// sides, small GET, 128-byte answer, access log off). Measured: 13.0.
const BUDGET: f64 = 16.0;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 128\r\n\r\n\
xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// An app that answers every request head with `RESPONSE`, allocating
/// nothing per request.
async fn raw_app() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let mut have = 0;
                loop {
                    let Ok(n) = s.read(&mut buf[have..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    have += n;
                    // Every head ends with an empty line; GETs have no body.
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        if s.write_all(RESPONSE).await.is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                }
            });
        }
    });
    addr
}

/// One GET and its whole response on `s`, with fixed buffers.
async fn get(s: &mut TcpStream, buf: &mut [u8]) {
    s.write_all(b"GET /x?y=1 HTTP/1.1\r\nHost: app\r\nUser-Agent: budget\r\nAccept: */*\r\n\r\n")
        .await
        .unwrap();
    let mut have = 0;
    loop {
        let n = s.read(&mut buf[have..]).await.unwrap();
        assert!(n > 0, "closed");
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{:?}",
                String::from_utf8_lossy(&buf[..have])
            );
            if have >= end + 4 + 128 {
                return;
            }
        }
    }
}

#[tokio::test]
async fn a_proxied_request_stays_within_its_allocation_budget() {
    let app = raw_app().await;
    // Probes every minute: none falls inside the counted loop.
    let proxy = Proxy::with_endpoints(&[app], "health:\n  interval: 60s\n").await;
    wait_ready(proxy.admin()).await;
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    // Warm up: pools, metric children, caches, buffers grown to size.
    for _ in 0..200 {
        get(&mut s, &mut buf).await;
    }
    const N: usize = 2000;
    let region = Region::new(GLOBAL);
    for _ in 0..N {
        get(&mut s, &mut buf).await;
    }
    let stats = region.change();
    let per_request = stats.allocations as f64 / N as f64;
    let bytes = stats.bytes_allocated as f64 / N as f64;
    eprintln!(
        "per request: {per_request:.1} allocations ({bytes:.0} bytes), {:.1} reallocations",
        stats.reallocations as f64 / N as f64
    );
    assert!(
        per_request <= BUDGET,
        "{per_request:.1} allocations per request, over the budget of {BUDGET}"
    );
}
