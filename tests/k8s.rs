//! The Kubernetes packaging: Dockerfile, deploy/ (kustomize) and the Helm
//! chart helm/lifeguard.
//!
//! - `manifests_lint_and_validate`: scripts/validate-k8s.sh (helm lint, helm
//!   template over every value set of helm/lifeguard/ci, kustomize builds,
//!   kubernetes-validate --strict).
//! - `rendered_pods_keep_the_invariants`: for every rendered pod, the facts
//!   the shutdown choreography and routing depend on, including running the
//!   app's preStop hook against a fake admin port and `lifeguard check` on
//!   the ConfigMap's config.
//! - `monitoring_resources_are_well_formed`: the Prometheus Operator custom
//!   resources (no schema in kubernetes-validate) and the dashboard,
//!   structurally, against the metrics README documents.
//! - `pod_lifecycle_*`: kubelet played on this machine for the rendered pod,
//!   under load, for each sidecar mode: no client request may fail.
//!
//! Tools (helm, kubectl, kubernetes-validate) are installed into .tools/ by
//! scripts/install-tools.sh from the npm and PyPI registries.

#[path = "k8s/hooks.rs"]
mod hooks;
#[path = "k8s/lifecycle.rs"]
mod lifecycle;
#[path = "k8s/render.rs"]
mod render;

use render::{
    balanced, documented_metrics, duration, is_documented, metrics_in, resolve_port, selects, seq,
    Pod, Rendered,
};
use serde_yaml::Value;
use std::process::Command;
use std::time::Duration;

#[test]
fn manifests_lint_and_validate() {
    render::tools();
    let out_dir = tempfile::tempdir().unwrap();
    let out = Command::new("bash")
        .arg(render::repo().join("scripts/validate-k8s.sh"))
        .arg(out_dir.path())
        .output()
        .expect("run scripts/validate-k8s.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "scripts/validate-k8s.sh failed ({}):\n{text}",
        out.status
    );
    assert!(text.contains("validate-k8s: ok"), "{text}");
    // Every value set was rendered and validated.
    let rendered: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let ci_sets = std::fs::read_dir(render::repo().join("helm/lifeguard/ci"))
        .unwrap()
        .count();
    assert_eq!(
        rendered.iter().filter(|n| n.starts_with("helm-")).count(),
        ci_sets + 1,
        "{rendered:?}"
    );
    assert_eq!(
        rendered.iter().filter(|n| n.starts_with("deploy")).count(),
        4,
        "{rendered:?}"
    );
    // NOTES.txt tells how to reach the app, the metrics and the status page.
    let notes: Vec<_> = rendered
        .iter()
        .filter(|n| n.starts_with("notes-"))
        .collect();
    assert_eq!(notes.len(), ci_sets + 1, "{rendered:?}");
    for n in notes {
        let text = std::fs::read_to_string(out_dir.path().join(n)).unwrap();
        for needed in [
            "port-forward svc/demo-lifeguard",
            "/metrics",
            "/status",
            "hot-reloads",
        ] {
            assert!(text.contains(needed), "{n}: no {needed:?} in:\n{text}");
        }
    }
}

/// Runs `lifeguard check` on the pod's config, with the files it names
/// (token, TLS certificate) provided as the pod's volumes would. Returns
/// `Err(note)` when the config uses keys this lifeguard does not know yet.
fn lifeguard_check(pod: &Pod<'_>) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut config = pod.config();
    if let Some(token) = config["admin"].get_mut("token_file") {
        let path = dir.path().join("token");
        std::fs::write(&path, "t0ken\n").unwrap();
        *token = path.to_string_lossy().as_ref().into();
    }
    if config.get("tls").is_some() {
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .map_err(|e| format!("test certificate: {e}"))?;
        std::fs::write(&cert, pair.cert.pem()).unwrap();
        std::fs::write(&key, pair.signing_key.serialize_pem()).unwrap();
        config["tls"]["cert_file"] = cert.to_string_lossy().as_ref().into();
        config["tls"]["key_file"] = key.to_string_lossy().as_ref().into();
    }
    if let Some(flag) = config
        .get_mut("maintenance")
        .and_then(|m| m.get_mut("flag_file"))
    {
        *flag = dir
            .path()
            .join("maintenance")
            .to_string_lossy()
            .as_ref()
            .into();
    }
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lifeguard"))
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let newer = ["tls", "maintenance", "reload"];
    if !out.status.success()
        && newer
            .iter()
            .any(|k| config.get(k).is_some() && stderr.contains(&format!("unknown field `{k}`")))
    {
        return Err(format!(
            "this lifeguard does not know some config keys yet: {}",
            stderr.trim()
        ));
    }
    assert!(
        out.status.success(),
        "{}: lifeguard check rejects the ConfigMap's config:\n{stderr}\n{}",
        pod.rendered.name,
        pod.config_text()
    );
    assert!(
        !stderr.contains("warning"),
        "{}: lifeguard check warns about the ConfigMap's config:\n{stderr}",
        pod.rendered.name
    );
    Ok(())
}

