//! `lifeguard webhook` over real HTTPS (127.0.0.1, a test CA), with real
//! `admission.k8s.io/v1` AdmissionReview JSON: the JSON Patch of an
//! annotated Pod, applied with an RFC 6902 implementation that is not ours
//! (json-patch), gives exactly what `lifeguard inject --config-annotation`
//! gives for the same Pod, and passes `kubernetes-validate --strict`; Pods
//! not opted in, injected already, or not Pods get no patch; malformed
//! reviews get a 400 and the server keeps serving; a rotated certificate is
//! presented from the next handshake on; SIGTERM stops it after the delay.

mod server;

use serde_json::{json, Value};
use server::Webhook;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::process::run_bounded;

const KUBE_VERSIONS: [&str; 2] = ["1.29.0", "1.33.0"];

fn tools() -> &'static Path {
    support::tools::k8s_tools()
}

/// A Pod as a ReplicaSet creates it and the API server hands it to
/// admission: generateName, owner, defaults filled in, a named port that
/// the readiness probe uses, an init container, a volume.
fn replicaset_pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "orders-7d9f8c6b5-",
            "namespace": "shop",
            "labels": {"app": "orders", "pod-template-hash": "7d9f8c6b5"},
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "orders-7d9f8c6b5",
                "uid": "5a1c3f0e-0d5b-4c47-9f4e-0b8d9c1e2f3a", "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "initContainers": [{
                "name": "migrate", "image": "registry.example.com/orders:1.4.2",
                "command": ["node", "migrate.js"],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "containers": [{
                "name": "orders", "image": "registry.example.com/orders:1.4.2",
                "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}],
                "env": [{"name": "PORT", "value": "3000"}],
                "readinessProbe": {
                    "httpGet": {"path": "/ready", "port": "http", "scheme": "HTTP"},
                    "periodSeconds": 5, "timeoutSeconds": 1, "successThreshold": 1,
                    "failureThreshold": 3
                },
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent"
            }],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "securityContext": {"runAsNonRoot": true},
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0
        }
    })
}

fn annotated() -> Value {
    replicaset_pod(json!({"lifeguard.io/inject": "enabled", "team": "payments"}))
}

/// An AdmissionReview for `object` of `kind` (core group unless it has a
/// `/`, e.g. "apps/Deployment").
fn review_for(uid: &str, kind: &str, operation: &str, object: &Value) -> Value {
    let (group, kind) = kind.split_once('/').unwrap_or(("", kind));
    let (version, resource) = match kind {
        "Pod" => ("v1", "pods"),
        "Deployment" => ("v1", "deployments"),
        _ => ("v1", "secrets"),
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "namespace": "shop",
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// The answer's response, checked to allow the request with `uid`.
fn allowed<'a>(answer: &'a Value, uid: &str) -> &'a Value {
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
    assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
    let r = &answer["response"];
    assert_eq!(r["uid"], uid, "{answer}");
    assert_eq!(r["allowed"], true, "{answer}");
    r
}

/// The JSON Patch of a response (none: `None`).
fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    use base64::Engine;
    let b64 = response.get("patch")?.as_str().expect("patch is a string");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is a JSON Patch"))
}

fn apply(object: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, patch).expect("the patch applies");
    out
}

/// `lifeguard inject args -f` of `object`: the first document, as JSON.
fn cli_inject(object: &Value, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.json");
    std::fs::write(&file, serde_json::to_vec_pretty(object).unwrap()).unwrap();
    let mut all = vec!["inject"];
    all.extend_from_slice(args);
    all.extend(["-f", file.to_str().unwrap()]);
    let (out, _) = run_bounded(&all, 20);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect();
    assert_eq!(docs.len(), 1, "{text}");
    docs.into_iter().next().unwrap()
}

