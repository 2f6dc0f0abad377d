//! scripts/validate-k8s.sh over the chart and deploy/, and the values the
//! chart refuses.

use crate::render;
use std::process::Command;

#[test]
fn manifests_lint_and_validate() {
    render::tools();
    let out_dir = tempfile::tempdir().unwrap();
    let text = support::tools::run_ok(
        Command::new("bash")
            .arg(render::repo().join("scripts/validate-k8s.sh"))
            .arg(out_dir.path()),
        "scripts/validate-k8s.sh",
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
        (
            &[
                "monitoring.podMonitor.enabled=true",
                "monitoring.serviceMonitor.enabled=true",
            ][..],
            "scraped twice",
        ),
        (
            &["monitoring.prometheusRule.runbookBaseUrl=docs/alerts.md"][..],
            "runbookBaseUrl",
        ),
    ] {
        let err = render::helm_template_error(sets, &[]);
        assert!(err.contains(expected), "{sets:?}: {err}");
    }
    // Native sidecars need Kubernetes 1.29 (the last --kube-version wins).
    let err = render::helm_template_error(&["sidecar.mode=native"], &["--kube-version", "1.28.0"]);
    assert!(err.contains(">= 1.29"), "{err}");
}
