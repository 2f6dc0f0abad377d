//! Hot reload: a new config is read, parsed and validated completely, then
//! replaces the running one in a single snapshot swap. A request in flight
//! keeps the snapshot it started with; nothing is dropped.
//!
//! Triggers: the config file's content changing (polled by hash every
//! `reload.poll_interval`; the path is re-read each time because Kubernetes
//! updates a mounted ConfigMap by swapping a `..data` symlink, which an
//! inotify watch on the old file would miss), SIGHUP, and `POST
//! /admin/reload`. One reload runs at a time.
//!
//! An invalid config is rejected with the same field-named problems as
//! `lifeguard check`, logged once per distinct content, counted, and the last
//! good config stays in force. Settings that need a restart (listeners, TLS
//! on/off, backlog, log format) keep their running values and are reported.
//! The TLS certificate files are polled in the same loop (and on every
//! explicit reload) by `server::tls::check_rotation`, and swapped on their
//! own, without a new config generation.

use crate::config::{read_config_file, sha256_hex, Config};
use crate::runtime::{
    unix_ms, unix_now, Memory, Outcome, ReloadResult, Shared, Snapshot, Source, Trigger,
};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Reloads from the file the running config came from (SIGHUP, admin).
pub async fn reload_now(shared: &Arc<Shared>, trigger: Trigger) -> Outcome {
    let path = shared.snapshot.load().config.source_path.clone();
    match path {
        Some(path) => reload_from(shared, &path, trigger).await,
        None => {
            let mut o = outcome(shared, ReloadResult::Error, trigger);
            o.errors = vec!["the running config was not loaded from a file".to_owned()];
            o
        }
    }
}

/// Reloads from `path` (which polls then watch, once applied) and checks the
/// TLS certificate files. Always answers, even when nothing changed.
pub async fn reload_from(shared: &Arc<Shared>, path: &Path, trigger: Trigger) -> Outcome {
    let mut memory = shared.reload.memory.lock().await;
    let outcome = attempt(shared, &mut memory, path, trigger)
        .await
        .unwrap_or_else(|| outcome(shared, ReloadResult::Unchanged, trigger));
    super::certs::check_rotation(shared, &mut memory.bad_cert).await;
    outcome
}

/// Polls the config file and the certificate files until the process stops.
pub async fn watch(shared: Arc<Shared>) {
    let mut phase = shared.phase.subscribe();
    loop {
        // Polling off: look again later in case a reload turns it on.
        let interval = shared.snapshot.load().config.reload.poll_interval;
        let wait = if interval.is_zero() {
            Duration::from_secs(1)
        } else {
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = phase.wait_for(|p| *p == crate::shutdown::Phase::Stopped) => return,
        }
        let mut memory = shared.reload.memory.lock().await;
        let (interval, path) = {
            let snap = shared.snapshot.load();
            (
                snap.config.reload.poll_interval,
                snap.config.source_path.clone(),
            )
        };
        if interval.is_zero() {
            continue;
        }
        if let Some(path) = path {
            attempt(&shared, &mut memory, &path, Trigger::Poll).await;
        }
        super::certs::check_rotation(&shared, &mut memory.bad_cert).await;
    }
}

/// Reloads on every SIGHUP.
pub async fn on_sighup(shared: Arc<Shared>, mut hup: tokio::signal::unix::Signal) {
    while hup.recv().await.is_some() {
        reload_now(&shared, Trigger::Signal).await;
    }
}

/// An outcome describing the config in force.
fn outcome(shared: &Shared, result: ReloadResult, trigger: Trigger) -> Outcome {
    let snap = shared.snapshot.load();
    Outcome {
        result,
        trigger,
        at_unix_ms: unix_ms(),
        generation: snap.generation,
        sha256: snap.config.source_hash.clone(),
        rejected_sha256: None,
        errors: Vec::new(),
        requires_restart: shared.reload.status().requires_restart,
    }
}

