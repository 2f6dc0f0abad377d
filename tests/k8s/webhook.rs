//! The chart's admission webhook part (`webhook.enabled`), in both
//! certificate modes: rendered, validated with kubernetes-validate --strict
//! (cert-manager's Certificate and Issuer have no schema there: checked
//! structurally), its wiring checked (the MutatingWebhookConfiguration
//! reaches the webhook's Service and port, excludes its own namespace, never
//! blocks a Pod; the chart's Services do not select the webhook's pods), and
//! the generated certificate used for real: the rendered Deployment's
//! arguments run `lifeguard webhook` with the rendered Secret, and a client
//! that trusts only the rendered caBundle and names the Service as the API
//! server does gets a patched Pod back. Last, the kubelet simulation on a
//! user's pod as the real webhook patched it.

use crate::render::{self, seq, Rendered};
use base64::Engine;
use serde_yaml::Value;
use support::child::{spawn_piped, wait_line, Lines};

const WEBHOOK: &str = "demo-lifeguard-webhook";
const CERT_MANAGER_KINDS: [&str; 2] = ["Certificate", "Issuer"];

/// kubernetes-validate --strict of a render; only cert-manager's kinds may
/// lack a schema.
fn validate(r: &Rendered) {
    for (v, text) in render::kubernetes_validate(&r.docs, &r.name) {
        let mut passed = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if line.contains(" passed for resource ") {
                passed += 1;
            } else {
                assert!(
                    CERT_MANAGER_KINDS
                        .iter()
                        .any(|k| line.contains(&format!("Couldn't find schema for kind {k} "))),
                    "{}: {v}: {line}",
                    r.name
                );
            }
        }
        let expected = r
            .docs
            .iter()
            .filter(|d| !CERT_MANAGER_KINDS.contains(&d["kind"].as_str().unwrap_or("")))
            .count();
        assert_eq!(passed, expected, "{}: {v}: {text}", r.name);
    }
}

fn labels_selected_by(selector: &Value, labels: &Value) -> bool {
    render::selects(selector, labels)
}

/// The checks both certificate modes share; returns the webhook entries.
fn check_wiring(r: &Rendered) -> Vec<Value> {
    let ctx = &r.name;
    let deployment = r.named("Deployment", WEBHOOK);
    let pod = &deployment["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    let container = &pod["spec"]["containers"][0];
    let service = r.named("Service", WEBHOOK);
    assert!(
        labels_selected_by(&service["spec"]["selector"], pod_labels),
        "{ctx}"
    );
    assert!(labels_selected_by(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    // The chart's own Services and the app's Deployment never take the
    // webhook's pods, nor the webhook's Service the app's.
    for svc in r.of_kind("Service") {
        if svc["metadata"]["name"].as_str() != Some(WEBHOOK) {
            assert!(
                !labels_selected_by(&svc["spec"]["selector"], pod_labels),
                "{ctx}: {svc:?}"
            );
        }
    }
    for d in r.of_kind("Deployment") {
        if d["metadata"]["name"].as_str() != Some(WEBHOOK) {
            let app_labels = &d["spec"]["template"]["metadata"]["labels"];
            assert!(
                !labels_selected_by(&service["spec"]["selector"], app_labels),
                "{ctx}"
            );
        }
    }
    // Service 443 → the container's https port, probed over HTTPS.
    let port = &seq(&service["spec"]["ports"])[0];
    assert_eq!(port["port"].as_u64(), Some(443));
    let target = render::resolve_port(container, &port["targetPort"]).expect("target port");
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some("/healthz"), "{ctx}: {probe}");
        assert_eq!(get["scheme"].as_str(), Some("HTTPS"), "{ctx}: {probe}");
        assert_eq!(render::resolve_port(container, &get["port"]), Some(target));
    }
    let args: Vec<&str> = seq(&container["args"])
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(args[0], "webhook", "{ctx}");
    assert!(
        args.contains(&format!("--listen=:{target}").as_str()),
        "{ctx}: {args:?}"
    );
    // The certificate files come from the Secret the certificate lands in.
    let secret_name = seq(&pod["spec"]["volumes"])
        .into_iter()
        .find_map(|v| v["secret"]["secretName"].as_str())
        .expect("certificate volume");
    assert_eq!(secret_name, format!("{WEBHOOK}-tls"));
    assert!(pod["spec"]["automountServiceAccountToken"] == Value::Bool(false));

    let mwc = r.one("MutatingWebhookConfiguration");
    let entries: Vec<Value> = seq(&mwc["webhooks"]).into_iter().cloned().collect();
    assert_eq!(entries.len(), 2, "{ctx}");
    let mut paths = Vec::new();
    for e in &entries {
        let name = e["name"].as_str().unwrap();
        assert_eq!(
            e["admissionReviewVersions"],
            serde_yaml::from_str::<Value>("[v1]").unwrap()
        );
        assert_eq!(e["sideEffects"].as_str(), Some("None"), "{name}");
        assert_eq!(e["failurePolicy"].as_str(), Some("Ignore"), "{name}");
        let svc = &e["clientConfig"]["service"];
        assert_eq!(svc["name"].as_str(), Some(WEBHOOK), "{name}");
        assert_eq!(svc["namespace"].as_str(), Some("demo"), "{name}");
        assert_eq!(svc["port"].as_u64(), Some(443), "{name}");
        paths.push(svc["path"].as_str().unwrap().to_owned());
        let rule = &seq(&e["rules"])[0];
        assert_eq!(rule["operations"][0].as_str(), Some("CREATE"));
        assert_eq!(rule["resources"][0].as_str(), Some("pods"));
        assert_eq!(rule["apiGroups"][0].as_str(), Some(""));
        // The webhook's own namespace is never sent to it (its pods could
        // not start while it is down, were it a blocking webhook).
        let excluded = seq(&e["namespaceSelector"]["matchExpressions"])
            .into_iter()
            .any(|m| {
                m["key"].as_str() == Some("kubernetes.io/metadata.name")
                    && m["operator"].as_str() == Some("NotIn")
                    && seq(&m["values"]).iter().any(|v| v.as_str() == Some("demo"))
            });
        assert!(excluded, "{name}: own namespace not excluded");
        assert!(e["objectSelector"].is_mapping(), "{name}");
    }
    assert_eq!(paths, ["/inject", "/inject-namespace"], "{ctx}");
    // The namespace entry only for labelled namespaces; the pod entry not
    // for them (each Pod reviewed by one entry).
    let label_op = |e: &Value| {
        seq(&e["namespaceSelector"]["matchExpressions"])
            .into_iter()
            .find(|m| m["key"].as_str() == Some("lifeguard.io/inject"))
            .map(|m| m["operator"].as_str().unwrap().to_owned())
    };
    assert_eq!(label_op(&entries[0]).as_deref(), Some("NotIn"));
    assert_eq!(label_op(&entries[1]).as_deref(), Some("In"));
    entries
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("base64 string"))
        .expect("base64")
}

