//! The chart as a dependency of a team's own app chart
//! (tests/k8s/shop-chart): `app.enabled: false` renders no demo app, and the
//! `lifeguard.sidecar` named template puts lifeguard, its volumes and the
//! grace period into the team's pod, keeping their init containers and
//! volumes. Validated with kubernetes-validate --strict, and the kubelet
//! simulation runs on the rendered pod.

use crate::render::{self, seq, Rendered};
use crate::{lifecycle, pod_lifecycle::assert_clean_shutdown};
use std::path::Path;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The shop chart with helm/lifeguard in its charts/, rendered.
fn render_shop(sets: &[&str]) -> Rendered {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("shop");
    copy_dir(&render::repo().join("tests/k8s/shop-chart"), &chart);
    copy_dir(
        &render::repo().join("helm/lifeguard"),
        &chart.join("charts/lifeguard"),
    );
    render::helm_template_chart(&chart, sets)
}

fn validate(r: &Rendered) {
    render::assert_valid(&r.docs, &r.name);
}

#[test]
fn subchart_renders_no_demo_app_and_the_sidecar_in_the_teams_pod() {
    for mode in ["classic", "native"] {
        let mode_set = format!("lifeguard.sidecar.mode={mode}");
        // Native mode: the hook must POST /admin/drain from loopback (the
        // chart refuses httpGet there).
        let mut sets = vec![mode_set.as_str()];
        if mode == "native" {
            sets.push("lifeguard.app.preStop.client=node");
        }
        let r = render_shop(&sets);
        validate(&r);
        // No demo app: one Deployment, the team's; no node:22-alpine; no
        // Service, ServiceAccount, HPA or PDB of the lifeguard chart.
        let deployments = r.of_kind("Deployment");
        assert_eq!(deployments.len(), 1, "{}", r.name);
        assert_eq!(
            deployments[0]["metadata"]["name"].as_str(),
            Some("demo-shop")
        );
        let all = r
            .docs
            .iter()
            .map(|d| serde_yaml::to_string(d).unwrap())
            .collect::<String>();
        assert!(
            !all.contains("node:22-alpine"),
            "{}: demo app rendered",
            r.name
        );
        for kind in [
            "ServiceAccount",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
        ] {
            assert!(r.of_kind(kind).is_empty(), "{}: {kind}", r.name);
        }
        assert_eq!(r.of_kind("Service").len(), 1, "{}", r.name);

        // The team's pod with lifeguard: its init container first, its
        // volumes kept, lifeguard's added, the grace period fitting the
        // drain, the app's preStop waiting for it.
        let pod = r.pod();
        assert_eq!(pod.native, mode == "native", "{}", r.name);
        let inits = seq(&pod.spec["initContainers"]);
        assert_eq!(inits[0]["name"].as_str(), Some("db-migrate"));
        if pod.native {
            assert_eq!(inits.last().unwrap()["name"].as_str(), Some("lifeguard"));
            assert_eq!(pod.lifeguard["restartPolicy"].as_str(), Some("Always"));
        }
        let volumes: Vec<&str> = seq(&pod.spec["volumes"])
            .iter()
            .filter_map(|v| v["name"].as_str())
            .collect();
        assert_eq!(volumes[0], "uploads", "{volumes:?}");
        assert!(volumes.contains(&"lifeguard-config"), "{volumes:?}");
        let (_, timeout, _) = pod.drain();
        assert!(pod.grace_seconds() >= timeout.as_secs() + 2, "{}", r.name);
        assert_eq!(pod.app["name"].as_str(), Some("shop"));
        let pre_stop = &pod.app["lifecycle"]["preStop"];
        if pod.native {
            assert!(pre_stop["exec"].is_mapping(), "{}: {pre_stop:?}", r.name);
        } else {
            assert_eq!(
                pre_stop["httpGet"]["port"].as_u64(),
                Some(u64::from(pod.admin_port()))
            );
        }
        // lifeguard forwards to the app's port; the Service reaches lifeguard.
        assert_eq!(
            pod.config()["app"]["endpoints"][0].as_str(),
            Some("127.0.0.1:8000")
        );
        let svc = r.one("Service");
        assert_eq!(
            render::resolve_port(pod.lifeguard, &svc["spec"]["ports"][0]["targetPort"]),
            Some(pod.listen_port())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_lifecycle_of_the_subchart_pod_loses_no_request() {
    let r = tokio::task::spawn_blocking(|| {
        render_shop(&[
            "lifeguard.lifeguard.drain.delaySeconds=2",
            "lifeguard.lifeguard.drain.timeoutSeconds=10",
        ])
    })
    .await
    .unwrap();
    let report = lifecycle::simulate(&r, lifecycle::Options::default()).await;
    assert_clean_shutdown("subchart classic", &report);
}
