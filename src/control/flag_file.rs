//! The maintenance flag-file watcher: the file's existence is checked every
//! second by this task, never per request (a migration Job or `kubectl exec`
//! can `touch` it in a shared volume).

use crate::metrics::Metrics;
use crate::runtime::{Maintenance, Snapshots, Source};
use crate::shutdown::Phase;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often the flag file's existence is checked.
const FLAG_POLL: Duration = Duration::from_secs(1);

/// Keeps the flag-file switch in step with the file's existence until the
/// process stops. The path is read from the current snapshot each time, so a
/// reload that changes it applies within a second.
pub async fn watch_flag_file(
    snapshots: Snapshots,
    maintenance: Arc<Maintenance>,
    metrics: Metrics,
    mut phase: watch::Receiver<Phase>,
) {
    loop {
        let path = snapshots.load().config.maintenance.flag_file.clone();
        let present = match path {
            Some(p) => tokio::fs::try_exists(&p).await.unwrap_or(false),
            None => false,
        };
        maintenance.set(Source::FlagFile, present, &metrics);
        tokio::select! {
            _ = tokio::time::sleep(FLAG_POLL) => {}
            _ = phase.wait_for(|p| *p == Phase::Stopped) => return,
        }
    }
}