/// kubernetes-validate --strict of one object, for each version.
fn validate(object: &Value) {
    // Named as the API server names it after admission.
    let mut object = object.clone();
    if object["metadata"].get("name").is_none() {
        let name = format!(
            "{}x7k2p",
            object["metadata"]["generateName"].as_str().unwrap()
        );
        object["metadata"]["name"] = json!(name);
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pod.yaml");
    std::fs::write(&file, serde_yaml::to_string(&object).unwrap()).unwrap();
    for v in KUBE_VERSIONS {
        let out = Command::new(tools().join("kubernetes-validate"))
            .args(["--strict", "-k", v])
            .arg(&file)
            .output()
            .expect("run kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubernetes-validate {v}:\n{text}");
        assert!(
            text.lines()
                .all(|l| l.trim().is_empty() || l.contains(" passed for resource ")),
            "{v}: {text}"
        );
        assert!(text.contains(" passed for resource "), "{v}: {text}");
    }
}

/// `lifeguard check` on the config carried in the pod's annotation.
fn check_config(pod: &Value) {
    let text = pod["metadata"]["annotations"]["lifeguard.io/config"]
        .as_str()
        .expect("lifeguard.io/config annotation");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, text).unwrap();
    let (out, _) = run_bounded(&["check", "--config", file.to_str().unwrap()], 20);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The log line of the review `uid` (the log is written by its own
/// thread: waits up to 5 s).
async fn review_log(w: &Webhook, uid: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(l) = w.json_logs().into_iter().find(|l| l["uid"] == uid) {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line for {uid}: {:?}",
            w.lines.get()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_annotated_pod_gets_the_patch_lifeguard_inject_gives() {
    let w = Webhook::start(&[]).await;
    let pod = annotated();
    let reply = w
        .review("/inject", &review_for("uid-1", "Pod", "CREATE", &pod))
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.alpn.as_deref(), Some(b"h2".as_slice()));
    let answer = reply.json();
    let response = allowed(&answer, "uid-1");
    let patch = patch_of(response).expect("a patch");
    let patched = apply(&pod, &patch);
    // The same function as `lifeguard inject`, to the value.
    assert_eq!(
        patched,
        cli_inject(&pod, &["--config-annotation"]),
        "{patch:?}"
    );
    validate(&patched);
    check_config(&patched);
    // What the pod got: lifeguard last among the containers, its config
    // from the annotation, the user's things kept.
    let spec = &patched["spec"];
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.last().unwrap()["name"], "lifeguard");
    assert_eq!(spec["initContainers"][0]["name"], "migrate");
    assert_eq!(
        spec["volumes"][1],
        json!({"name": "lifeguard-config", "downwardAPI": {"items": [{
            "path": "config.yaml",
            "fieldRef": {"fieldPath": "metadata.annotations['lifeguard.io/config']"}}]}})
    );
    assert_eq!(patched["metadata"]["annotations"]["team"], "payments");
    assert!(patched["metadata"]
        .get("name")
        .is_none_or(|n| n.as_str() == Some("")));
    // Only additions: nothing of the Pod is removed by the patch.
    let ops: Value = serde_json::to_value(&patch).unwrap();
    for op in ops.as_array().unwrap() {
        assert_eq!(op["op"], "add", "{op}");
    }
    let log = review_log(&w, "uid-1").await;
    assert_eq!(log["outcome"], "injected", "{log}");
    assert_eq!(log["object"], "shop/orders-7d9f8c6b5-", "{log}");

    // Injected already (a second webhook, or a re-sent review): no patch.
    let reply = w
        .review("/inject", &review_for("uid-2", "Pod", "CREATE", &patched))
        .await;
    let answer = reply.json();
    assert!(patch_of(allowed(&answer, "uid-2")).is_none(), "{answer}");
    assert_eq!(review_log(&w, "uid-2").await["outcome"], "already_injected");
    // Through the namespace path too.
    let reply = w
        .review(
            "/inject-namespace",
            &review_for("uid-3", "Pod", "CREATE", &patched),
        )
        .await;
    let answer = reply.json();
    assert!(patch_of(allowed(&answer, "uid-3")).is_none(), "{answer}");
}

#[tokio::test]
async fn native_mode_puts_lifeguard_among_the_init_containers() {
    let w = Webhook::start(&[
        "--mode",
        "native",
        "--image",
        "registry.example.com/lifeguard:0.1.0",
    ])
    .await;
    let pod = annotated();
    let reply = w
        .review("/inject", &review_for("uid-n", "Pod", "CREATE", &pod))
        .await;
    let answer = reply.json();
    let patched = apply(&pod, &patch_of(allowed(&answer, "uid-n")).expect("a patch"));
    assert_eq!(
        patched,
        cli_inject(
            &pod,
            &[
                "--config-annotation",
                "--mode",
                "native",
                "--image",
                "registry.example.com/lifeguard:0.1.0"
            ]
        )
    );
    let inits = patched["spec"]["initContainers"].as_array().unwrap();
    assert_eq!(inits.len(), 2);
    assert_eq!(inits[1]["name"], "lifeguard");
    assert_eq!(inits[1]["restartPolicy"], "Always");
    assert_eq!(inits[1]["image"], "registry.example.com/lifeguard:0.1.0");
    validate(&patched);
    // A Job's pod runs to completion: in native mode it is injected too.
    let mut job_pod = annotated();
    job_pod["spec"]["restartPolicy"] = json!("Never");
    let reply = w
        .review("/inject", &review_for("uid-j", "Pod", "CREATE", &job_pod))
        .await;
    assert!(patch_of(allowed(&reply.json(), "uid-j")).is_some());
}

#[tokio::test]
async fn pods_not_opted_in_and_other_objects_pass_unchanged() {
    let w = Webhook::start(&[]).await;
    let plain = replicaset_pod(json!({"team": "payments"}));
    // Not annotated: no patch on /inject.
    let reply = w
        .review("/inject", &review_for("u-plain", "Pod", "CREATE", &plain))
        .await;
    let answer = reply.json();
    let r = allowed(&answer, "u-plain");
    assert!(
        patch_of(r).is_none() && r.get("warnings").is_none(),
        "{answer}"
    );
    assert_eq!(review_log(&w, "u-plain").await["outcome"], "not_opted_in");
    // The same Pod in an opted-in namespace (/inject-namespace): injected.
    let reply = w
        .review(
            "/inject-namespace",
            &review_for("u-ns", "Pod", "CREATE", &plain),
        )
        .await;
    let answer = reply.json();
    let patched = apply(
        &plain,
        &patch_of(allowed(&answer, "u-ns")).expect("a patch"),
    );
    assert_eq!(
        patched,
        cli_inject(&plain, &["--config-annotation", "--all"])
    );
    // ...unless the Pod opts out.
    let out = replicaset_pod(json!({"lifeguard.io/inject": "disabled"}));
    let reply = w
        .review(
            "/inject-namespace",
            &review_for("u-out", "Pod", "CREATE", &out),
        )
        .await;
    assert!(patch_of(allowed(&reply.json(), "u-out")).is_none());
    // Not a Pod, or not a CREATE: allowed, untouched.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "orders", "annotations": {"lifeguard.io/inject": "enabled"}},
        "spec": {"template": annotated()}});
    for (uid, kind, op, object) in [
        ("u-deploy", "apps/Deployment", "CREATE", &deployment),
        ("u-secret", "Secret", "CREATE", &json!({"kind": "Secret"})),
        ("u-update", "Pod", "UPDATE", &annotated()),
    ] {
        let reply = w
            .review("/inject-namespace", &review_for(uid, kind, op, object))
            .await;
        let answer = reply.json();
        let r = allowed(&answer, uid);
        assert!(patch_of(r).is_none(), "{uid}: {answer}");
        assert_eq!(review_log(&w, uid).await["outcome"], "ignored", "{uid}");
    }
    // Opted in but not injectable (a classic sidecar would keep a Pod that
    // runs to completion from ever finishing): allowed, unchanged, said so.
    let mut job_pod = annotated();
    job_pod["spec"]["restartPolicy"] = json!("Never");
    let reply = w
        .review("/inject", &review_for("u-job", "Pod", "CREATE", &job_pod))
        .await;
    let answer = reply.json();
    let r = allowed(&answer, "u-job");
    assert!(patch_of(r).is_none());
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("runs to completion"),
        "{answer}"
    );
    let log = review_log(&w, "u-job").await;
    assert_eq!(log["outcome"], "skipped");
    assert_eq!(log["level"], "WARN", "{log}");
}