/// One attempt. `None`: a poll found nothing new (nothing is counted or logged).
async fn attempt(
    shared: &Arc<Shared>,
    memory: &mut Memory,
    path: &Path,
    trigger: Trigger,
) -> Option<Outcome> {
    let poll = trigger == Trigger::Poll;
    // The file must be a regular file of at most 4 MiB, opened without
    // blocking (a FIFO here must not wedge this and every later reload):
    // `config::files`, off the runtime's workers.
    let read = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || read_config_file(&path)).await
    };
    let text = match read {
        Ok(Ok(text)) => {
            memory.read_error = None;
            text
        }
        Ok(Err(e)) => {
            let error = e.to_string();
            if poll && memory.read_error.as_ref() == Some(&error) {
                return None;
            }
            tracing::error!(path = %path.display(), error = %error, "config reload failed; keeping the running config");
            memory.read_error = Some(error.clone());
            let mut o = outcome(shared, ReloadResult::Error, trigger);
            o.errors = vec![error];
            return Some(finish(shared, o));
        }
        Err(e) => {
            let mut o = outcome(shared, ReloadResult::Error, trigger);
            o.errors = vec![format!("reading the config file failed: {e}")];
            return Some(finish(shared, o));
        }
    };
    let hash = sha256_hex(text.as_bytes());
    let running = shared.snapshot.load_full();
    if poll && hash == running.config.source_hash {
        // The file is back to what runs: clear an earlier rejection.
        return memory
            .bad_config
            .take()
            .map(|_| finish(shared, outcome(shared, ReloadResult::Unchanged, trigger)));
    }
    if poll && memory.bad_config.as_ref() == Some(&hash) {
        return None;
    }
    // Validation reads the files the config names (page, tokens,
    // certificates): blocking I/O, off the runtime's workers.
    let origin = path.display().to_string();
    let parsed = tokio::task::spawn_blocking(move || Config::from_yaml(&text, &origin)).await;
    let mut config = match parsed {
        Ok(Ok(config)) => config,
        Ok(Err(e)) => return Some(rejected(shared, memory, path, hash, e.problems(), trigger)),
        Err(e) => {
            let mut o = outcome(shared, ReloadResult::Error, trigger);
            o.errors = vec![format!("validation task failed: {e}")];
            return Some(finish(shared, o));
        }
    };
    memory.bad_config = None;
    config.source_path = Some(path.to_owned());
    let requires_restart = keep_restart_settings(&running.config, &mut config);
    if same_inputs(&running.config, &config) {
        let mut o = outcome(shared, ReloadResult::Unchanged, trigger);
        o.requires_restart = requires_restart;
        return Some(finish(shared, o));
    }
    Some(apply(shared, &running, config, requires_restart, trigger))
}

/// The new content is invalid: logged once per content hash.
fn rejected(
    shared: &Shared,
    memory: &mut Memory,
    path: &Path,
    hash: String,
    problems: Vec<String>,
    trigger: Trigger,
) -> Outcome {
    if memory.bad_config.as_ref() != Some(&hash) {
        tracing::error!(
            path = %path.display(),
            sha256 = %hash,
            problems = %problems.join("; "),
            "config rejected; keeping the running config"
        );
    }
    memory.bad_config = Some(hash.clone());
    let mut o = outcome(shared, ReloadResult::Invalid, trigger);
    o.rejected_sha256 = Some(hash);
    o.errors = problems;
    finish(shared, o)
}

/// Counts and records an outcome.
fn finish(shared: &Shared, outcome: Outcome) -> Outcome {
    shared.metrics.reload(outcome.result.as_str());
    let good = matches!(
        outcome.result,
        ReloadResult::Success | ReloadResult::Unchanged
    );
    shared.metrics.last_reload_successful.set(i64::from(good));
    shared.reload.record(&outcome);
    outcome
}

/// Puts the running value back into `new` for every setting that cannot
/// change without a restart, and names those that differed.
fn keep_restart_settings(running: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if new.listen != running.listen {
        changed.push("listen");
        new.listen = running.listen;
    }
    if new.admin.listen != running.admin.listen {
        changed.push("admin.listen");
        new.admin.listen = running.admin.listen;
    }
    if new.client.listen_backlog != running.client.listen_backlog {
        changed.push("client.listen_backlog");
        new.client.listen_backlog = running.client.listen_backlog;
    }
    if new.tls.is_some() != running.tls.is_some() {
        changed.push("tls");
        new.tls = running.tls.clone();
    }
    // The subscriber's output layer is installed once.
    if new.log.format != running.log.format {
        changed.push("log.format");
        new.log.format = running.log.format;
    }
    changed
}

/// Same YAML and same content of every file it names: nothing to apply.
fn same_inputs(a: &Config, b: &Config) -> bool {
    a.source_hash == b.source_hash
        && a.source_path == b.source_path
        && a.admin.token == b.admin.token
        && a.maintenance.page == b.maintenance.page
        && a.maintenance.bypass == b.maintenance.bypass
        && a.tls.as_ref().map(|t| &t.files_sha256) == b.tls.as_ref().map(|t| &t.files_sha256)
}