/// The security context every container of the pod must have.
fn assert_locked_down(pod: &Pod<'_>, container: &Value) {
    let name = format!(
        "{}: container {}",
        pod.rendered.name,
        container["name"].as_str().unwrap_or("?")
    );
    let sc = &container["securityContext"];
    let non_root = sc["runAsNonRoot"].as_bool() == Some(true)
        || pod.spec["securityContext"]["runAsNonRoot"].as_bool() == Some(true);
    assert!(non_root, "{name}: not runAsNonRoot");
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true), "{name}");
    assert_eq!(
        sc["allowPrivilegeEscalation"].as_bool(),
        Some(false),
        "{name}"
    );
    assert!(
        seq(&sc["capabilities"]["drop"])
            .iter()
            .any(|c| c.as_str() == Some("ALL")),
        "{name}: capabilities not dropped"
    );
}

/// What the app's preStop hook calls on a fake admin port.
async fn hook_calls(pod: &Pod<'_>) -> Vec<hooks::Call> {
    let fake = hooks::FakeAdmin::start().await;
    let handler = &pod.app["lifecycle"]["preStop"];
    let run = hooks::run_handler(
        handler,
        pod.admin_port(),
        fake.addr,
        Duration::from_secs(20),
    )
    .await;
    assert!(
        run.ok,
        "{}: the app's preStop hook failed: {run:?}",
        pod.rendered.name
    );
    fake.calls()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendered_pods_keep_the_invariants() {
    let renders = tokio::task::spawn_blocking(render::all_pod_renders)
        .await
        .unwrap();
    for r in &renders {
        let pod = r.pod();
        let name = &r.name;
        let lg = pod.lifeguard;
        let listen = pod.listen_port();
        let admin = pod.admin_port();

        // Sidecar mode.
        if pod.native {
            assert_eq!(lg["restartPolicy"].as_str(), Some("Always"), "{name}");
        } else {
            assert!(lg["restartPolicy"].is_null(), "{name}");
        }

        // lifeguard's ports are the config's listeners.
        assert_eq!(
            resolve_port(lg, &"http".into()),
            Some(listen),
            "{name}: port http"
        );
        assert_eq!(
            resolve_port(lg, &"admin".into()),
            Some(admin),
            "{name}: port admin"
        );

        // The Service targets lifeguard's port, never the app's.
        let services: Vec<&Value> = r
            .of_kind("Service")
            .into_iter()
            .filter(|s| s["spec"]["clusterIP"].as_str() != Some("None"))
            .collect();
        assert_eq!(services.len(), 1, "{name}: one client Service");
        let svc = services[0];
        assert!(
            selects(&svc["spec"]["selector"], pod.labels),
            "{name}: Service does not select the pod"
        );
        for p in seq(&svc["spec"]["ports"]) {
            let target = &p["targetPort"];
            assert_eq!(
                resolve_port(lg, target),
                Some(listen),
                "{name}: Service port {p:?} does not target lifeguard's listener"
            );
            let app_ports: Vec<u64> = seq(&pod.app["ports"])
                .iter()
                .filter_map(|p| p["containerPort"].as_u64())
                .collect();
            assert!(
                !app_ports.contains(&u64::from(listen)),
                "{name}: the app container also declares lifeguard's port"
            );
            if let Some(t) = target.as_str() {
                assert!(
                    resolve_port(pod.app, &t.into()).is_none() || t.parse::<u16>().is_ok(),
                    "{name}: Service targetPort {t} names an app port"
                );
            }
        }
        // The headless admin Service, when there, targets the admin port.
        for s in r.of_kind("Service") {
            if s["spec"]["clusterIP"].as_str() == Some("None") {
                for p in seq(&s["spec"]["ports"]) {
                    assert_eq!(resolve_port(lg, &p["targetPort"]), Some(admin), "{name}");
                }
                assert_eq!(s["spec"]["publishNotReadyAddresses"].as_bool(), Some(true));
            }
        }

        // Probes on lifeguard's admin port.
        for (probe, path) in [
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/livez"),
            ("startupProbe", "/livez"),
        ] {
            let p = &lg[probe]["httpGet"];
            if probe == "startupProbe" && lg[probe].is_null() {
                continue;
            }
            assert_eq!(p["path"].as_str(), Some(path), "{name}: {probe}");
            assert_eq!(
                resolve_port(lg, &p["port"]),
                Some(admin),
                "{name}: {probe} is not on the admin port"
            );
        }
        if pod.annotations["prometheus.io/scrape"].as_str() == Some("true") {
            assert_eq!(
                pod.annotations["prometheus.io/port"].as_str(),
                Some(admin.to_string().as_str()),
                "{name}: prometheus.io/port"
            );
            assert_eq!(
                pod.annotations["prometheus.io/path"].as_str(),
                Some("/metrics")
            );
        }

        // The grace period exceeds the drain budget, and the config knows it.
        let (delay, timeout, grace_cfg) = pod.drain();
        let grace = Duration::from_secs(pod.grace_seconds());
        let margin = Duration::from_secs(2).max(grace / 20);
        assert!(
            timeout + margin <= grace,
            "{name}: terminationGracePeriodSeconds {grace:?} leaves no margin after drain.timeout {timeout:?}"
        );
        assert!(
            delay + timeout <= grace,
            "{name}: grace period {grace:?} below drain.delay + drain.timeout"
        );
        assert!(
            delay < timeout,
            "{name}: drain.delay not below drain.timeout"
        );
        assert_eq!(grace_cfg, grace, "{name}: drain.grace_period");

        // Hot reload: the config is a directory mount, and no checksum rolls
        // the pods when it changes.
        let (mount, _) = pod.volume_for(&pod.config_path());
        assert!(
            mount["subPath"].is_null(),
            "{name}: a subPath mount never sees ConfigMap updates"
        );
        if let Some(a) = pod.annotations.as_mapping() {
            for (k, _) in a {
                assert!(
                    !k.as_str().unwrap_or("").contains("checksum"),
                    "{name}: pod template annotation {k:?} would restart pods on config changes"
                );
            }
        }

        // Security contexts.
        assert_locked_down(&pod, lg);
        assert_locked_down(&pod, pod.app);

        // Shutdown: lifeguard has no hook; the app's hook waits for
        // lifeguard's drain (native: starts it first), from loopback.
        assert!(
            lg["lifecycle"]["preStop"].is_null(),
            "{name}: lifeguard needs no preStop hook"
        );
        let calls = hook_calls(&pod).await;
        let waits: Vec<&hooks::Call> = calls
            .iter()
            .filter(|c| c.target.starts_with("/admin/drained?"))
            .collect();
        assert_eq!(
            waits.len(),
            1,
            "{name}: the app's hook must wait on /admin/drained: {calls:?}"
        );
        let wait = waits[0]
            .target
            .split("wait=")
            .nth(1)
            .map(duration)
            .unwrap_or_default();
        assert!(
            wait >= timeout,
            "{name}: the hook waits {wait:?}, less than drain.timeout {timeout:?}"
        );
        let starts: Vec<usize> = calls
            .iter()
            .enumerate()
            .filter(|(_, c)| c.target == "/admin/drain")
            .map(|(i, _)| i)
            .collect();
        let wait_at = calls
            .iter()
            .position(|c| c.target.starts_with("/admin/drained?"))
            .unwrap();
        if pod.native {
            assert!(
                starts.len() == 1 && starts[0] < wait_at,
                "{name}: native sidecar: the app's hook must POST /admin/drain, then wait: {calls:?}"
            );
        } else {
            assert!(
                starts.is_empty(),
                "{name}: classic sidecar: SIGTERM drains lifeguard; the hook only waits: {calls:?}"
            );
        }

        // The config passes `lifeguard check`, without warnings.
        if let Err(note) = lifeguard_check(&pod) {
            panic!("{name}: {note}");
        }
    }
}

#[test]
fn chart_refuses_inconsistent_values() {
    for (sets, expected) in [
        (
            &["terminationGracePeriodSeconds=26"][..],
            "must exceed lifeguard.drain.timeoutSeconds",
        ),
        (
            &["lifeguard.drain.delaySeconds=30"][..],
            "must be below lifeguard.drain.timeoutSeconds",
        ),
        (
            &["sidecar.mode=native", "app.preStop.client=httpGet"][..],
            "works only with sidecar.mode=classic",
        ),
        (&["sidecar.mode=sidecar"][..], "sidecar.mode"),
        (&["lifeguard.config.listen=0.0.0.0:1"][..], "listen"),
        (
            &["lifeguard.tls.enabled=true"][..],
            "lifeguard.tls.secretName",
        ),
        (
            &[
                "monitoring.serviceMonitor.enabled=true",
                "adminService.enabled=false",
            ][..],
            "adminService.enabled",
        ),
    ] {
        let err = render::helm_template_error(sets, &[]);
        assert!(err.contains(expected), "{sets:?}: {err}");
    }
    // Native sidecars need Kubernetes 1.29 (the last --kube-version wins).
    let err = render::helm_template_error(&["sidecar.mode=native"], &["--kube-version", "1.28.0"]);
    assert!(err.contains(">= 1.29"), "{err}");
}

fn check_rules(r: &Rendered, documented: &[(String, String)]) -> Vec<String> {
    let rule = r.one("PrometheusRule");
    assert_eq!(
        rule["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    let spec = rule["spec"].as_mapping().expect("spec");
    assert!(
        spec.keys().all(|k| k.as_str() == Some("groups")),
        "{}",
        r.name
    );
    let mut names = Vec::new();
    for g in seq(&rule["spec"]["groups"]) {
        assert!(g["name"].is_string(), "{}: group name", r.name);
        for (k, _) in g.as_mapping().unwrap() {
            assert!(
                ["name", "interval", "rules", "limit"].contains(&k.as_str().unwrap()),
                "{}: group key {k:?}",
                r.name
            );
        }
        for rule in seq(&g["rules"]) {
            let alert = rule["alert"].as_str().expect("alert name");
            let ctx = format!("{}: {alert}", r.name);
            for (k, _) in rule.as_mapping().unwrap() {
                assert!(
                    [
                        "alert",
                        "expr",
                        "for",
                        "keep_firing_for",
                        "labels",
                        "annotations"
                    ]
                    .contains(&k.as_str().unwrap()),
                    "{ctx}: key {k:?}"
                );
            }
            let expr = rule["expr"].as_str().expect("expr");
            assert!(balanced(expr), "{ctx}: unbalanced expr: {expr}");
            assert!(!expr.contains("{{"), "{ctx}: template left in expr: {expr}");
            let used = metrics_in(expr);
            assert!(!used.is_empty(), "{ctx}: uses no lifeguard metric");
            for m in used {
                assert!(
                    is_documented(&m, documented),
                    "{ctx}: {m} is not a documented metric"
                );
            }
            if let Some(f) = rule["for"].as_str() {
                duration(f);
            }
            assert!(
                ["critical", "warning", "info"]
                    .contains(&rule["labels"]["severity"].as_str().unwrap_or("")),
                "{ctx}: severity"
            );
            assert!(rule["annotations"]["summary"].is_string(), "{ctx}");
            let description = rule["annotations"]["description"]
                .as_str()
                .expect("description");
            assert!(
                description.contains("{{ $labels."),
                "{ctx}: description lost its alert templates: {description}"
            );
            names.push(alert.to_owned());
        }
    }
    names.sort();
    names
}

fn check_dashboard(json: &str, documented: &[(String, String)], ctx: &str) {
    let d: serde_json::Value = serde_json::from_str(json).expect("dashboard JSON");
    let panels = d["panels"].as_array().expect("panels");
    let mut ids: Vec<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "{ctx}: panel ids repeat");
    let mut exprs = Vec::new();
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("target expr").to_owned());
        }
    }
    for e in &exprs {
        assert!(balanced(e), "{ctx}: unbalanced: {e}");
        for m in metrics_in(e) {
            assert!(is_documented(&m, documented), "{ctx}: {m} undocumented");
        }
    }
    // What the dashboard must show.
    for m in [
        "lifeguard_requests_total",
        "lifeguard_request_duration_seconds_bucket",
        "lifeguard_requests_in_flight",
        "lifeguard_app_endpoint_up",
        "lifeguard_app_crashes_total",
        "lifeguard_synthesized_responses_total",
    ] {
        assert!(
            exprs.iter().any(|e| metrics_in(e).iter().any(|x| x == m)),
            "{ctx}: no panel uses {m}"
        );
    }
    assert!(
        exprs.iter().any(|e| e.contains("by (code_class)")),
        "{ctx}: no status-class panel"
    );
    assert!(
        exprs.iter().any(|e| e.contains("by (reason)")),
        "{ctx}: no synthesized-by-reason panel"
    );
}

