//! The reload record: what asked for a reload, how each attempt ended, what
//! `/status` shows, and the memory that lets the reload task log each bad
//! content once. The reload task itself is `control::reload`.

use serde::Serialize;
use std::sync::{Mutex, PoisonError};

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The file changed (poll).
    Poll,
    /// SIGHUP.
    Signal,
    /// `POST /admin/reload`.
    Admin,
}

/// How a reload attempt ended (the `result` label of `config_reloads_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadResult {
    /// A new generation is in force.
    Success,
    /// Parsing or validation failed; the running config stays.
    Invalid,
    /// Same content as the running config: nothing to do.
    Unchanged,
    /// The file could not be read.
    Error,
}

impl ReloadResult {
    pub const ALL: [ReloadResult; 4] = [
        ReloadResult::Success,
        ReloadResult::Invalid,
        ReloadResult::Unchanged,
        ReloadResult::Error,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReloadResult::Success => "success",
            ReloadResult::Invalid => "invalid",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Error => "error",
        }
    }
}

/// One reload attempt, as `/admin/reload` answers and `/status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub result: ReloadResult,
    pub trigger: Trigger,
    pub at_unix_ms: u64,
    /// Generation and SHA-256 of the config in force afterwards.
    pub generation: u64,
    pub sha256: String,
    /// SHA-256 of the rejected file (invalid only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_sha256: Option<String>,
    /// Every problem, each naming its field (invalid or error).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Changed settings that keep their running value until a restart.
    pub requires_restart: Vec<&'static str>,
}

/// What `/status` shows about reloads.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadStatus {
    pub last: Option<Outcome>,
    /// Settings in the file that differ from the running ones until a restart.
    pub requires_restart: Vec<&'static str>,
    pub last_success_unix_ms: u64,
}

/// Reload bookkeeping, in `Shared`.
#[derive(Debug)]
pub struct ReloadState {
    /// Held for a whole reload, so triggers never interleave.
    pub(crate) memory: tokio::sync::Mutex<Memory>,
    status: Mutex<ReloadStatus>,
}

/// What must be remembered between attempts so each problem is logged once.
#[derive(Debug, Default)]
pub struct Memory {
    /// Hash of the last rejected config content.
    pub bad_config: Option<String>,
    /// The last read error.
    pub read_error: Option<String>,
    /// Hash (or read error) of the last rejected certificate files.
    pub bad_cert: Option<String>,
}

impl Default for ReloadState {
    fn default() -> Self {
        ReloadState {
            memory: tokio::sync::Mutex::new(Memory::default()),
            status: Mutex::new(ReloadStatus {
                last: None,
                requires_restart: Vec::new(),
                last_success_unix_ms: unix_ms(),
            }),
        }
    }
}

impl ReloadState {
    pub fn status(&self) -> ReloadStatus {
        self.status_lock().clone()
    }

    fn status_lock(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn record(&self, outcome: &Outcome) {
        let mut s = self.status_lock();
        if outcome.result == ReloadResult::Success {
            s.requires_restart = outcome.requires_restart.clone();
            s.last_success_unix_ms = outcome.at_unix_ms;
        }
        s.last = Some(outcome.clone());
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    (super::unix_now() * 1000.0) as u64
}
