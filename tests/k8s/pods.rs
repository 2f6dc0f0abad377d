//! For every rendered pod, the facts the shutdown choreography and routing
//! depend on, including the app's preStop hook run against a fake admin
//! port and `lifeguard check` on the ConfigMap's config.

use crate::render::{duration, resolve_port, selects, seq, Pod};
use crate::{hooks, render};
use serde_yaml::Value;
use std::process::Command;
use std::time::Duration;

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