#[test]
fn monitoring_resources_are_well_formed() {
    let documented = documented_metrics();
    let helm = render::helm_template(Some("monitoring-values.yaml"), &[]);
    let deploy_mon = render::kustomize("deploy/monitoring");
    let deploy = render::kustomize("deploy");

    // PodMonitors select the pods and scrape the admin port.
    for (mon, pods) in [(&helm, &helm), (&deploy_mon, &deploy)] {
        let pm = mon.one("PodMonitor");
        assert_eq!(pm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
        for (k, _) in pm["spec"].as_mapping().unwrap() {
            assert!(
                [
                    "selector",
                    "podMetricsEndpoints",
                    "namespaceSelector",
                    "jobLabel",
                    "podTargetLabels"
                ]
                .contains(&k.as_str().unwrap()),
                "{}: PodMonitor key {k:?}",
                mon.name
            );
        }
        let pod = pods.pod();
        assert!(
            selects(&pm["spec"]["selector"]["matchLabels"], pod.labels),
            "{}: PodMonitor does not select the pod",
            mon.name
        );
        let endpoints = seq(&pm["spec"]["podMetricsEndpoints"]);
        assert!(!endpoints.is_empty());
        for e in endpoints {
            for (k, _) in e.as_mapping().unwrap() {
                assert!(
                    [
                        "port",
                        "path",
                        "interval",
                        "scrapeTimeout",
                        "relabelings",
                        "metricRelabelings",
                        "scheme"
                    ]
                    .contains(&k.as_str().unwrap()),
                    "{}: podMetricsEndpoints key {k:?}",
                    mon.name
                );
            }
            assert_eq!(
                resolve_port(pod.lifeguard, &e["port"]),
                Some(pod.admin_port()),
                "{}: PodMonitor port",
                mon.name
            );
            assert_eq!(e["path"].as_str(), Some("/metrics"));
            let interval = duration(e["interval"].as_str().unwrap());
            let timeout = duration(e["scrapeTimeout"].as_str().unwrap());
            assert!(
                timeout <= interval,
                "{}: scrapeTimeout > interval",
                mon.name
            );
        }
    }

    // The ServiceMonitor scrapes through the admin Service.
    let sm = helm.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    let admin_svc = helm
        .of_kind("Service")
        .into_iter()
        .find(|s| {
            selects(
                &sm["spec"]["selector"]["matchLabels"],
                &s["metadata"]["labels"],
            )
        })
        .expect("the ServiceMonitor selects a Service");
    assert_eq!(admin_svc["spec"]["clusterIP"].as_str(), Some("None"));
    let pod = helm.pod();
    for e in seq(&sm["spec"]["endpoints"]) {
        let port = seq(&admin_svc["spec"]["ports"])
            .into_iter()
            .find(|p| p["name"] == e["port"])
            .expect("ServiceMonitor port is a port of the admin Service");
        assert_eq!(
            resolve_port(pod.lifeguard, &port["targetPort"]),
            Some(pod.admin_port())
        );
        assert_eq!(e["path"].as_str(), Some("/metrics"));
    }

    // The same alerts in both, each on documented metrics, covering what
    // operators need.
    let helm_alerts = check_rules(&helm, &documented);
    let deploy_alerts = check_rules(&deploy_mon, &documented);
    assert_eq!(helm_alerts, deploy_alerts);
    for needed in [
        "LifeguardAppCrashed",
        "LifeguardAppEndpointDown",
        "LifeguardHigh503Ratio",
        "LifeguardConfigReloadFailed",
        "LifeguardMaintenanceTooLong",
    ] {
        assert!(helm_alerts.iter().any(|a| a == needed), "missing {needed}");
    }

    // One dashboard, shipped identically by deploy/ and the chart, loaded by
    // Grafana's sidecar (label grafana_dashboard: "1").
    let repo = render::repo();
    let deploy_json =
        std::fs::read_to_string(repo.join("deploy/monitoring/lifeguard-dashboard.json")).unwrap();
    let helm_json =
        std::fs::read_to_string(repo.join("helm/lifeguard/files/lifeguard-dashboard.json"))
            .unwrap();
    assert_eq!(
        deploy_json, helm_json,
        "deploy/monitoring/lifeguard-dashboard.json and helm/lifeguard/files/lifeguard-dashboard.json differ"
    );
    check_dashboard(&deploy_json, &documented, "dashboard");
    for r in [&helm, &deploy_mon] {
        let cm = r
            .of_kind("ConfigMap")
            .into_iter()
            .find(|c| c["metadata"]["labels"]["grafana_dashboard"].as_str() == Some("1"))
            .unwrap_or_else(|| panic!("{}: no dashboard ConfigMap", r.name));
        let json = cm["data"]["lifeguard-dashboard.json"].as_str().unwrap();
        let a: serde_json::Value = serde_json::from_str(json).unwrap();
        let b: serde_json::Value = serde_json::from_str(&deploy_json).unwrap();
        assert_eq!(a, b, "{}: dashboard ConfigMap", r.name);
    }

    // PDB and HPA target the Deployment's pods.
    let pdb = helm.one("PodDisruptionBudget");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], pod.labels));
    let hpa = helm.one("HorizontalPodAutoscaler");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        helm.one("Deployment")["metadata"]["name"]
    );
    assert!(
        helm.one("Deployment")["spec"]["replicas"].is_null(),
        "with an HPA the Deployment must not set replicas"
    );
}

