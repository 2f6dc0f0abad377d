//! Serving on: an app restarted on the same port, a second endpoint, a
//! second cluster worker.

use super::{
    assert_connection_terminated, assert_crashed, get, json, ok_json, post_order, SENT_NOT_RETRIED,
};
use support::node::NodeApp;
use support::*;

#[tokio::test]
async fn app_restarted_on_the_same_port_serves_again_through_the_same_proxy() {
    let mut first = NodeApp::start("app.js", &[("APP_NAME", "first")]).await;
    let proxy = Proxy::with_endpoints(&[first.addr], "").await;
    let (_, v) = ok_json(get(proxy.addr(), "/", "restart-1").await, 200, "before");
    assert_eq!(v["app"], "first");

    let r = post_order(proxy.addr(), "/orders/crash", "restart-order", "restart-2")
        .await
        .response();
    assert_connection_terminated(&r, "crashing POST");
    assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
    assert_crashed(&mut first).await;
    // The crash triggers a probe, which finds the port refusing.
    let endpoint = proxy.running.shared.snapshot.load().endpoints[0].clone();
    eventually(10, "lifeguard sees the app down", || endpoint.is_down()).await;

    // While the app is down: after the hold (2 s) for it to come back, 503
    // destination_unavailable, and said so (nothing was sent).
    let r = get(proxy.addr(), "/", "restart-down-get").await.response();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable")
    );
    let r = post_order(proxy.addr(), "/orders", "while-down", "restart-down-post")
        .await
        .response();
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(
        r.header("proxy-status"),
        Some("lifeguard; error=destination_unavailable")
    );
    assert_eq!(json(&r)["outcome_unknown"], false);

    let port = first.port().to_string();
    let second = NodeApp::start("app.js", &[("APP_NAME", "second"), ("PORT", &port)]).await;
    assert_eq!(second.addr, first.addr);
    for i in 0..5 {
        let (_, v) = ok_json(
            get(proxy.addr(), "/", &format!("restart-after-{i}")).await,
            200,
            "after restart",
        );
        assert_eq!(v["app"], "second");
        assert_eq!(v["pid"], second.pid);
    }
    let (_, v) = ok_json(
        post_order(proxy.addr(), "/orders", "after-restart", "restart-post").await,
        201,
        "POST after restart",
    );
    assert_eq!(v["app"], "second");
    assert_eq!(second.deliveries("after-restart"), 1);
    // The crashing order was delivered once, to the first process only; the
    // refused one never reached anyone.
    assert_eq!(first.deliveries("restart-order"), 1);
    assert_eq!(second.deliveries("restart-order"), 0);
    assert_eq!(
        first.deliveries("while-down") + second.deliveries("while-down"),
        0
    );
}

#[tokio::test]
async fn two_endpoints_gets_survive_a_crash_and_the_crashing_post_gets_503_once() {
    let mut a = NodeApp::start("app.js", &[("APP_NAME", "a")]).await;
    let b = NodeApp::start("app.js", &[("APP_NAME", "b")]).await;
    let proxy = Proxy::with_endpoints(&[a.addr, b.addr], "").await;
    let addr = proxy.addr();

    // Four slow GETs, sent one at a time so least-outstanding puts two on each.
    let mut slow = Vec::new();
    for i in 0..4 {
        let id = format!("two-slow-{i}");
        let h = tokio::spawn({
            let id = id.clone();
            async move { get(addr, "/slow?ms=1000", &id).await }
        });
        eventually(5, "an app received the slow GET", || {
            a.received(&id) + b.received(&id) == 1
        })
        .await;
        slow.push((id, h));
    }
    let on_a: Vec<&String> = slow
        .iter()
        .map(|(id, _)| id)
        .filter(|id| a.received(id) == 1)
        .collect();
    assert_eq!(on_a.len(), 2, "slow GETs on a: {on_a:?}");

    // Crash `a` with a POST. It may land on `b` first (which then just
    // records the order); every POST gets exactly one answer either way.
    let mut crash_id = None;
    for n in 0..6 {
        let order = format!("two-crash-{n}");
        let r = post_order(
            addr,
            "/orders/crash?only=a",
            &order,
            &format!("two-post-{n}"),
        )
        .await
        .response();
        if r.status == 201 {
            assert_eq!(json(&r)["app"], "b", "{r:?}");
            assert_eq!(b.deliveries(&order), 1);
            continue;
        }
        assert_connection_terminated(&r, "crashing POST");
        assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
        crash_id = Some(order);
        break;
    }
    let crash_id = crash_id.expect("a POST reached `a` within 6 tries");
    assert_crashed(&mut a).await;
    assert_eq!(a.deliveries(&crash_id), 1);
    assert_eq!(b.deliveries(&crash_id), 0, "the crashing POST was resent");

    // The GETs that were in flight on `a` were retried once on `b`.
    for (id, h) in slow {
        let (_, v) = ok_json(h.await.unwrap(), 200, &id);
        assert_eq!(v["app"], "b", "{id}: {v}");
        assert_eq!(b.received(&id), 1, "{id}");
    }

    // With `a` gone, everything goes to `b`: GETs and POSTs, each once.
    let gets = futures_util::future::join_all(
        (0..6).map(|i| async move { get(addr, "/", &format!("two-after-get-{i}")).await }),
    )
    .await;
    for g in gets {
        let (_, v) = ok_json(g, 200, "GET after the crash");
        assert_eq!(v["app"], "b");
    }
    let posts = futures_util::future::join_all((0..6).map(|i| async move {
        post_order(
            addr,
            "/orders",
            &format!("two-after-{i}"),
            &format!("two-after-post-{i}"),
        )
        .await
    }))
    .await;
    for (i, p) in posts.into_iter().enumerate() {
        let (_, v) = ok_json(p, 201, "POST after the crash");
        assert_eq!(v["app"], "b");
        assert_eq!(b.deliveries(&format!("two-after-{i}")), 1);
        assert_eq!(a.deliveries(&format!("two-after-{i}")), 0);
    }
}

#[tokio::test]
async fn cluster_worker_crash_gets_503_and_the_other_worker_keeps_serving() {
    let app = NodeApp::start("cluster.js", &[("WORKERS", "2")]).await;
    let proxy = Proxy::with_endpoints(&[app.addr], "").await;
    let r = post_order(
        proxy.addr(),
        "/orders/crash",
        "cluster-order",
        "cluster-crash",
    )
    .await
    .response();
    assert_connection_terminated(&r, "crashing POST");
    assert_eq!(r.header("proxy-status"), Some(SENT_NOT_RETRIED));
    eventually(10, "the primary saw a worker exit with code 1", || {
        app.events("worker")
            .iter()
            .any(|l| l.ends_with(" exited 1"))
    })
    .await;
    for i in 0..6 {
        ok_json(
            get(proxy.addr(), "/", &format!("cluster-after-{i}")).await,
            200,
            "GET after a worker crash",
        );
    }
    ok_json(
        post_order(proxy.addr(), "/orders", "cluster-after", "cluster-post").await,
        201,
        "POST after a worker crash",
    );
    assert_eq!(app.deliveries("cluster-order"), 1);
    assert_eq!(app.deliveries("cluster-after"), 1);
}
