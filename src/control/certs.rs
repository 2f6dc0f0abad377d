//! Certificate rotation, checked from the reload loop: cert-manager updates a
//! mounted Secret in place without restarting anyone, so the files are hashed
//! on every poll and a valid new pair is swapped in.

use crate::config::certs::{files_sha256, load, TlsError};
use crate::runtime::Shared;
use std::sync::Arc;

/// Called from the reload loop: swaps in the certificate files' new content
/// when it changed and is valid; otherwise the served certificate stays.
/// `bad` remembers the last rejected state (files' hash, or read error) so a
/// bad pair is counted and logged once.
pub async fn check_rotation(shared: &Shared, bad: &mut Option<String>) {
    let (Some(resolver), Some(config)) = (&shared.tls, shared.snapshot.load().config.tls.clone())
    else {
        return;
    };
    let (cert, key) = (config.cert_file.clone(), config.key_file.clone());
    let hashed = tokio::task::spawn_blocking(move || files_sha256(&cert, &key)).await;
    let sha = match hashed {
        Ok(Ok(sha)) => sha,
        Ok(Err(e)) => return reject(shared, bad, e.to_string(), &e),
        Err(_) => return,
    };
    if sha == resolver.files_sha256() || bad.as_ref() == Some(&sha) {
        return;
    }
    let (cert, key) = (config.cert_file.clone(), config.key_file.clone());
    match tokio::task::spawn_blocking(move || load(&cert, &key)).await {
        Ok(Ok(loaded)) => {
            resolver.swap(Arc::new(loaded.key), loaded.files_sha256);
            *bad = None;
            shared.metrics.tls_cert_reload(true);
            tracing::info!(sha256 = %sha, "TLS certificate reloaded");
        }
        Ok(Err(e)) => reject(shared, bad, sha, &e),
        Err(_) => {}
    }
}

/// Counts and logs a rejected certificate state once.
fn reject(shared: &Shared, bad: &mut Option<String>, seen: String, error: &TlsError) {
    if bad.as_ref() == Some(&seen) {
        return;
    }
    tracing::error!(field = error.field(), error = %error, "new TLS certificate rejected; the old one is still served");
    *bad = Some(seen);
    shared.metrics.tls_cert_reload(false);
}
