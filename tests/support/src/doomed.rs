//! Apps that die: raw-TCP apps (on [`RawApp`]) that reset their connections
//! with requests on them, the way a crashed process's kernel does, at the
//! moment a test chooses or at a scripted point of the exchange.

use crate::upstream::{read_request, reset, write_then_reset, RawApp};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw app that holds every request it reads until `crash`, which resets
/// all its connections at once and stops listening: a process dying with
/// requests in flight.
#[derive(Debug)]
pub struct DoomedApp {
    pub addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
    app: RawApp,
}

impl DoomedApp {
    pub async fn start() -> DoomedApp {
        let held = Arc::new(Mutex::new(Vec::new()));
        let h = held.clone();
        let app = RawApp::start(move |mut s| {
            let h = h.clone();
            async move {
                if read_request(&mut s).await.is_some() {
                    h.lock().unwrap().push(s);
                }
            }
        })
        .await;
        DoomedApp {
            addr: app.addr,
            held,
            app,
        }
    }

    /// Requests read and held.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    pub fn crash(&self) {
        // Not listening any more right now: a GET that lifeguard resends
        // after the crash must find the port refusing.
        self.app.stop_listening();
        for s in self.held.lock().unwrap().drain(..) {
            reset(s);
        }
    }
}

/// Reads the head of one request and `body_bytes` of its body, then resets:
/// an app that crashes while the upload is still arriving. Counts crashes.
pub async fn crash_mid_upload_app(body_bytes: usize) -> (SocketAddr, Arc<AtomicUsize>, RawApp) {
    let (app, crashes) = RawApp::counting(move |mut s, crashes| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                if buf.len() - (p + 4) >= body_bytes {
                    break;
                }
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        crashes.fetch_add(1, Ordering::SeqCst);
        reset(s);
    })
    .await;
    (app.addr, crashes, app)
}

/// Per request: `/ok` gets a keep-alive 200, `/die` a reset, `/close` a FIN.
/// Counts requests.
pub async fn path_scripted_app() -> (SocketAddr, Arc<AtomicUsize>, RawApp) {
    let (app, count) = RawApp::counting(|mut s, count| async move {
        while let Some(req) = read_request(&mut s).await {
            count.fetch_add(1, Ordering::SeqCst);
            let head = String::from_utf8_lossy(&req).into_owned();
            match head.split(' ').nth(1).unwrap_or("") {
                "/die" => return reset(s),
                "/close" => return,
                _ => {
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
    .await;
    (app.addr, count, app)
}

/// `/health` answers 200 (counted), `/reset` resets the connection with the
/// request on it, `/midbody` sends response headers and part of the body,
/// then resets.
pub async fn crashy_app() -> (SocketAddr, Arc<AtomicUsize>, RawApp) {
    let (app, probes) = RawApp::counting(|mut s, probes| async move {
        let Some(req) = read_request(&mut s).await else {
            return;
        };
        let head = String::from_utf8_lossy(&req).into_owned();
        if head.starts_with("GET /health ") {
            probes.fetch_add(1, Ordering::SeqCst);
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                .await;
        } else if head.starts_with("GET /midbody ") {
            let partial = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial";
            write_then_reset(s, partial, Duration::from_millis(50)).await;
        } else {
            reset(s);
        }
    })
    .await;
    (app.addr, probes, app)
}
