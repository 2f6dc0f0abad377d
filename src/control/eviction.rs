//! Idle app-connection eviction.

use crate::runtime::Shared;
use crate::shutdown::{reached, Phase};
use std::sync::Arc;
use std::time::Duration;

/// Closes pooled app connections past `app.pool_idle_timeout`, so sockets are
/// not held open (and closed by the app under us) when traffic is quiet.
pub async fn evict_idle_app_connections(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    loop {
        let snap = shared.snapshot.load_full();
        let every = (snap.pool.idle_timeout / 2).max(Duration::from_millis(100));
        for e in &snap.endpoints {
            e.evict_idle(snap.pool.idle_timeout);
        }
        drop(snap);
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = reached(&mut phase, Phase::Stopped) => return,
        }
    }
}