#[tokio::test]
async fn malformed_reviews_are_answered_400_and_the_webhook_keeps_serving() {
    let w = Webhook::start(&[]).await;
    for (body, expected) in [
        (b"{\"apiVersion\":".to_vec(), "not JSON"),
        (b"\xff\xfe".to_vec(), "not JSON"),
        (
            serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Pod"})).unwrap(),
            "not an admission.k8s.io/v1 AdmissionReview",
        ),
        (
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}})).unwrap(),
            "found apiVersion admission.k8s.io/v1beta1",
        ),
        (
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"object": annotated()}})).unwrap(),
            "no request.uid",
        ),
    ] {
        for alpn in [&[b"h2".as_slice()][..], &[b"http/1.1".as_slice()][..]] {
            let reply = w.request(alpn, "POST", "/inject", body.clone()).await.unwrap();
            let text = String::from_utf8_lossy(&reply.body);
            assert_eq!(reply.status, 400, "{text}");
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }
    // A review whose object is no Pod at all: still allowed, with a warning
    // and an error line (lifeguard never blocks a pod).
    let broken = review_for("u-broken", "Pod", "CREATE", &json!("not a pod"));
    let reply = w.review("/inject", &broken).await;
    assert_eq!(reply.status, 200);
    let answer = reply.json();
    let r = allowed(&answer, "u-broken");
    assert!(patch_of(r).is_none());
    assert!(
        r["warnings"][0].as_str().unwrap().contains("not injected"),
        "{answer}"
    );
    let log = review_log(&w, "u-broken").await;
    assert_eq!(
        (log["outcome"].as_str(), log["level"].as_str()),
        (Some("failed"), Some("ERROR")),
        "{log}"
    );
    // Oversized bodies, wrong methods and paths.
    let reply = w
        .request(&[b"h2"], "POST", "/inject", vec![b' '; 5 << 20])
        .await
        .unwrap();
    assert_eq!(reply.status, 413);
    let reply = w
        .request(&[b"http/1.1"], "GET", "/inject", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 405);
    let reply = w
        .request(&[b"http/1.1"], "POST", "/mutate", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 404);
    // Still serving, still the same process.
    let reply = w
        .request(&[b"http/1.1"], "GET", "/healthz", Vec::new())
        .await
        .unwrap();
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, b"ok\n".as_slice())
    );
    let reply = w
        .review(
            "/inject",
            &review_for("u-after", "Pod", "CREATE", &annotated()),
        )
        .await;
    assert!(patch_of(allowed(&reply.json(), "u-after")).is_some());
    let mut w = w;
    assert!(w.child.try_wait().unwrap().is_none(), "the webhook exited");
    let malformed = w
        .json_logs()
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("malformed admission review")
        })
        .count();
    assert_eq!(malformed, 10);
}

