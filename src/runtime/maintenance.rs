//! The maintenance switches: `maintenance.enabled` in the config, the
//! existence of `maintenance.flag_file`, and `POST /admin/maintenance`. Each
//! is kept in its own flag and the request path reads only their OR, one
//! atomic load. Requests already in flight when maintenance starts finish
//! normally: the check happens once, when a request arrives.

use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// What can turn maintenance on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `maintenance.enabled: true`.
    Config,
    /// `maintenance.flag_file` exists.
    FlagFile,
    /// `POST /admin/maintenance?state=on`.
    Admin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Config => "config",
            Source::FlagFile => "flag_file",
            Source::Admin => "admin",
        }
    }
}

/// The three switches and their OR.
#[derive(Debug, Default)]
pub struct Maintenance {
    /// Any switch on: the only flag the request path reads.
    on: AtomicBool,
    config: AtomicBool,
    flag_file: AtomicBool,
    admin: AtomicBool,
    /// Serialises updates so `on` never lags behind a concurrent switch.
    update: Mutex<()>,
}

impl Maintenance {
    /// Whether requests get the maintenance page (bypasses aside).
    #[inline]
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    fn switch(&self, source: Source) -> &AtomicBool {
        match source {
            Source::Config => &self.config,
            Source::FlagFile => &self.flag_file,
            Source::Admin => &self.admin,
        }
    }

    /// Sets one switch; logs and updates the gauge when the overall state changes.
    pub fn set(&self, source: Source, value: bool, metrics: &Metrics) {
        let _guard = self.update.lock().unwrap_or_else(PoisonError::into_inner);
        let before = self.switch(source).swap(value, Ordering::AcqRel);
        if before != value {
            tracing::info!(
                source = source.as_str(),
                on = value,
                "maintenance switch changed"
            );
        }
        let on = self.config.load(Ordering::Acquire)
            || self.flag_file.load(Ordering::Acquire)
            || self.admin.load(Ordering::Acquire);
        if self.on.swap(on, Ordering::AcqRel) != on {
            metrics.maintenance.set(i64::from(on));
            if on {
                tracing::warn!(sources = ?self.sources(), "maintenance mode ON: requests get the maintenance page");
            } else {
                tracing::warn!("maintenance mode OFF: requests go to the app again");
            }
        }
    }

    /// The switches that are on, for `/status` and the admin answer.
    pub fn sources(&self) -> Vec<&'static str> {
        [Source::Config, Source::FlagFile, Source::Admin]
            .into_iter()
            .filter(|s| self.switch(*s).load(Ordering::Acquire))
            .map(Source::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn switches_or_together() {
        let m = Maintenance::default();
        let metrics = Metrics::new();
        assert!(!m.is_on());
        m.set(Source::FlagFile, true, &metrics);
        m.set(Source::Admin, true, &metrics);
        assert!(m.is_on());
        assert_eq!(m.sources(), ["flag_file", "admin"]);
        m.set(Source::Admin, false, &metrics);
        assert!(m.is_on(), "flag file still on");
        m.set(Source::FlagFile, false, &metrics);
        assert!(!m.is_on());
        assert_eq!(metrics.maintenance.get(), 0);
    }
}
