//! Upgraded connections (WebSocket, socket.io): after the app answers `101`,
//! bytes are copied both ways until either side closes.

use crate::inflight::Entry;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;

/// Joins the client's and the app's upgraded connections in a background task.
pub fn spawn(client: OnUpgrade, app: OnUpgrade, entry: Arc<Entry>) {
    tokio::spawn(async move {
        let (client, app) = tokio::join!(client, app);
        match (client, app) {
            (Ok(client), Ok(app)) => {
                let mut client = TokioIo::new(client);
                let mut app = TokioIo::new(app);
                match tokio::io::copy_bidirectional(&mut client, &mut app).await {
                    Ok((up, down)) => {
                        tracing::debug!(request_id = ?entry.request_id, up, down, "tunnel closed")
                    }
                    Err(e) => {
                        tracing::debug!(request_id = ?entry.request_id, error = %e, "tunnel ended with error")
                    }
                }
            }
            (c, a) => tracing::warn!(
                request_id = ?entry.request_id,
                client_ok = c.is_ok(),
                app_ok = a.is_ok(),
                "upgrade failed after 101"
            ),
        }
    });
}
