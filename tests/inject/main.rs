//! `lifeguard inject` over a corpus of real-world manifests
//! (tests/inject/corpus): every output validated with `kubernetes-validate
//! --strict`, checked for the injection's invariants (invariants.rs),
//! injected twice (a no-op) and taken out again (`--uninject`: the input
//! back, value for value). The real binary is run, on files and on stdin.
//!
//! kubernetes-validate comes from scripts/install-tools.sh (PyPI).

mod invariants;

use serde::Deserialize;
use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use support::process::run_bounded;

/// The Kubernetes versions the outputs are validated against (native
/// sidecars need 1.29).
const KUBE_VERSIONS: [&str; 2] = ["1.29.0", "1.33.0"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn corpus(name: &str) -> PathBuf {
    repo().join("tests/inject/corpus").join(name)
}

fn tools() -> &'static Path {
    support::tools::k8s_tools()
}

pub(crate) fn parse(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// `lifeguard inject args`: stdout, the warnings on stderr.
fn inject(args: &[&str]) -> (String, Vec<String>) {
    let mut all = vec!["inject"];
    all.extend_from_slice(args);
    let (out, _) = run_bounded(&all, 20);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "lifeguard {all:?}: {stderr}");
    let warnings = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("lifeguard inject: warning: "))
        .map(str::to_owned)
        .collect();
    (String::from_utf8(out.stdout).unwrap(), warnings)
}

/// kubernetes-validate --strict of a file, for each version: every resource
/// passes.
fn validate(file: &Path) {
    for v in KUBE_VERSIONS {
        let what = format!("{}: kubernetes-validate {v}", file.display());
        let text = support::tools::run_ok(
            Command::new(tools().join("kubernetes-validate"))
                .args(["--strict", "-k", v])
                .arg(file),
            &what,
        );
        let passed = text
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        let bad: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains(" passed for resource "))
            .collect();
        assert!(bad.is_empty(), "{}: {v}: {bad:?}", file.display());
        assert!(passed > 0, "{}: {v}: nothing validated", file.display());
    }
}

/// One case: a corpus file, the arguments, how many pod templates must be
/// injected and the warnings expected (substrings, in order).
struct Case {
    file: &'static str,
    args: &'static [&'static str],
    injected: usize,
    warnings: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        file: "named-port.yaml",
        args: &[],
        injected: 1,
        warnings: &[],
    },
    Case {
        file: "numeric-port.yaml",
        args: &[],
        injected: 1,
        warnings: &[],
    },
    Case {
        file: "init-containers.yaml",
        args: &[],
        injected: 1,
        warnings: &["deployment/payments/billing: no Service in the input selects these pods: a Service that targets the app's port by name (web) follows with no edit; a Service that targets port 4000 by number must change that port's targetPort to web"],
    },
    Case {
        file: "init-containers.yaml",
        args: &["--mode", "native"],
        injected: 1,
        warnings: &["no Service in the input"],
    },
    Case {
        file: "multi-container.yaml",
        args: &[],
        injected: 1,
        warnings: &["deployment/gateway: container gateway has its own preStop hook, kept"],
    },
    Case {
        file: "existing-sidecars.yaml",
        args: &["--mode", "native", "--all"],
        injected: 1,
        warnings: &["deployment/search: no Service"],
    },
    Case {
        file: "existing-sidecars.yaml",
        args: &[],
        injected: 1,
        warnings: &["deployment/search: no Service"],
    },
    Case {
        file: "batch.yaml",
        args: &[],
        injected: 0,
        warnings: &[
            "cronjob/nightly-report: a CronJob runs to completion, which a classic sidecar would prevent",
            "job/reindex: a Job runs to completion",
        ],
    },
    Case {
        file: "batch.yaml",
        args: &["--mode", "native"],
        injected: 2,
        warnings: &[],
    },
    Case {
        file: "statefulset.yaml",
        args: &[],
        injected: 1,
        warnings: &[],
    },
    Case {
        file: "list.yaml",
        args: &[],
        injected: 3,
        warnings: &[
            "replicaset/infra/worker: no Service in the input selects these pods: a Service that targets port 5000 by number must change that port's targetPort to http",
            "pod/infra/debug: no Service",
        ],
    },
    Case {
        file: "helm-output.yaml",
        args: &["--all"],
        injected: 1,
        warnings: &["pod/release-shop-test-connection: a Pod runs to completion"],
    },
    Case {
        file: "helm-output.yaml",
        args: &[],
        injected: 0,
        warnings: &[],
    },
    Case {
        file: "named-port.yaml",
        args: &["--config-map", "orders-lifeguard-config", "--image", "registry.example.com/lifeguard:0.1.0", "--port", "8443"],
        injected: 1,
        warnings: &[],
    },
    // The config in the pod template's annotation (what the webhook does):
    // no ConfigMap generated.
    Case {
        file: "statefulset.yaml",
        args: &["--config-annotation"],
        injected: 1,
        warnings: &[],
    },
    Case {
        file: "list.yaml",
        args: &["--config-annotation", "--mode", "native"],
        injected: 3,
        warnings: &["replicaset/infra/worker: no Service", "pod/infra/debug: no Service"],
    },
];

