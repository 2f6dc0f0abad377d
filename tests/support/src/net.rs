//! Socket-level waits for tests that stop an app and start it again on the
//! same port.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Waits until nothing listens on `addr` any more (a dropped app's listener
/// task is aborted asynchronously).
pub async fn wait_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
            _ => {}
        }
        assert!(Instant::now() < deadline, "{addr} still accepts");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Binds `addr` again (retrying while the old listener is being torn down).
pub async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) => assert!(Instant::now() < deadline, "rebind {addr}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stops `app` and waits until its port refuses connections: the app is
/// dead, as far as a connect can tell.
pub async fn kill_app(app: crate::TestUpstream) {
    let addr = app.addr;
    drop(app);
    wait_refused(addr).await;
}
