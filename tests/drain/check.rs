//! `lifeguard check`: drain budget warnings.

use support::process::binary;

fn check(yaml: &str) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = std::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run lifeguard check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_warns_when_the_drain_budget_does_not_fit() {
    // Defaults (delay 5s, timeout 25s, grace 30s) fit.
    let (code, stdout, stderr) = check("");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(!stderr.contains("warning:"), "{stderr}");

    // 29s + 2s margin > 30s.
    let (code, stdout, stderr) = check("drain:\n  timeout: 29s\n");
    assert_eq!(code, Some(0), "a warning is not an error: {stderr}");
    assert!(stdout.contains(": ok"), "{stdout}");
    assert!(
        stderr.lines().any(|l| l.starts_with(
            "warning: drain.timeout (29s) leaves less than 2s before drain.grace_period (30s)"
        )),
        "{stderr}"
    );

    // The margin is 5 % of a long grace period: 96s + 5s > 100s, 95s + 5s fits.
    let (code, _, stderr) = check("drain:\n  timeout: 96s\n  grace_period: 100s\n");
    assert_eq!(code, Some(0));
    assert!(
        stderr.lines().any(|l| {
            l.starts_with(
            "warning: drain.timeout (1m 36s) leaves less than 5s before drain.grace_period (1m 40s)"
        )
        }),
        "{stderr}"
    );
    let (code, _, stderr) = check("drain:\n  timeout: 95s\n  grace_period: 100s\n");
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("warning:"), "{stderr}");

    // A delay that eats the whole timeout.
    let (code, _, stderr) = check("drain:\n  delay: 3s\n  timeout: 3s\n");
    assert_eq!(code, Some(0));
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("warning: drain.delay (3s) is not below drain.timeout (3s)")),
        "{stderr}"
    );
}