#[test]
fn dockerfile_builds_a_static_non_root_image() {
    let repo = render::repo();
    let df = std::fs::read_to_string(repo.join("Dockerfile")).unwrap();
    let lines: Vec<&str> = df
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let froms = lines.iter().filter(|l| l.starts_with("FROM ")).count();
    assert!(froms >= 2, "multi-stage build");
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let final_stage = &lines[last_from..];
    assert!(final_stage[0].contains("distroless/static"), "static base");
    assert!(df.contains("crt-static"), "musl binary linked statically");
    assert!(df.contains("--locked"), "builds from Cargo.lock");
    let user = final_stage
        .iter()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the final stage");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert!(uid > 0, "non-root user");
    assert!(final_stage.contains(&"STOPSIGNAL SIGTERM"));
    assert!(final_stage
        .iter()
        .any(|l| l.starts_with("ENTRYPOINT") && l.contains("lifeguard")));
    // The deploy/ and chart images run as that user.
    let deploy = render::kustomize("deploy");
    assert_eq!(
        deploy.pod().lifeguard["securityContext"]["runAsUser"].as_u64(),
        Some(u64::from(uid))
    );
    // The build context holds only what the build needs.
    let ignore = std::fs::read_to_string(repo.join(".dockerignore")).unwrap();
    let rules: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(
        rules.first(),
        Some(&"*"),
        ".dockerignore starts by excluding everything"
    );
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src/", "!config.yaml"] {
        assert!(
            rules.contains(&needed),
            ".dockerignore must let {needed} in"
        );
    }
    for copied in ["Cargo.toml", "Cargo.lock", "src", "config.yaml"] {
        assert!(df.contains(copied));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_job_runs_its_command_under_maintenance() {
    let repo = render::repo();
    let rendered = tokio::task::spawn_blocking(|| render::kustomize("deploy/migration"))
        .await
        .unwrap();
    let deploy = tokio::task::spawn_blocking(|| render::kustomize("deploy"))
        .await
        .unwrap();

    // The Job reaches every pod through the headless admin Service, with the
    // token lifeguard reads.
    let job = rendered.one("Job");
    let spec = &job["spec"]["template"]["spec"];
    let c = &seq(&spec["containers"])[0];
    let env = |k: &str| {
        seq(&c["env"])
            .into_iter()
            .find(|e| e["name"].as_str() == Some(k))
            .and_then(|e| e["value"].as_str())
            .unwrap_or_else(|| panic!("Job env {k}"))
            .to_owned()
    };
    let admin_svc = deploy.named("Service", &env("LIFEGUARD_ADMIN_HOST"));
    assert_eq!(admin_svc["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        admin_svc["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let pod = deploy.pod();
    assert_eq!(
        env("LIFEGUARD_ADMIN_PORT").parse::<u16>().ok(),
        Some(pod.admin_port())
    );
    let token_secret = |volumes: &Value, mounts: &Value, file: &str| {
        let dir = std::path::Path::new(file).parent().unwrap();
        let m = seq(mounts)
            .into_iter()
            .find(|m| m["mountPath"].as_str().map(std::path::Path::new) == Some(dir))
            .expect("token mount");
        seq(volumes)
            .into_iter()
            .find(|v| v["name"] == m["name"])
            .and_then(|v| v["secret"]["secretName"].as_str())
            .expect("token Secret")
            .to_owned()
    };
    let config = pod.config();
    assert_eq!(
        token_secret(
            &spec["volumes"],
            &c["volumeMounts"],
            &env("LIFEGUARD_TOKEN_FILE")
        ),
        token_secret(
            &pod.spec["volumes"],
            &pod.lifeguard["volumeMounts"],
            config["admin"]["token_file"].as_str().unwrap()
        ),
        "the Job and lifeguard read the same token Secret"
    );

    // The script, against a fake admin port on loopback: on, command, off,
    // and off also when the command fails.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    for (command, code) in [("exit 0", 0), ("exit 3", 3)] {
        let fake = hooks::FakeAdmin::start().await;
        let out = tokio::process::Command::new("node")
            .arg(repo.join("deploy/migration/maintenance.js"))
            .args(["--", "sh", "-c", command])
            .env("LIFEGUARD_ADMIN_HOST", "127.0.0.1")
            .env("LIFEGUARD_ADMIN_PORT", fake.addr.port().to_string())
            .env("LIFEGUARD_TOKEN_FILE", &token)
            .env("LIFEGUARD_ATTEMPTS", "1")
            .output()
            .await
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{log}");
        let calls: Vec<(String, String, Option<String>)> = fake
            .calls()
            .into_iter()
            .map(|c| (c.method, c.target, c.authorization))
            .collect();
        let bearer = Some("Bearer s3cret".to_owned());
        assert_eq!(
            calls,
            vec![
                (
                    "POST".into(),
                    "/admin/maintenance?state=on".into(),
                    bearer.clone()
                ),
                ("POST".into(), "/admin/maintenance?state=off".into(), bearer),
            ],
            "{log}"
        );
    }
    // A pod that refuses maintenance: the command does not run.
    let out = tokio::process::Command::new("node")
        .arg(repo.join("deploy/migration/maintenance.js"))
        .args(["--", "sh", "-c", "echo MIGRATED"])
        .env("LIFEGUARD_ADMIN_HOST", "127.0.0.1")
        .env("LIFEGUARD_ADMIN_PORT", render::closed_port().to_string())
        .env("LIFEGUARD_TOKEN_FILE", &token)
        .env("LIFEGUARD_ATTEMPTS", "1")
        .output()
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("MIGRATED"));
}

/// Short drain timings for the lifecycle runs (the chart's values).
const SIM_SETS: [&str; 2] = [
    "lifeguard.drain.delaySeconds=2",
    "lifeguard.drain.timeoutSeconds=10",
];

fn assert_clean_shutdown(label: &str, r: &lifecycle::Report) {
    let summary = format!(
        "{label}: {} ok ({} after termination started), hook {:?} -> {}, app SIGTERM at {:?} (/admin/drained: {}), app exit {:?}, lifeguard exit {:?}",
        r.ok, r.ok_after_termination_started, r.hook_took, r.hook_result,
        r.app_sigterm_at, r.drained_at_app_sigterm, r.app_exit, r.lifeguard_exit
    );
    eprintln!("{summary}");
    assert!(
        r.failures.is_empty(),
        "{summary}\nfailed requests:\n{}\nlifeguard:\n{}",
        r.failures.join("\n"),
        r.lifeguard_logs.join("\n")
    );
    assert!(r.ok >= 20, "{summary}: too little load to mean anything");
    assert!(
        r.ok_after_termination_started > 0,
        "{summary}: no request during the drain"
    );
    // The hook waited for the drain (at least drain.delay) and succeeded.
    assert!(r.hook_took >= r.delay, "{summary}: the hook did not wait");
    assert!(r.hook_ok, "{summary}");
    // The app got SIGTERM only once lifeguard had drained: lifeguard says
    // so, or (classic) its admin port was already closed by an exit 0, which
    // comes only after the drain (and after answering the hook's wait).
    let drained = r.drained_at_app_sigterm == "200"
        || (!r.native
            && r.drained_at_app_sigterm == "gone"
            && r.lifeguard_exit.status.is_some_and(|s| s.success()));
    assert!(drained, "{summary}: app stopped before lifeguard drained");
    assert!(
        r.lifeguard_logs.iter().any(|l| l.contains("\"drained\"")),
        "{summary}: lifeguard never logged its drain"
    );
    // Everything exited by itself before the grace period.
    assert!(!r.app_exit.killed && !r.lifeguard_exit.killed, "{summary}");
    assert!(
        r.app_exit.at < r.grace && r.lifeguard_exit.at < r.grace,
        "{summary}"
    );
    assert!(
        r.lifeguard_exit.status.is_some_and(|s| s.success()),
        "{summary}: lifeguard exit\n{}",
        r.lifeguard_logs.join("\n")
    );
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        r.app_exit.status.and_then(|s| s.signal()),
        Some(15),
        "{summary}: the app should have died of its SIGTERM"
    );
    if r.native {
        // Drained over the admin port, then stopped at once by its SIGTERM.
        assert!(
            r.lifeguard_logs
                .iter()
                .any(|l| l.contains("already drained; exiting")),
            "{summary}"
        );
        assert!(r.lifeguard_exit.at >= r.app_exit.at, "{summary}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_classic_sidecar_loses_no_request() {
    let r = tokio::task::spawn_blocking(|| {
        render::helm_template(Some("classic-values.yaml"), &SIM_SETS)
    })
    .await
    .unwrap();
    assert!(!r.pod().native);
    let report = lifecycle::simulate(&r, lifecycle::Options::default()).await;
    assert_clean_shutdown("helm classic", &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_native_sidecar_loses_no_request() {
    let r = tokio::task::spawn_blocking(|| {
        render::helm_template(Some("native-values.yaml"), &SIM_SETS)
    })
    .await
    .unwrap();
    assert!(r.pod().native);
    let report = lifecycle::simulate(&r, lifecycle::Options::default()).await;
    assert_clean_shutdown("helm native", &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_of_deploy_manifests_loses_no_request() {
    let (classic, native) = tokio::task::spawn_blocking(|| {
        (
            render::kustomize("deploy"),
            render::kustomize("deploy/native"),
        )
    })
    .await
    .unwrap();
    let opts = || lifecycle::Options {
        drain_override: Some(("2s", "10s")),
        ..Default::default()
    };
    let (a, b) = tokio::join!(
        lifecycle::simulate(&classic, opts()),
        lifecycle::simulate(&native, opts())
    );
    assert_clean_shutdown("deploy classic", &a);
    assert_clean_shutdown("deploy native", &b);
}
