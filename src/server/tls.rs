//! TLS termination on the main listener (rustls with the `ring` provider).
//! Certificates come from `tls.cert_file` / `tls.key_file` (PEM), are checked
//! when the config loads (parse, and the key must match the certificate), and
//! are served through `CertResolver`, whose key is swapped atomically when the
//! files are rotated in place (cert-manager updates a mounted Secret without
//! restarting anyone): handshakes in progress keep the key they started with.
//! ALPN offers `h2` and `http/1.1`; the negotiated protocol picks the hyper
//! server in `conn.rs`. A resumed TLS session keeps the certificate it was
//! authenticated with; new sessions get the rotated one.

use super::conn;
use super::io::PREFACE_LEN;
use crate::state::Shared;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

/// Why a certificate/key pair cannot be used. Each names the config key of
/// the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read \"{}\": {source}", .path.display())]
    ReadCert { path: PathBuf, source: io::Error },
    #[error("cannot read \"{}\": {source}", .path.display())]
    ReadKey { path: PathBuf, source: io::Error },
    #[error("\"{}\" holds no PEM certificate", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("\"{}\" holds no valid certificate: {reason}", .path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("\"{}\" holds no usable PEM private key: {reason}", .path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("\"{}\" does not match the certificate in tls.cert_file (different public key)", .path.display())]
    KeyMismatch { path: PathBuf },
}

impl TlsError {
    /// The config key this problem is about.
    pub fn field(&self) -> &'static str {
        match self {
            TlsError::ReadCert { .. }
            | TlsError::NoCertificate { .. }
            | TlsError::BadCertificate { .. } => "tls.cert_file",
            TlsError::ReadKey { .. } | TlsError::BadKey { .. } | TlsError::KeyMismatch { .. } => {
                "tls.key_file"
            }
        }
    }
}

/// A checked certificate chain and key, with the hash of the files they came from.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: CertifiedKey,
    pub files_sha256: String,
}

/// Reads both files and hashes them together (to notice a rotation).
pub fn files_sha256(cert: &Path, key: &Path) -> Result<String, TlsError> {
    let (c, k) = read_pair(cert, key)?;
    Ok(hash_pair(&c, &k))
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let c = std::fs::read(cert).map_err(|source| TlsError::ReadCert {
        path: cert.to_owned(),
        source,
    })?;
    let k = std::fs::read(key).map_err(|source| TlsError::ReadKey {
        path: key.to_owned(),
        source,
    })?;
    Ok((c, k))
}

fn hash_pair(cert: &[u8], key: &[u8]) -> String {
    let mut both = Vec::with_capacity(cert.len() + key.len() + 1);
    both.extend_from_slice(cert);
    both.push(0);
    both.extend_from_slice(key);
    crate::config::sha256_hex(&both)
}

/// Loads and checks a PEM certificate chain and its private key.
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCert, TlsError> {
    let (cert_pem, key_pem) = read_pair(cert, key)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|e| TlsError::BadKey {
            path: key.to_owned(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    // This also parses the end-entity certificate, so garbage inside valid
    // PEM armour is caught here rather than at the first handshake.
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(TlsError::KeyMismatch {
                path: key.to_owned(),
            })
        }
        Err(e) => {
            return Err(TlsError::BadCertificate {
                path: cert.to_owned(),
                reason: e.to_string(),
            })
        }
    }
    Ok(LoadedCert {
        key: certified,
        files_sha256: hash_pair(&cert_pem, &key_pem),
    })
}

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

/// The acceptor for the main listener: TLS 1.2 and 1.3, ALPN h2 and http/1.1.
pub fn acceptor(resolver: Arc<CertResolver>) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves one TLS client connection: handshake within
/// `client.header_timeout` (a stalled handshake is a slowloris too), then
/// HTTP/2 if ALPN chose `h2`, else HTTP/1.1.
pub async fn serve(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>, tls: TlsAcceptor) {
    let client = shared.snapshot.load().config.client.clone();
    let _ = stream.set_nodelay(true);
    let mut phase = shared.phase.subscribe();
    let handshake = tokio::select! {
        r = tokio::time::timeout(client.header_timeout, tls.accept(stream)) => r,
        // No request can be in flight before the handshake: like an idle
        // connection, it must not hold up the drain.
        _ = phase.wait_for(|p| *p >= crate::shutdown::Phase::Closing) => return,
    };
    let stream = match handshake {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(peer = %peer, "TLS handshake not finished within client.header_timeout; closing");
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let prefix = [0u8; PREFACE_LEN];
    conn::serve_io(stream, prefix, 0, h2, peer, "https", shared, client).await;
}

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
