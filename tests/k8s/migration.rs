//! The migration Job runs its command while lifeguard is in maintenance.

use crate::render::seq;
use crate::{hooks, render};
use serde_yaml::Value;

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
