//! Certificate rotation: cert-manager updates a mounted Secret in place
//! without restarting anyone, so the files are hashed on every poll and a
//! valid new pair is swapped in. [`rotate`] is the check itself, for any
//! server holding a [`CertResolver`] (the proxy's listener from the reload
//! loop, `lifeguard webhook` from its own poll); [`check_rotation`] is the
//! proxy's, with its metrics.

use crate::config::certs::{files_sha256, load, TlsError};
use crate::runtime::{CertResolver, Shared};
use std::path::PathBuf;
use std::sync::Arc;

/// What one rotation check found.
#[derive(Debug)]
pub enum Rotation {
    /// The files hold what is served (or the pair rejected last time).
    Unchanged,
    /// A new valid pair is served from the next handshake on.
    Reloaded { sha256: String },
    /// The files changed into something unusable; the old pair is still
    /// served. Reported once per rejected state.
    Rejected(TlsError),
}

/// Swaps the files' new content into `resolver` when it changed and is
/// valid. `bad` remembers the last rejected state (files' hash, or read
/// error) so a bad pair is reported once.
pub async fn rotate(
    resolver: &CertResolver,
    cert: PathBuf,
    key: PathBuf,
    bad: &mut Option<String>,
) -> Rotation {
    let (c, k) = (cert.clone(), key.clone());
    let sha = match tokio::task::spawn_blocking(move || files_sha256(&c, &k)).await {
        Ok(Ok(sha)) => sha,
        Ok(Err(e)) => return rejected(bad, e.to_string(), e),
        Err(_) => return Rotation::Unchanged,
    };
    if sha == resolver.files_sha256() || bad.as_ref() == Some(&sha) {
        return Rotation::Unchanged;
    }
    match tokio::task::spawn_blocking(move || load(&cert, &key)).await {
        Ok(Ok(loaded)) => {
            resolver.swap(Arc::new(loaded.key), loaded.files_sha256);
            *bad = None;
            Rotation::Reloaded { sha256: sha }
        }
        Ok(Err(e)) => rejected(bad, sha, e),
        Err(_) => Rotation::Unchanged,
    }
}

fn rejected(bad: &mut Option<String>, seen: String, error: TlsError) -> Rotation {
    if bad.as_ref() == Some(&seen) {
        return Rotation::Unchanged;
    }
    *bad = Some(seen);
    Rotation::Rejected(error)
}

/// Called from the reload loop: the proxy listener's rotation, counted and
/// logged.
pub async fn check_rotation(shared: &Shared, bad: &mut Option<String>) {
    let (Some(resolver), Some(config)) = (&shared.tls, shared.snapshot.load().config.tls.clone())
    else {
        return;
    };
    let (cert, key) = (config.cert_file.clone(), config.key_file.clone());
    match rotate(resolver, cert, key, bad).await {
        Rotation::Unchanged => {}
        Rotation::Reloaded { sha256 } => {
            shared.metrics.tls_cert_reload(true);
            tracing::info!(sha256 = %sha256, "TLS certificate reloaded");
        }
        Rotation::Rejected(error) => {
            tracing::error!(field = error.field(), error = %error, "new TLS certificate rejected; the old one is still served");
            shared.metrics.tls_cert_reload(false);
        }
    }
}
