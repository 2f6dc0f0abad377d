//! The app connection pool.

use super::{send, App};
use support::upstream::full;
use support::*;

use http::Response;
use std::time::Duration;

fn distinct_conns(app: &App) -> Vec<usize> {
    let c: std::collections::BTreeSet<usize> = app.requests().iter().map(|s| s.conn).collect();
    c.into_iter().collect()
}

#[tokio::test]
async fn pool_reuses_app_connections_and_expires_idle_ones() {
    let app = App::start(|_req| async { Response::new(full("ok")) }).await;
    let proxy = Proxy::with_endpoints(&[app.addr], "  pool_idle_timeout: 200ms\n").await;
    // Sequential requests, each on a new client connection: one app connection.
    for _ in 0..5 {
        let r = send(&proxy, b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(app.hits(), 5);
    assert_eq!(
        distinct_conns(&app).len(),
        1,
        "sequential requests did not reuse the app connection: {:?}",
        app.requests()
    );

    // Idle past pool_idle_timeout: the next request uses a new connection.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = send(&proxy, b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(r.status, 200);
    let conns = distinct_conns(&app);
    assert_eq!(
        conns.len(),
        2,
        "idle connection was reused: {:?}",
        app.requests()
    );
}