#[test]
fn webhook_renders_with_a_certificate_generated_by_the_chart() {
    let r = render::helm_template(None, &["webhook.enabled=true"]);
    validate(&r);
    let entries = check_wiring(&r);
    let secret = r.named("Secret", &format!("{WEBHOOK}-tls"));
    assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
    for e in &entries {
        assert_eq!(e["clientConfig"]["caBundle"], secret["data"]["ca.crt"]);
    }
    assert!(r.of_kind("Certificate").is_empty() && r.of_kind("Issuer").is_empty());
    // Also without the demo app, and in native mode.
    let r = render::helm_template(
        None,
        &[
            "webhook.enabled=true",
            "app.enabled=false",
            "sidecar.mode=native",
        ],
    );
    validate(&r);
    check_wiring(&r);
    assert_eq!(r.of_kind("Deployment").len(), 1);
}

#[test]
fn webhook_renders_with_cert_manager() {
    let r = render::helm_template(
        None,
        &["webhook.enabled=true", "webhook.certManager.enabled=true"],
    );
    validate(&r);
    let entries = check_wiring(&r);
    let mwc = r.one("MutatingWebhookConfiguration");
    let cert = r.one("Certificate");
    assert_eq!(
        mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].as_str(),
        Some(format!("demo/{}", cert["metadata"]["name"].as_str().unwrap()).as_str())
    );
    for e in &entries {
        assert!(
            e["clientConfig"].get("caBundle").is_none(),
            "cainjector fills it"
        );
    }
    assert_eq!(cert["apiVersion"].as_str(), Some("cert-manager.io/v1"));
    assert_eq!(
        cert["spec"]["secretName"].as_str(),
        Some(format!("{WEBHOOK}-tls").as_str())
    );
    let dns: Vec<&str> = seq(&cert["spec"]["dnsNames"])
        .iter()
        .filter_map(|d| d.as_str())
        .collect();
    assert!(
        dns.contains(&format!("{WEBHOOK}.demo.svc").as_str()),
        "{dns:?}"
    );
    let issuer = r.one("Issuer");
    assert!(issuer["spec"]["selfSigned"].is_mapping());
    assert_eq!(
        cert["spec"]["issuerRef"]["name"],
        issuer["metadata"]["name"]
    );
    assert!(r
        .of_kind("Secret")
        .iter()
        .all(|s| s["metadata"]["name"].as_str() != Some(&format!("{WEBHOOK}-tls"))));
    // An issuer of the cluster's: no Issuer of ours.
    let r = render::helm_template(
        None,
        &[
            "webhook.enabled=true",
            "webhook.certManager.enabled=true",
            "webhook.certManager.issuerRef.name=corp-ca",
            "webhook.certManager.issuerRef.kind=ClusterIssuer",
        ],
    );
    validate(&r);
    assert!(r.of_kind("Issuer").is_empty());
    let issuer_ref = &r.one("Certificate")["spec"]["issuerRef"];
    assert_eq!(issuer_ref["name"].as_str(), Some("corp-ca"));
    assert_eq!(issuer_ref["kind"].as_str(), Some("ClusterIssuer"));
}