#[test]
fn corpus_injects_validates_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = std::collections::BTreeSet::new();
    for (i, case) in CASES.iter().enumerate() {
        let ctx = format!("{} {:?}", case.file, case.args);
        files.insert(case.file);
        let input_path = corpus(case.file);
        let input_text = std::fs::read_to_string(&input_path).unwrap();
        let input = parse(&input_text);

        let mut args: Vec<&str> = case.args.to_vec();
        let input_arg = input_path.to_str().unwrap();
        args.extend(["-f", input_arg]);
        let (out_text, warnings) = inject(&args);
        let output = parse(&out_text);
        let out_path = dir.path().join(format!("{i}-{}", case.file));
        std::fs::write(&out_path, &out_text).unwrap();

        // The warnings, in order.
        assert_eq!(
            warnings.len(),
            case.warnings.len(),
            "{ctx}: warnings {warnings:#?}"
        );
        for (w, expected) in warnings.iter().zip(case.warnings) {
            assert!(w.contains(expected), "{ctx}: {w:?} lacks {expected:?}");
        }

        // Valid Kubernetes (a List's items one by one: kubernetes-validate
        // has no schema for List), and the invariants of every injected pod.
        let flat: Vec<Value> = output
            .iter()
            .flat_map(|d| match d["kind"].as_str() {
                Some("List") => d["items"].as_sequence().cloned().unwrap_or_default(),
                _ => vec![d.clone()],
            })
            .collect();
        let flat_path = dir.path().join(format!("{i}-flat-{}", case.file));
        let flat_text: String = flat
            .iter()
            .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
            .collect();
        std::fs::write(&flat_path, flat_text).unwrap();
        // The output itself when it has no List (serde_yaml's own writing
        // of the flattened copy is not what the user gets).
        if flat.len() == output.len() {
            validate(&out_path);
        } else {
            validate(&flat_path);
        }
        let report = invariants::check(&ctx, &input, &output, case.args);
        assert_eq!(report.injected, case.injected, "{ctx}");
        for config in &report.configs {
            let path = dir.path().join(format!("{i}-config.yaml"));
            std::fs::write(&path, config).unwrap();
            let (out, _) = run_bounded(&["check", "--config", path.to_str().unwrap()], 10);
            assert!(
                out.status.success(),
                "{ctx}: lifeguard check on the generated config:\n{config}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }

        // Injecting again changes nothing.
        let mut again_args: Vec<&str> = case.args.to_vec();
        again_args.extend(["-f", out_path.to_str().unwrap()]);
        let (again, again_warnings) = inject(&again_args);
        assert_eq!(
            again, out_text,
            "{ctx}: a second injection changed the output"
        );
        assert!(
            again_warnings.iter().all(|w| !w.contains("already")),
            "{ctx}: {again_warnings:?}"
        );

        // --uninject gives the input back.
        let (back, _) = inject(&["--uninject", "-f", out_path.to_str().unwrap()]);
        let back = parse(&back);
        let expected: Vec<Value> = input.iter().map(invariants::normalise_modes).collect();
        assert_eq!(
            back.len(),
            expected.len(),
            "{ctx}: --uninject left {} documents for {}",
            back.len(),
            expected.len()
        );
        for (b, e) in back.iter().zip(&expected) {
            assert!(
                b == e,
                "{ctx}: --uninject did not restore:\n{}\nexpected:\n{}",
                serde_yaml::to_string(b).unwrap(),
                serde_yaml::to_string(e).unwrap()
            );
        }
    }
    // Every corpus file is used.
    let all: Vec<String> = std::fs::read_dir(repo().join("tests/inject/corpus"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for f in &all {
        assert!(files.contains(f.as_str()), "corpus file {f} has no case");
    }
}

/// Standard input, several files at once, and input that is not YAML.
#[test]
fn stdin_several_files_and_bad_input() {
    let text = std::fs::read_to_string(corpus("named-port.yaml")).unwrap();
    let mut child = Command::new(support::process::binary())
        .arg("inject")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let (from_file, _) = inject(&["-f", corpus("named-port.yaml").to_str().unwrap()]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), from_file);

    let (both, _) = inject(&[
        "-f",
        corpus("named-port.yaml").to_str().unwrap(),
        "-f",
        corpus("statefulset.yaml").to_str().unwrap(),
    ]);
    let docs = parse(&both);
    let injected = docs
        .iter()
        .filter(|d| {
            d["spec"]["template"]["metadata"]["annotations"]
                .get("lifeguard.io/injected")
                .is_some()
        })
        .count();
    assert_eq!(injected, 2);

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "kind: Deployment\nspec: [\n").unwrap();
    let (out, _) = run_bounded(&["inject", "-f", bad.to_str().unwrap()], 10);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not YAML"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (out, _) = run_bounded(&["inject", "-f", "/nonexistent/app.yaml"], 10);
    assert_eq!(out.status.code(), Some(1));
    let (out, _) = run_bounded(
        &[
            "inject",
            "--drain-delay",
            "30",
            "-f",
            corpus("named-port.yaml").to_str().unwrap(),
        ],
        10,
    );
    assert_eq!(out.status.code(), Some(1));
}
