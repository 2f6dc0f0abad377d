//! The Dockerfile builds a static binary run as non-root.

use crate::render;

/// The lines of `text` that are neither blank nor comments, trimmed.
fn meaningful_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

#[test]
fn dockerfile_builds_a_static_non_root_image() {
    let repo = render::repo();
    let df = std::fs::read_to_string(repo.join("Dockerfile")).unwrap();
    let lines = meaningful_lines(&df);
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
    let rules = meaningful_lines(&ignore);
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