#[test]
fn chart_refuses_inconsistent_webhook_values() {
    for (sets, expected) in [
        (
            &[
                "webhook.enabled=true",
                "webhook.certManager.enabled=true",
                "webhook.certManager.issuerRef.kind=ClusterIssuer",
            ][..],
            "webhook.certManager.issuerRef: set name",
        ),
        (
            &["webhook.enabled=true", "webhook.timeoutSeconds=31"][..],
            "timeoutSeconds",
        ),
        (
            &["webhook.enabled=true", "webhook.replicaCount=0"][..],
            "replicaCount",
        ),
        (
            &[
                "webhook.enabled=true",
                "webhook.certManager.issuerRef.kind=Vault",
            ][..],
            "kind",
        ),
        (
            &["webhook.enabled=true", "lifeguard.drain.delaySeconds=30"][..],
            "must be below lifeguard.drain.timeoutSeconds",
        ),
    ] {
        let err = render::helm_template_error(sets, &[]);
        assert!(err.contains(expected), "{sets:?}: {err}");
    }
    let err = render::helm_template_error(
        &[
            "webhook.enabled=true",
            "app.enabled=false",
            "sidecar.mode=native",
        ],
        &["--kube-version", "1.28.0"],
    );
    assert!(
        err.contains("webhook.enabled with sidecar.mode=native"),
        "{err}"
    );
    // Off by default: nothing of it rendered.
    let r = render::helm_template(None, &[]);
    assert!(r.of_kind("MutatingWebhookConfiguration").is_empty());
    assert!(r.docs.iter().all(|d| !d["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .contains("webhook")));
}

/// A client trusting only `ca_pem`, naming `server_name` (as the API server
/// names a webhook Service: `<service>.<namespace>.svc`).
fn client_for(ca_pem: &[u8]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

async fn post(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
    server_name: &str,
    path: &str,
    body: Vec<u8>,
) -> serde_json::Value {
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    let tls = connector
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake as {server_name}: {e}"));
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("https://{server_name}{path}?timeout=5s"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test]
async fn the_rendered_webhook_serves_the_rendered_certificate_to_the_api_servers_name() {
    let r = tokio::task::spawn_blocking(|| render::helm_template(None, &["webhook.enabled=true"]))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret = r.named("Secret", &format!("{WEBHOOK}-tls"));
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, b64(&secret["data"]["tls.crt"])).unwrap();
    std::fs::write(&key, b64(&secret["data"]["tls.key"])).unwrap();
    // The Deployment's own arguments, with the files and a local port.
    let container = &r.named("Deployment", WEBHOOK)["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = seq(&container["args"])
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if a.starts_with("--cert-file=") {
                format!("--cert-file={}", cert.display())
            } else if a.starts_with("--key-file=") {
                format!("--key-file={}", key.display())
            } else if a.starts_with("--listen=") {
                "--listen=127.0.0.1:0".to_owned()
            } else {
                a.to_owned()
            }
        })
        .collect();
    let mut cmd = tokio::process::Command::new(support::process::binary());
    cmd.args(&args);
    let mut child = spawn_piped(&mut cmd, "lifeguard webhook");
    let lines = Lines::of_child(&mut child);
    let addr: std::net::SocketAddr = wait_line(&mut child, &lines, "webhook start", 10, |l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["message"] == "lifeguard webhook started")
            .then(|| v["listen"].as_str()?.parse().ok())
            .flatten()
    })
    .await;
    let mwc = r.one("MutatingWebhookConfiguration");
    for entry in seq(&mwc["webhooks"]) {
        let ca = b64(&entry["clientConfig"]["caBundle"]);
        let svc = &entry["clientConfig"]["service"];
        let server_name = format!(
            "{}.{}.svc",
            svc["name"].as_str().unwrap(),
            svc["namespace"].as_str().unwrap()
        );
        let pod = serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "api-", "namespace": "shop",
                         "annotations": {"lifeguard.io/inject": "enabled"}},
            "spec": {"containers": [{"name": "api", "image": "api:1",
                     "ports": [{"name": "http", "containerPort": 3000}]}]}
        });
        let review = serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "chart-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                        "resource": {"group": "", "version": "v1", "resource": "pods"},
                        "namespace": "shop", "operation": "CREATE", "object": pod}
        });
        let answer = post(
            &client_for(&ca),
            addr,
            &server_name,
            svc["path"].as_str().unwrap(),
            serde_json::to_vec(&review).unwrap(),
        )
        .await;
        let response = &answer["response"];
        assert_eq!(response["allowed"], true, "{answer}");
        let patch = base64::engine::general_purpose::STANDARD
            .decode(response["patch"].as_str().expect("a patch"))
            .unwrap();
        let patch: serde_json::Value = serde_json::from_slice(&patch).unwrap();
        let containers = patch
            .as_array()
            .unwrap()
            .iter()
            .find(|op| op["path"] == "/spec/containers")
            .expect("containers replaced");
        // The chart's sidecar settings reached the injection.
        let lifeguard = &containers["value"][1];
        assert_eq!(lifeguard["image"], "lifeguard:0.1.0", "{lifeguard}");
        assert_eq!(lifeguard["ports"][0]["containerPort"], 8080);
        assert_eq!(lifeguard["ports"][1]["containerPort"], 9901);
    }
}

