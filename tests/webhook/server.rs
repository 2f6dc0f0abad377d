//! `lifeguard webhook` as a child process on 127.0.0.1 port 0, with a
//! certificate of the test CA, and an HTTPS client for it (HTTP/2 or
//! HTTP/1.1 by ALPN, as offered).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use support::child::{self, Lines};
use support::configmap::ConfigMapDir;
use support::tls::{tls_connect, TestCa};
use tokio::process::{Child, Command};

pub(crate) struct Webhook {
    pub child: Child,
    pub lines: Lines,
    pub addr: SocketAddr,
    pub ca: TestCa,
    /// The certificate files, mounted as the kubelet mounts a Secret.
    pub secret: ConfigMapDir,
}

/// What one HTTPS exchange gave.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub alpn: Option<Vec<u8>>,
    pub server_cert: Vec<u8>,
}

impl Reply {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

impl Webhook {
    /// Starts the webhook with `extra` flags; waits for its start line.
    pub(crate) async fn start(extra: &[&str]) -> Webhook {
        let ca = TestCa::new();
        let leaf = ca.leaf();
        let secret = ConfigMapDir::new(&[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]);
        let (cert, key) = (secret.path("tls.crt"), secret.path("tls.key"));
        let mut cmd = Command::new(support::process::binary());
        cmd.arg("webhook")
            .args(["--listen", "127.0.0.1:0", "--cert-poll", "100ms"])
            .arg("--cert-file")
            .arg(&cert)
            .arg("--key-file")
            .arg(&key)
            .args(extra);
        let mut child = child::spawn_piped(&mut cmd, "lifeguard webhook");
        let lines = Lines::of_child(&mut child);
        let addr = child::wait_line(&mut child, &lines, "webhook start", 10, |l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            (v["message"] == "lifeguard webhook started")
                .then(|| v["listen"].as_str()?.parse().ok())
                .flatten()
        })
        .await;
        Webhook {
            child,
            lines,
            addr,
            ca,
            secret,
        }
    }

    /// Replaces the certificate files in one atomic swap, as the kubelet
    /// updates a mounted Secret (cert-manager renewing it).
    pub(crate) fn rotate(&self, cert_pem: &str, key_pem: &str) {
        self.secret
            .update(&[("tls.crt", cert_pem), ("tls.key", key_pem)]);
    }

    /// The JSON log lines so far.
    pub(crate) fn json_logs(&self) -> Vec<serde_json::Value> {
        self.lines
            .get()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// One request over a new TLS connection offering `alpn`.
    pub(crate) async fn request(
        &self,
        alpn: &[&[u8]],
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> std::io::Result<Reply> {
        let connector = self.ca.client(alpn);
        let tls = tls_connect(&connector, self.addr).await?;
        let (_, session) = tls.get_ref();
        let negotiated = session.alpn_protocol().map(<[u8]>::to_vec);
        let server_cert = session
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let io = TokioIo::new(tls);
        let h2 = negotiated.as_deref() == Some(b"h2");
        let uri = if h2 {
            format!("https://localhost{path}")
        } else {
            path.to_owned()
        };
        let mut req = http::Request::builder().method(method).uri(uri);
        if !h2 {
            req = req.header("host", "localhost");
        }
        let req = req
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let resp = if h2 {
            let (mut sender, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            sender.send_request(req).await
        } else {
            let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(conn);
            sender.send_request(req).await
        }
        .map_err(std::io::Error::other)?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes()
            .to_vec();
        Ok(Reply {
            status,
            body,
            alpn: negotiated,
            server_cert,
        })
    }

    /// `POST path` of an AdmissionReview, as the API server sends it (h2).
    pub(crate) async fn review(&self, path: &str, review: &serde_json::Value) -> Reply {
        self.request(
            &[b"h2", b"http/1.1"],
            "POST",
            path,
            serde_json::to_vec(review).unwrap(),
        )
        .await
        .expect("HTTPS exchange with the webhook")
    }
}
