//! Absolute-form request targets.

use super::{echo_proxy, json, send};

#[tokio::test]
async fn absolute_form_target_becomes_origin_form() {
    let (app, proxy) = echo_proxy("").await;
    for req in [
        &b"GET http://example.com/x?y=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"[..],
        b"GET http://example.com/x?y=1 HTTP/1.1\r\n\r\n",
    ] {
        let r = send(&proxy, req).await;
        assert_eq!(r.status, 200);
        let v = json(&r);
        assert_eq!(v["path"], "/x?y=1", "{v}");
        assert_eq!(v["headers"]["host"], "example.com", "{v}");
    }
    let seen = app.requests();
    assert!(seen.iter().all(|s| s.target == "/x?y=1"), "{seen:?}");
}

/// RFC 9112 §3.2.2: a proxy receiving an absolute-form target MUST ignore the
/// received Host and replace it with the target's authority.
#[tokio::test]
async fn absolute_form_authority_overrides_host_header() {
    let (_app, proxy) = echo_proxy("").await;
    let r = send(
        &proxy,
        b"GET http://example.com/x HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let v = json(&r);
    assert_eq!(v["path"], "/x");
    assert_eq!(v["headers"]["host"], "example.com", "{v}");
    assert_eq!(v["headers"]["x-forwarded-host"], "example.com", "{v}");
}
