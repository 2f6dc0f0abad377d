//! The certificate served on the main listener. TLS on/off needs a restart,
//! so the resolver is fixed at startup; the key inside is swapped atomically
//! when the files rotate (handshakes in progress keep the key they started
//! with).

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::sync::{Arc, Mutex, PoisonError};

/// Serves the current certificate; the reloader swaps it.
#[derive(Debug)]
pub struct CertResolver {
    current: ArcSwap<CertifiedKey>,
    /// Hash of the files `current` came from (touched only by the reloader).
    sha256: Mutex<String>,
}

impl CertResolver {
    pub fn new(key: Arc<CertifiedKey>, files_sha256: String) -> CertResolver {
        CertResolver {
            current: ArcSwap::new(key),
            sha256: Mutex::new(files_sha256),
        }
    }

    /// Hash of the files the served certificate came from.
    pub fn files_sha256(&self) -> String {
        self.sha256
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Serves `key` from the next handshake on.
    pub fn swap(&self, key: Arc<CertifiedKey>, files_sha256: String) {
        self.current.store(key);
        *self.sha256.lock().unwrap_or_else(PoisonError::into_inner) = files_sha256;
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