/// One annotation, the whole promise: the user's Deployment
/// (tests/k8s/user-app.yaml, its Service targeting the port by name as the
/// webhook needs) with its pod as the real `lifeguard webhook` patched it
/// (config from the pod's annotation through the downwardAPI volume), run by
/// the kubelet simulation: no request may fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_of_a_webhook_injected_pod_loses_no_request() {
    let text = std::fs::read_to_string(render::repo().join("tests/k8s/user-app.yaml")).unwrap();
    let mut r = Rendered::parse("webhook-injected user-app", &text);
    let ca = support::tls::TestCa::new();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    ca.leaf().write(&cert, &key);
    let mut cmd = tokio::process::Command::new(support::process::binary());
    cmd.args([
        "webhook",
        "--listen",
        "127.0.0.1:0",
        "--drain-delay",
        "2",
        "--drain-timeout",
        "10",
    ])
    .arg("--cert-file")
    .arg(&cert)
    .arg("--key-file")
    .arg(&key);
    let mut child = spawn_piped(&mut cmd, "lifeguard webhook");
    let lines = Lines::of_child(&mut child);
    let addr: std::net::SocketAddr = wait_line(&mut child, &lines, "webhook start", 10, |l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["message"] == "lifeguard webhook started")
            .then(|| v["listen"].as_str()?.parse().ok())
            .flatten()
    })
    .await;

    // The Pod the ReplicaSet would create from the template.
    let deployment = r.one("Deployment").clone();
    let template: serde_json::Value =
        serde_json::to_value(&deployment["spec"]["template"]).unwrap();
    let mut pod = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": template["metadata"], "spec": template["spec"]});
    pod["metadata"]["generateName"] = serde_json::json!("storefront-5d8c7b9f4-");
    pod["metadata"]["namespace"] = serde_json::json!("shop");
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "sim-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "shop", "operation": "CREATE", "object": pod}
    });
    let answer = post(
        &ca.client(&[b"h2"]),
        addr,
        "localhost",
        "/inject",
        serde_json::to_vec(&review).unwrap(),
    )
    .await;
    drop(child);
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().expect("a patch"))
            .unwrap(),
    )
    .unwrap();
    json_patch::patch(&mut pod, &patch).unwrap();

    // The patched Pod as the Deployment's pod, the Service by port name.
    for d in &mut r.docs {
        match d["kind"].as_str() {
            Some("Deployment") => {
                d["spec"]["template"]["metadata"]["annotations"] =
                    serde_yaml::to_value(&pod["metadata"]["annotations"]).unwrap();
                d["spec"]["template"]["spec"] = serde_yaml::to_value(&pod["spec"]).unwrap();
            }
            Some("Service") => {
                d["spec"]["ports"][0]["targetPort"] = Value::from("http");
            }
            _ => {}
        }
    }
    let p = r.pod();
    assert!(!p.native);
    let (_, volume) = p.volume_for(&p.config_path());
    assert!(volume["downwardAPI"].is_mapping(), "{volume:?}");
    assert_eq!(p.drain().1, std::time::Duration::from_secs(10));
    let report = crate::lifecycle::simulate(&r, crate::lifecycle::Options::default()).await;
    crate::pod_lifecycle::assert_clean_shutdown("webhook-injected user-app", &report);
}