/// Waits (up to 5 s) for a handshake that presents `der`.
async fn presented(w: &Webhook, der: &[u8]) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let reply = w
            .request(&[b"h2"], "GET", "/healthz", Vec::new())
            .await
            .unwrap();
        assert_eq!(reply.status, 200);
        if reply.server_cert == der {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_rotated_certificate_is_presented_from_the_next_handshake_on() {
    let w = Webhook::start(&[]).await;
    let first = w
        .request(&[b"h2"], "GET", "/healthz", Vec::new())
        .await
        .unwrap();
    // As cert-manager and the kubelet do: the Secret's files replaced.
    let next = w.ca.leaf();
    w.rotate(&next.cert_pem, &next.key_pem);
    assert!(
        presented(&w, &next.der).await,
        "new certificate never presented: {:?}",
        w.lines.get()
    );
    assert_ne!(first.server_cert, next.der);
    let reloaded = |w: &Webhook| {
        w.json_logs()
            .iter()
            .filter(|l| l["message"] == "webhook certificate reloaded")
            .count()
    };
    assert_eq!(reloaded(&w), 1);
    // A bad pair (key of another certificate): rejected once, the served
    // certificate kept.
    let other = w.ca.leaf();
    w.rotate(&next.cert_pem, &other.key_pem);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let rejected = |w: &Webhook| {
        w.json_logs()
            .iter()
            .filter(|l| {
                l["message"] == "new webhook certificate rejected; the old one is still served"
            })
            .count()
    };
    while rejected(&w) == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rejected(&w), 1, "{:?}", w.lines.get());
    let reply = w
        .request(&[b"h2"], "GET", "/healthz", Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.server_cert, next.der);
    // Fixed: the new pair is served.
    w.rotate(&other.cert_pem, &other.key_pem);
    assert!(presented(&w, &other.der).await);
    assert_eq!(reloaded(&w), 2);
}

