//! deploy/components/lifeguard, the kustomize Component, used by a team's
//! own kustomization (tests/k8s/kustomize-user): the annotated Deployment
//! gets lifeguard and keeps its own init container, containers and volumes
//! (merged by name, never replaced); the Deployment without the annotation
//! is left alone; the annotated Service reaches lifeguard. Validated with
//! kubernetes-validate --strict; the kubelet simulation runs on the pod.

use crate::render::{self, seq, Rendered};
use crate::{lifecycle, pod_lifecycle::assert_clean_shutdown};

fn build() -> Rendered {
    render::kustomize("tests/k8s/kustomize-user")
}

/// The render with only the named Deployment (and everything else).
fn only_deployment(r: &Rendered, name: &str) -> Rendered {
    Rendered {
        name: format!("{} ({name})", r.name),
        docs: r
            .docs
            .iter()
            .filter(|d| d["kind"] != "Deployment" || d["metadata"]["name"] == name)
            .cloned()
            .collect(),
    }
}

#[test]
fn component_injects_annotated_deployments_keeping_their_init_containers() {
    let r = build();
    render::assert_valid(&r.docs, "user app with the Component");

    let api = only_deployment(&r, "api");
    let pod = api.pod();
    assert!(!pod.native);
    let names = |list: &serde_yaml::Value| -> Vec<String> {
        seq(list)
            .iter()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    assert_eq!(names(&pod.spec["initContainers"]), ["db-migrate"]);
    let mut containers = names(&pod.spec["containers"]);
    containers.sort();
    assert_eq!(containers, ["api", "lifeguard"]);
    let mut volumes = names(&pod.spec["volumes"]);
    volumes.sort();
    assert_eq!(volumes, ["cache", "lifeguard-config"]);
    // The app's preStop waits for the drain; the grace period fits it.
    assert_eq!(pod.app["name"].as_str(), Some("api"));
    assert_eq!(
        pod.app["lifecycle"]["preStop"]["httpGet"]["port"].as_u64(),
        Some(u64::from(pod.admin_port()))
    );
    let (_, timeout, grace) = pod.drain();
    assert!(pod.grace_seconds() >= timeout.as_secs() + 2);
    assert_eq!(grace.as_secs(), pod.grace_seconds());
    // The app's port kept, lifeguard's Service port reached.
    assert_eq!(pod.app["ports"][0]["containerPort"].as_u64(), Some(3000));
    let svc = r.one("Service");
    assert_eq!(
        render::resolve_port(pod.lifeguard, &svc["spec"]["ports"][0]["targetPort"]),
        Some(pod.listen_port())
    );

    // The Deployment without the annotation: as written.
    let worker = r.named("Deployment", "worker");
    let spec = &worker["spec"]["template"]["spec"];
    assert_eq!(names(&spec["containers"]), ["worker"]);
    assert_eq!(names(&spec["initContainers"]), ["wait"]);
    assert!(spec["volumes"].is_null());
    assert!(spec["terminationGracePeriodSeconds"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_of_a_component_patched_deployment_loses_no_request() {
    let r = tokio::task::spawn_blocking(build).await.unwrap();
    let api = only_deployment(&r, "api");
    let opts = lifecycle::Options {
        drain_override: Some(("2s", "10s")),
        ..Default::default()
    };
    let report = lifecycle::simulate(&api, opts).await;
    assert_clean_shutdown("component classic", &report);
}
