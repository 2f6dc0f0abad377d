//! HTTP/2 with prior knowledge (h2c).

use super::{echo_proxy, is_generated_id, App};
use support::raw::connect;
use support::upstream::full;
use support::*;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::timeout;

async fn h2_client(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let io = TokioIo::new(connect(addr).await);
    let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2c handshake");
    tokio::spawn(conn);
    sender
}

async fn h2_json(resp: Response<Incoming>) -> serde_json::Value {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&body)))
}

#[tokio::test]
async fn h2c_prior_knowledge_get_and_post() {
    let (app, proxy) = echo_proxy("").await;
    let mut h2 = h2_client(proxy.addr()).await;

    let resp = h2
        .send_request(
            Request::get("http://example.com/h2?x=1")
                .header("x-kept", "yes")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .expect("h2 GET");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert!(is_generated_id(
        resp.headers()["x-request-id"].to_str().unwrap()
    ));
    let v = h2_json(resp).await;
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/h2?x=1");
    assert_eq!(v["headers"]["host"], "example.com");
    assert_eq!(v["headers"]["x-forwarded-host"], "example.com");
    assert_eq!(v["headers"]["x-kept"], "yes");

    let resp = h2
        .send_request(
            Request::post("http://example.com/submit")
                .body(Full::new(Bytes::from_static(b"hello over h2")))
                .unwrap(),
        )
        .await
        .expect("h2 POST");
    assert_eq!(resp.status(), 200);
    let v = h2_json(resp).await;
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body_len"], 13);
    assert_eq!(v["body_ok"], true);
    assert_eq!(app.hits(), 2);
}

#[tokio::test]
async fn h2c_streams_are_concurrent() {
    const N: usize = 8;
    // Each request waits until all N are at the app at once: that only
    // happens if the streams are forwarded concurrently.
    let barrier = Arc::new(tokio::sync::Barrier::new(N));
    let b = barrier.clone();
    let app = App::start(move |req: Request<Incoming>| {
        let b = b.clone();
        async move {
            b.wait().await;
            Response::new(full(req.uri().path().to_owned()))
        }
    })
    .await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let h2 = h2_client(proxy.addr()).await;
    let mut tasks = JoinSet::new();
    for i in 0..N {
        let mut h2 = h2.clone();
        tasks.spawn(async move {
            let resp = h2
                .send_request(
                    Request::get(format!("http://app/stream/{i}"))
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await
                .expect("h2 request");
            assert_eq!(resp.status(), 200);
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, format!("/stream/{i}").as_bytes());
        });
    }
    timeout(Duration::from_secs(10), async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await
    .expect("concurrent h2 streams did not all reach the app together");
    assert_eq!(app.hits(), N);
}