/// Swaps in `config` as the next generation and applies what lives outside
/// the snapshot.
fn apply(
    shared: &Arc<Shared>,
    running: &Snapshot,
    config: Config,
    requires_restart: Vec<&'static str>,
    trigger: Trigger,
) -> Outcome {
    let old = &running.config;
    if config.log.level != old.log.level && !crate::logging::set_level(&config.log.level) {
        tracing::debug!("log.level not applied: no reloadable subscriber in this process");
    }
    let removed: Vec<Arc<String>> = running
        .endpoints
        .iter()
        .filter(|e| !config.app.endpoints.contains(&e.addr))
        .map(|e| e.name.clone())
        .collect();
    let added = config
        .app
        .endpoints
        .iter()
        .filter(|a| !running.endpoints.iter().any(|e| e.addr == **a))
        .count();
    resize_connection_slots(
        shared,
        old.client.max_connections,
        config.client.max_connections,
    );
    let maintenance = config.maintenance.enabled;
    // A pair kept from the running config (TLS on/off needs a restart) may be
    // older than the one served: only a freshly loaded pair replaces it.
    let certificate = config
        .tls
        .as_ref()
        .filter(|_| !requires_restart.contains(&"tls"))
        .map(|t| (t.key.clone(), t.files_sha256.clone()));
    for w in config.warnings() {
        tracing::warn!(warning = %w, "config warning");
    }
    let generation = running.generation + 1;
    let snapshot = Snapshot::build(
        config,
        Some(running),
        generation,
        &shared.signals,
        &shared.metrics,
    );
    shared.snapshot.store(Arc::new(snapshot));

    super::probers::spawn_probers(&shared.snapshot, &shared.phase);
    for name in &removed {
        forget_removed(shared, name.clone());
    }
    shared
        .maintenance
        .set(Source::Config, maintenance, &shared.metrics);
    if let Some((key, sha)) = certificate {
        replace_certificate(shared, key, sha);
    }
    shared.metrics.config_generation.set(generation as i64);
    shared.metrics.config_in_force(
        &shared.snapshot.load().config.source_hash,
        Some(&old.source_hash),
    );
    shared.metrics.last_reload_success.set(unix_now());
    if !requires_restart.is_empty() {
        tracing::warn!(fields = ?requires_restart, "config changes that require a restart were ignored; the running values stay");
    }
    let mut o = outcome(shared, ReloadResult::Success, trigger);
    o.requires_restart = requires_restart;
    tracing::info!(generation, sha256 = %o.sha256, trigger = ?trigger, endpoints_added = added, endpoints_removed = removed.len(), "config reloaded");
    finish(shared, o)
}

/// A reload that names new certificate files serves them at once.
fn replace_certificate(shared: &Shared, key: Arc<CertifiedKey>, sha: String) {
    if let Some(resolver) = shared.tls.as_ref().filter(|r| r.files_sha256() != sha) {
        resolver.swap(key, sha);
        shared.metrics.tls_cert_reload(true);
        tracing::info!("TLS certificate replaced (new files named by the config)");
    }
}

/// Drops a removed endpoint's metric series now, and again once a probe
/// that was under way when it was removed has had time to finish (it would
/// re-create its series) — unless the endpoint has come back meanwhile.
fn forget_removed(shared: &Arc<Shared>, name: Arc<String>) {
    shared.metrics.forget_endpoint(&name);
    let shared = shared.clone();
    tokio::spawn(async move {
        let wait = shared.snapshot.load().config.health.timeout + Duration::from_millis(200);
        tokio::time::sleep(wait).await;
        let back = shared
            .snapshot
            .load()
            .endpoints
            .iter()
            .any(|e| e.name == name);
        if !back {
            shared.metrics.forget_endpoint(&name);
        }
    });
}

/// Applies a new `client.max_connections` to the accept loop's semaphore. A
/// lower limit takes effect as connections close: the permits not free now
/// are taken (and discarded) as they are returned.
fn resize_connection_slots(shared: &Shared, old: usize, new: usize) {
    let slots = &shared.connection_slots;
    if new > old {
        slots.add_permits(new - old);
    } else if new < old {
        let owed = (old - new) - slots.forget_permits(old - new);
        if owed > 0 {
            let slots = slots.clone();
            tokio::spawn(async move {
                if let Ok(p) = slots.acquire_many_owned(owed as u32).await {
                    p.forget();
                }
            });
        }
    }
}
