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
use crate::runtime::{CertResolver, Shared};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

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
    conn::serve_io(stream, bytes::Bytes::new(), h2, peer, "https", shared).await;
}
