//! kubelet played on this machine for the rendered pod, under load, for
//! each sidecar mode: no client request may fail.

use crate::{lifecycle, render};

/// Short drain timings for the lifecycle runs (the chart's values).
const SIM_SETS: [&str; 2] = [
    "lifeguard.drain.delaySeconds=2",
    "lifeguard.drain.timeoutSeconds=10",
];

/// The chart rendered with `values` and the short drain timings.
async fn helm_for_simulation(values: &'static str) -> render::Rendered {
    tokio::task::spawn_blocking(move || render::helm_template(Some(values), &SIM_SETS))
        .await
        .unwrap()
}

pub(crate) fn assert_clean_shutdown(label: &str, r: &lifecycle::Report) {
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
    let r = helm_for_simulation("classic-values.yaml").await;
    assert!(!r.pod().native);
    let report = lifecycle::simulate(&r, lifecycle::Options::default()).await;
    assert_clean_shutdown("helm classic", &report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_native_sidecar_loses_no_request() {
    let r = helm_for_simulation("native-values.yaml").await;
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

/// A user's own Deployment (tests/k8s/user-app.yaml) after `lifeguard
/// inject` (classic mode, the short drain timings): the same kubelet run,
/// the same promise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_of_an_injected_user_deployment_loses_no_request() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lifeguard"))
        .args([
            "inject",
            "--drain-delay",
            "2",
            "--drain-timeout",
            "10",
            "-f",
        ])
        .arg(render::repo().join("tests/k8s/user-app.yaml"))
        .output()
        .await
        .expect("run lifeguard inject");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = render::Rendered::parse("injected user-app", &String::from_utf8(out.stdout).unwrap());
    let pod = r.pod();
    assert!(!pod.native);
    // The Service now reaches lifeguard by its name, and the app keeps its
    // init container.
    let svc = r.one("Service");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"].as_str(), Some("http"));
    assert_eq!(
        render::resolve_port(pod.lifeguard, &svc["spec"]["ports"][0]["targetPort"]),
        Some(pod.listen_port())
    );
    assert_eq!(
        pod.spec["initContainers"][0]["name"].as_str(),
        Some("db-migrate")
    );
    let report = lifecycle::simulate(&r, lifecycle::Options::default()).await;
    assert_clean_shutdown("injected user-app", &report);
}
