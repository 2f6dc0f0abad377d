//! Certificate files as pure functions: read the PEM pair named by
//! `tls.cert_file` / `tls.key_file`, check that it parses and that the key
//! matches the certificate, and hash both files (to notice a rotation in
//! place). Used when the config loads and by the rotation check.

use super::files::{read_capped, FileError, PEM_CAP};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::InconsistentKeys;
use std::path::{Path, PathBuf};

/// Why a certificate/key pair cannot be used. Each names the config key of
/// the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `tls.cert_file` missing, not a regular file, or larger than 1 MiB.
    #[error("{0}")]
    ReadCert(FileError),
    /// `tls.key_file` likewise.
    #[error("{0}")]
    ReadKey(FileError),
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
            TlsError::ReadCert(_)
            | TlsError::NoCertificate { .. }
            | TlsError::BadCertificate { .. } => "tls.cert_file",
            TlsError::ReadKey(_) | TlsError::BadKey { .. } | TlsError::KeyMismatch { .. } => {
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

/// Reads both files (each a regular file of at most 1 MiB, see `files`) and
/// hashes them together (to notice a rotation).
pub fn files_sha256(cert: &Path, key: &Path) -> Result<String, TlsError> {
    let (c, k) = read_pair(cert, key)?;
    Ok(hash_pair(&c, &k))
}

fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let c = read_capped(cert, PEM_CAP).map_err(TlsError::ReadCert)?;
    let k = read_capped(key, PEM_CAP).map_err(TlsError::ReadKey)?;
    Ok((c, k))
}

fn hash_pair(cert: &[u8], key: &[u8]) -> String {
    let mut both = Vec::with_capacity(cert.len() + key.len() + 1);
    both.extend_from_slice(cert);
    both.push(0);
    both.extend_from_slice(key);
    super::sha256_hex(&both)
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
