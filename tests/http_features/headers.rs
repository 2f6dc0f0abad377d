//! Header rules: hop-by-hop headers removed both ways, forwarding headers
//! and the request id.

use super::{echo_proxy, is_generated_id, json, send, App};
use support::upstream::full;
use support::*;

use http::Response;

#[tokio::test]
async fn hop_by_hop_headers_are_removed_towards_the_app() {
    let (_app, proxy) = echo_proxy("").await;
    let r = send(
        &proxy,
        b"GET /h?q=1 HTTP/1.1\r\nHost: app.example\r\nConnection: keep-alive, X-Foo\r\n\
          X-Foo: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: gzip\r\n\
          Upgrade: h2c\r\nX-Kept: yes\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body_text());
    let h = &json(&r)["headers"];
    for gone in [
        "connection",
        "x-foo",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the app: {h}");
    }
    assert_eq!(h["x-kept"], "yes");
    assert_eq!(json(&r)["path"], "/h?q=1");

    // `TE: trailers` is the one TE value that is forwarded.
    let r = send(
        &proxy,
        b"GET /t HTTP/1.1\r\nHost: app\r\nConnection: TE\r\nTE: trailers\r\n\r\n",
    )
    .await;
    let h = &json(&r)["headers"];
    assert_eq!(h["te"], "trailers", "{h}");
    assert!(h.get("connection").is_none(), "{h}");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_towards_the_client() {
    let app = App::start(|_req| async {
        Response::builder()
            .header("connection", "x-bar")
            .header("x-bar", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-resp", "kept")
            .body(full("ok"))
            .unwrap()
    })
    .await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let r = send(&proxy, b"GET / HTTP/1.1\r\nHost: app\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-resp"), Some("kept"));
    assert_eq!(r.header("x-bar"), None, "{:?}", r.headers);
    assert_eq!(r.header("keep-alive"), None, "{:?}", r.headers);
    assert_eq!(r.body_text(), "ok");
}

#[tokio::test]
async fn forwarding_headers_and_request_id() {
    let (_app, proxy) = echo_proxy("").await;

    // X-Forwarded-For is appended to; Proto and Host are set by lifeguard
    // (client-supplied values are replaced); an id is generated and echoed.
    let r = send(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: shop.example:8443\r\nX-Forwarded-For: 1.2.3.4\r\n\
          X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 200);
    let h = &json(&r)["headers"];
    assert_eq!(h["x-forwarded-for"], "1.2.3.4, 127.0.0.1", "{h}");
    assert_eq!(h["x-forwarded-proto"], "http", "{h}");
    assert_eq!(h["x-forwarded-host"], "shop.example:8443", "{h}");
    assert_eq!(h["host"], "shop.example:8443", "{h}");
    let generated = h["x-request-id"]
        .as_str()
        .expect("app got an id")
        .to_owned();
    assert!(is_generated_id(&generated), "{generated:?}");
    assert_eq!(r.header("x-request-id"), Some(generated.as_str()));

    // Without X-Forwarded-For, it is the peer alone; ids differ per request.
    let r = send(&proxy, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    let h = &json(&r)["headers"];
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-host"], "a");
    let second = h["x-request-id"].as_str().unwrap();
    assert!(is_generated_id(second));
    assert_ne!(second, generated);
    assert_eq!(r.header("x-request-id"), Some(second));

    // A client's id is passed through and echoed.
    let r = send(
        &proxy,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: client-id-42\r\n\r\n",
    )
    .await;
    assert_eq!(json(&r)["headers"]["x-request-id"], "client-id-42");
    assert_eq!(r.header("x-request-id"), Some("client-id-42"));

    // One too long to log (over 200 bytes) is replaced.
    let long = "i".repeat(201);
    let r = raw_exchange(
        proxy.addr(),
        format!("GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: {long}\r\n\r\n").as_bytes(),
        5,
    )
    .await
    .response();
    let replaced = json(&r)["headers"]["x-request-id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(is_generated_id(&replaced), "{replaced:?}");
    assert_eq!(r.header("x-request-id"), Some(replaced.as_str()));
}
