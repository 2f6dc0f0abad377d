//! Log output: text or JSON, one access-log event per request (target
//! `access`), level filter adjustable at run time (for config reload: the
//! handle of the installed subscriber is kept here, set once).
//!
//! Lines are written to stdout by a dedicated thread: a slow reader of the
//! container's stdout (log rotation, a busy node) must not stall request
//! handling. The queue is not lossy: if it fills, writers wait rather than
//! drop access-log lines.

mod json;

use crate::config::{LogConfig, LogFormat};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Lines queued for the writer thread at most (see `init`).
const LOG_QUEUE_LINES: usize = 8192;

/// Changes the log filter of the running process.
pub type LevelHandle = reload::Handle<EnvFilter, Registry>;

/// The level handle of the installed subscriber, if this process installed one.
static LEVEL: OnceLock<LevelHandle> = OnceLock::new();

/// Applies a new `log.level` filter. Returns `false` when no subscriber of
/// ours is installed or the filter does not parse (validation caught that).
pub fn set_level(filter: &str) -> bool {
    let (Some(handle), Ok(filter)) = (LEVEL.get(), EnvFilter::try_new(filter)) else {
        return false;
    };
    handle.reload(filter).is_ok()
}

/// Keeps the log writer thread alive; dropping it flushes what is queued.
pub struct LogGuard {
    pub level: LevelHandle,
    _flush: tracing_appender::non_blocking::WorkerGuard,
}

impl std::fmt::Debug for LogGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogGuard")
    }
}

/// Installs the global subscriber. Returns `None` if one is already installed
/// (several in-process test servers share one).
pub fn init(cfg: &LogConfig) -> Option<LogGuard> {
    let (out, flush) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        // tracing-appender's default queue of 128,000 lines is a bounded
        // channel whose slots are all written at start: ~4 MiB of RSS for an
        // idle sidecar. 8,192 lines (~2.5 MiB of JSON) absorb any burst a
        // stdout reader can fall behind by; past that, writers wait.
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(false)
        .thread_name("lifeguard-log")
        // Buffered: the writer thread drains every queued line, then flushes
        // (tracing-appender's worker), so a burst is one write(2), not one
        // per line; a quiet moment still flushes at once.
        .finish(std::io::BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout(),
        ));
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let result = match cfg.format {
        LogFormat::Json => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(json::JsonLine)
                    .with_writer(out),
            )
            .try_init(),
        LogFormat::Text => tracing_subscriber::registry()
            .with(filter)
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(out),
            )
            .try_init(),
    };
    result.ok().map(|_| {
        let _ = LEVEL.set(handle.clone());
        LogGuard {
            level: handle,
            _flush: flush,
        }
    })
}
