//! TLS termination: handshake with a generated certificate, HTTP/2 and
//! HTTP/1.1 chosen by ALPN, X-Forwarded-Proto, handshake timeout,
//! certificate rotation in place (Secret-volume style), and bad certificates
//! rejected at start (`lifeguard check`, exit 64) and on reload.

use std::time::Duration;
use support::admin::metric;
use support::api::{reload_from, ReloadResult, Trigger};
use support::configmap::ConfigMapDir;
use support::tls::{tls_get, Leaf, TestCa};
use support::*;
use tokio::io::AsyncReadExt;

fn tls_yaml(cm: &ConfigMapDir, extra: &str) -> String {
    format!(
        "tls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n{extra}",
        cm.path("tls.crt").display(),
        cm.path("tls.key").display()
    )
}

/// A test CA, a `localhost` certificate it issued, and a Secret-style
/// directory holding that pair (`tls.crt`, `tls.key`).
fn ca_and_secret() -> (TestCa, Leaf, ConfigMapDir) {
    let ca = TestCa::new();
    let leaf = ca.leaf();
    let cm = ConfigMapDir::new(&[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]);
    (ca, leaf, cm)
}

/// Swaps in `leaf` as the Secret-style pair, both files at once.
fn install(cm: &ConfigMapDir, leaf: &Leaf) {
    cm.update(&[("tls.crt", &leaf.cert_pem), ("tls.key", &leaf.key_pem)]);
}

/// Waits (up to 10 s) until `served` returns `der`.
async fn wait_served<F, Fut>(served: &F, der: &[u8], what: &str)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<u8>>,
{
    eventually_async(Duration::from_secs(10), what, || async {
        served().await == der
    })
    .await;
}

#[tokio::test]
async fn alpn_picks_http2_or_http11_and_the_app_sees_https() {
    let (ca, leaf, cm) = ca_and_secret();
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(&[app.addr], &tls_yaml(&cm, "")).await;

    let h2 = tls_get(&ca.client(&[b"h2", b"http/1.1"]), proxy.addr(), "/x?y=1")
        .await
        .unwrap();
    assert_eq!(h2.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(h2.version, http::Version::HTTP_2);
    assert_eq!(h2.status, 200, "{h2:?}");
    assert_eq!(h2.server_cert, leaf.der);
    let echoed: serde_json::Value = serde_json::from_str(&h2.body).unwrap();
    assert_eq!(echoed["path"], "/x?y=1");
    assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");

    for alpn in [&[&b"http/1.1"[..]][..], &[]] {
        let h1 = tls_get(&ca.client(alpn), proxy.addr(), "/one")
            .await
            .unwrap();
        assert_eq!(h1.version, http::Version::HTTP_11, "alpn {alpn:?}");
        assert_eq!(h1.status, 200);
        let echoed: serde_json::Value = serde_json::from_str(&h1.body).unwrap();
        assert_eq!(echoed["headers"]["x-forwarded-proto"], "https");
    }
    let (_, status) = admin_get(proxy.admin(), "/status").await;
    assert!(status.contains("\"files_sha256\""), "{status}");
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_after_the_header_timeout() {
    let (_ca, _leaf, cm) = ca_and_secret();
    let proxy = Proxy::with_endpoints(
        &[closed_port()],
        &tls_yaml(&cm, "client:\n  header_timeout: 300ms\n"),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "connection still open: {read:?}"
    );
}

#[tokio::test]
async fn rotated_certificate_is_served_and_a_bad_one_is_refused() {
    let (ca, first, cm) = ca_and_secret();
    let app = TestUpstream::echo().await;
    let proxy = Proxy::with_endpoints(
        &[app.addr],
        &tls_yaml(&cm, "reload:\n  poll_interval: 100ms\n"),
    )
    .await;
    // A fresh client each time: a resumed TLS session presents no certificate.
    let served = || async {
        let client = ca.client(&[b"http/1.1"]);
        tls_get(&client, proxy.addr(), "/")
            .await
            .unwrap()
            .server_cert
    };
    assert_eq!(served().await, first.der);

    // cert-manager rotates the Secret: both files change in one swap.
    let second = ca.leaf();
    install(&cm, &second);
    wait_served(&served, &second.der, "rotated certificate not served").await;
    let admin = proxy.admin();
    let ok = "lifeguard_tls_certificate_reloads_total{result=\"success\"}";
    let bad = "lifeguard_tls_certificate_reloads_total{result=\"invalid\"}";
    assert_eq!(metric(admin, ok).await, 1.0);

    // A key that does not match its certificate: refused, the old pair stays.
    let third = ca.leaf();
    cm.update(&[("tls.crt", &third.cert_pem), ("tls.key", &second.key_pem)]);
    eventually_async(Duration::from_secs(10), "bad pair not noticed", || async {
        metric(admin, bad).await >= 1.0
    })
    .await;
    assert_eq!(served().await, second.der);
    // Not PEM at all: refused too.
    cm.update(&[
        ("tls.crt", "not a certificate"),
        ("tls.key", &second.key_pem),
    ]);
    eventually_async(Duration::from_secs(10), "garbage not noticed", || async {
        metric(admin, bad).await >= 2.0
    })
    .await;
    assert_eq!(served().await, second.der);

    // A config reload naming a bad file is rejected as a whole, naming the key.
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "listen: \"127.0.0.1:0\"\nadmin:\n  listen: \"127.0.0.1:0\"\napp:\n  endpoints: [\"{}\"]\ntls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
            app.addr,
            garbage.display(),
            cm.path("tls.key").display()
        ),
    )
    .unwrap();
    let outcome = reload_from(&proxy.running.shared, &path, Trigger::Admin).await;
    assert_eq!(outcome.result, ReloadResult::Invalid, "{outcome:?}");
    assert!(
        outcome
            .errors
            .iter()
            .any(|e| e.starts_with("tls.cert_file:")),
        "{outcome:?}"
    );
    assert_eq!(served().await, second.der);

    // Fixed files are picked up again.
    let fourth = ca.leaf();
    install(&cm, &fourth);
    wait_served(&served, &fourth.der, "fixed certificate not served").await;
}

#[tokio::test]
async fn bad_certificate_files_fail_check_with_exit_64() {
    let ca = TestCa::new();
    let (one, two) = (ca.leaf(), ca.leaf());
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let good_cert = write("one.crt", &one.cert_pem);
    let good_key = write("one.key", &one.key_pem);
    let other_key = write("two.key", &two.key_pem);
    let not_pem = write("junk.crt", "hello");
    let cases = [
        (&good_cert, &good_key, None),
        (&not_pem, &good_key, Some("tls.cert_file: ")),
        (&good_cert, &other_key, Some("tls.key_file: ")),
        (
            &good_cert,
            &dir.path().join("missing.key"),
            Some("tls.key_file: cannot read"),
        ),
    ];
    for (i, (cert, key, problem)) in cases.iter().enumerate() {
        let config = write(
            &format!("config{i}.yaml"),
            &format!(
                "tls:\n  cert_file: \"{}\"\n  key_file: \"{}\"\n",
                cert.display(),
                key.display()
            ),
        );
        let out = std::process::Command::new(process::binary())
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match problem {
            None => assert!(out.status.success(), "case {i}: {stderr}"),
            Some(p) => {
                assert_eq!(out.status.code(), Some(64), "case {i}: {stderr}");
                assert!(stderr.contains(p), "case {i}: expected {p:?} in {stderr}");
            }
        }
    }
}
