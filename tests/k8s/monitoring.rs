//! The Prometheus Operator custom resources and the dashboard, structurally,
//! against the metrics docs/metrics.md documents. (The alert expressions
//! themselves: alerts.rs, with promtool.)

use crate::render;
use crate::render::{
    balanced, documented_metrics, duration, is_documented, metrics_in, resolve_port, selects, seq,
    Rendered,
};

/// The keys a PrometheusRule rule may have.
const RULE_KEYS: [&str; 6] = [
    "alert",
    "expr",
    "for",
    "keep_firing_for",
    "labels",
    "annotations",
];

/// The keys a PodMonitor's `podMetricsEndpoints` entry may have.
const ENDPOINT_KEYS: [&str; 7] = [
    "port",
    "path",
    "interval",
    "scrapeTimeout",
    "relabelings",
    "metricRelabelings",
    "scheme",
];

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
                assert!(RULE_KEYS.contains(&k.as_str().unwrap()), "{ctx}: key {k:?}");
            }
            // The PromQL itself is checked by promtool (alerts.rs).
            let expr = rule["expr"].as_str().expect("expr");
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
            assert!(rule["annotations"]["runbook_url"].is_string(), "{ctx}");
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
                    ENDPOINT_KEYS.contains(&k.as_str().unwrap()),
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

    // The ServiceMonitor (instead of the PodMonitor: never both) scrapes
    // through the admin Service.
    assert!(helm.of_kind("ServiceMonitor").is_empty());
    let helm_sm = render::helm_template(
        Some("monitoring-values.yaml"),
        &[
            "monitoring.podMonitor.enabled=false",
            "monitoring.serviceMonitor.enabled=true",
        ],
    );
    assert!(helm_sm.of_kind("PodMonitor").is_empty());
    let sm = helm_sm.one("ServiceMonitor");
    assert_eq!(sm["apiVersion"].as_str(), Some("monitoring.coreos.com/v1"));
    let admin_svc = helm_sm
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