#[tokio::test]
async fn sigterm_stops_the_webhook_after_the_delay() {
    let mut w = Webhook::start(&["--shutdown-delay", "700ms"]).await;
    support::child::kill(w.child.id().unwrap(), libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Still answering during the delay.
    let reply = w
        .review(
            "/inject",
            &review_for("u-late", "Pod", "CREATE", &annotated()),
        )
        .await;
    assert!(patch_of(allowed(&reply.json(), "u-late")).is_some());
    let status = support::child::wait_exit(&mut w.child, 5)
        .await
        .expect("exited");
    assert!(status.success(), "{status}");
}

#[test]
fn it_refuses_to_start_without_a_usable_certificate_or_with_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.crt");
    let m = missing.to_str().unwrap();
    let (out, _) = run_bounded(
        &[
            "webhook",
            "--listen",
            "127.0.0.1:0",
            "--cert-file",
            m,
            "--key-file",
            m,
        ],
        10,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
    let (out, _) = run_bounded(
        &[
            "webhook",
            "--cert-file",
            m,
            "--key-file",
            m,
            "--drain-delay",
            "30",
        ],
        10,
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--drain-delay"));
    let (out, _) = run_bounded(
        &[
            "webhook",
            "--cert-file",
            m,
            "--key-file",
            m,
            "--listen",
            "nowhere",
        ],
        10,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_pods_app_port_annotation_picks_the_app() {
    let w = Webhook::start(&[]).await;
    // An exporter first: without the annotation lifeguard would take its port.
    let mut pod = replicaset_pod(json!({
        "lifeguard.io/inject": "enabled",
        "lifeguard.io/app-port": "http"
    }));
    let app = pod["spec"]["containers"][0].clone();
    pod["spec"]["containers"] = json!([
        {"name": "exporter", "image": "exporter:1",
         "ports": [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}]},
        app
    ]);
    let reply = w
        .review("/inject", &review_for("u-port", "Pod", "CREATE", &pod))
        .await;
    let answer = reply.json();
    let patched = apply(
        &pod,
        &patch_of(allowed(&answer, "u-port")).expect("a patch"),
    );
    assert_eq!(patched, cli_inject(&pod, &["--config-annotation"]));
    validate(&patched);
    check_config(&patched);
    let config: serde_yaml::Value = serde_yaml::from_str(
        patched["metadata"]["annotations"]["lifeguard.io/config"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        config["app"]["endpoints"][0].as_str(),
        Some("127.0.0.1:3000")
    );
    // The app's port renamed, the exporter's untouched.
    assert_eq!(
        patched["spec"]["containers"][1]["ports"][0]["name"],
        "app-http"
    );
    assert_eq!(
        patched["spec"]["containers"][0]["ports"][0]["name"],
        "metrics"
    );
    // A name no container has: not injected, said so.
    let mut wrong = pod.clone();
    wrong["metadata"]["annotations"]["lifeguard.io/app-port"] = json!("web");
    let reply = w
        .review("/inject", &review_for("u-wrong", "Pod", "CREATE", &wrong))
        .await;
    let answer = reply.json();
    let r = allowed(&answer, "u-wrong");
    assert!(patch_of(r).is_none());
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no container has a port named web"),
        "{answer}"
    );
}
