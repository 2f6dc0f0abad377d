//! Idle app-connection eviction.

use crate::runtime::Snapshots;
use crate::shutdown::{reached, Phase};
use std::time::Duration;
use tokio::sync::watch;

/// Closes pooled app connections past `app.pool_idle_timeout`, so sockets are
/// not held open (and closed by the app under us) when traffic is quiet.
pub async fn evict_idle_app_connections(snapshots: Snapshots, mut phase: watch::Receiver<Phase>) {
    loop {
        let snap = snapshots.load_full();
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
