//! Rendering the manifests (helm template, kubectl kustomize, with the tools
//! of scripts/install-tools.sh) and reading them: the pod, its containers,
//! ports by name, lifeguard's config as mounted from its ConfigMap.

use serde_yaml::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Kubernetes version given to `helm template` (capabilities).
pub(crate) const HELM_KUBE_VERSION: &str = "1.30.0";

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bin directory of scripts/install-tools.sh (`support::tools`).
pub(crate) fn tools() -> &'static Path {
    support::tools::k8s_tools()
}

/// The directory of prometheus and promtool (scripts/install-prometheus.sh,
/// once per test process).
pub(crate) fn prometheus_tools() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let out = Command::new("bash")
            .arg(repo().join("scripts/install-prometheus.sh"))
            .output()
            .expect("run scripts/install-prometheus.sh");
        assert!(
            out.status.success(),
            "scripts/install-prometheus.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        PathBuf::from(stdout.lines().last().expect("bin dir").trim())
    })
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// `helm template demo helm/lifeguard` with an optional value file of
/// helm/lifeguard/ci/ and `--set` overrides.
pub(crate) fn helm_template(values: Option<&str>, sets: &[&str]) -> Rendered {
    let mut cmd = helm_command(values, sets);
    let name = format!("helm {} {}", values.unwrap_or("default"), sets.join(" "));
    let text = run(&mut cmd, &name);
    Rendered::parse(name.trim(), &text)
}

/// `helm template` (with `extra` arguments last) that is expected to fail:
/// its error message.
pub(crate) fn helm_template_error(sets: &[&str], extra: &[&str]) -> String {
    let out = helm_command(None, sets)
        .args(extra)
        .output()
        .expect("run helm");
    assert!(
        !out.status.success(),
        "helm template {sets:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `helm template demo <chart>` of another chart (e.g. an app chart with
/// helm/lifeguard as a dependency), with `--set` overrides.
pub(crate) fn helm_template_chart(chart: &Path, sets: &[&str]) -> Rendered {
    let mut cmd = helm_command(None, sets);
    // The chart argument of helm_command is replaced: helm takes the last.
    let args: Vec<std::ffi::OsString> = cmd.get_args().map(|a| a.to_owned()).collect();
    let bin = tools();
    let helm_home = bin.parent().expect("tools dir").join("helm");
    let mut own = Command::new(bin.join("helm"));
    own.env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"));
    for a in args {
        if a == repo().join("helm/lifeguard").as_os_str() {
            own.arg(chart);
        } else {
            own.arg(a);
        }
    }
    cmd = own;
    let name = format!("helm {} {}", chart.display(), sets.join(" "));
    let text = run(&mut cmd, &name);
    Rendered::parse(name.trim(), &text)
}

fn helm_command(values: Option<&str>, sets: &[&str]) -> Command {
    let bin = tools();
    let helm_home = bin.parent().expect("tools dir").join("helm");
    let mut cmd = Command::new(bin.join("helm"));
    cmd.env("HELM_CACHE_HOME", helm_home.join("cache"))
        .env("HELM_CONFIG_HOME", helm_home.join("config"))
        .env("HELM_DATA_HOME", helm_home.join("data"))
        .args(["template", "demo"])
        .arg(repo().join("helm/lifeguard"))
        .args(["--kube-version", HELM_KUBE_VERSION, "--namespace", "demo"]);
    if let Some(v) = values {
        cmd.arg("--values")
            .arg(repo().join("helm/lifeguard/ci").join(v));
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

/// `kubectl kustomize <dir>` (relative to the repository).
pub(crate) fn kustomize(dir: &str) -> Rendered {
    let mut cmd = Command::new(tools().join("kubectl"));
    cmd.arg("kustomize").arg(repo().join(dir));
    let text = run(&mut cmd, &format!("kubectl kustomize {dir}"));
    Rendered::parse(&format!("kustomize {dir}"), &text)
}

/// The pods the invariants are checked on: every value set of the chart and
/// both deploy/ variants.
pub(crate) fn all_pod_renders() -> Vec<Rendered> {
    let mut list = vec![helm_template(None, &[])];
    let mut sets: Vec<String> = std::fs::read_dir(repo().join("helm/lifeguard/ci"))
        .expect("helm/lifeguard/ci")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    sets.sort();
    assert!(sets.len() >= 4, "helm/lifeguard/ci has too few value sets");
    for s in &sets {
        list.push(helm_template(Some(s), &[]));
    }
    list.push(kustomize("deploy"));
    list.push(kustomize("deploy/native"));
    list
}

/// A multi-document render.
pub(crate) struct Rendered {
    pub name: String,
    pub docs: Vec<Value>,
}

impl Rendered {
    pub(crate) fn parse(name: &str, text: &str) -> Rendered {
        use serde::Deserialize;
        let docs = serde_yaml::Deserializer::from_str(text)
            .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{name}: bad YAML: {e}")))
            .filter(|v| !v.is_null())
            .collect();
        Rendered {
            name: name.to_owned(),
            docs,
        }
    }

    pub(crate) fn of_kind(&self, kind: &str) -> Vec<&Value> {
        self.docs
            .iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    }

    pub(crate) fn one(&self, kind: &str) -> &Value {
        let all = self.of_kind(kind);
        assert_eq!(all.len(), 1, "{}: expected one {kind}", self.name);
        all[0]
    }

    pub(crate) fn named(&self, kind: &str, name: &str) -> &Value {
        self.of_kind(kind)
            .into_iter()
            .find(|d| d["metadata"]["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{}: no {kind} named {name}", self.name))
    }

    pub(crate) fn pod(&self) -> Pod<'_> {
        let deployment = self.one("Deployment");
        let template = &deployment["spec"]["template"];
        let spec = &template["spec"];
        let containers = seq(&spec["containers"]);
        let inits = seq(&spec["initContainers"]);
        let is_lifeguard = |c: &&&Value| c["name"].as_str() == Some("lifeguard");
        let (lifeguard, native) = match (
            containers.iter().find(is_lifeguard),
            inits.iter().find(is_lifeguard),
        ) {
            (Some(c), None) => (*c, false),
            (None, Some(c)) => (*c, true),
            other => panic!(
                "{}: lifeguard must be in exactly one of containers / initContainers: {other:?}",
                self.name
            ),
        };
        let apps: Vec<&Value> = containers
            .iter()
            .copied()
            .filter(|c| c["name"].as_str() != Some("lifeguard"))
            .collect();
        assert_eq!(apps.len(), 1, "{}: expected one app container", self.name);
        Pod {
            rendered: self,
            spec,
            labels: &template["metadata"]["labels"],
            annotations: &template["metadata"]["annotations"],
            lifeguard,
            native,
            app: apps[0],
        }
    }
}

/// The pod template of the render's Deployment.
pub(crate) struct Pod<'a> {
    pub rendered: &'a Rendered,
    pub spec: &'a Value,
    pub labels: &'a Value,
    pub annotations: &'a Value,
    pub lifeguard: &'a Value,
    /// lifeguard is an init container (a native sidecar, if restartPolicy
    /// is Always).
    pub native: bool,
    pub app: &'a Value,
}

impl Pod<'_> {
    pub(crate) fn grace_seconds(&self) -> u64 {
        self.spec["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap_or(30)
    }

    /// The `--config` path in lifeguard's args.
    pub(crate) fn config_path(&self) -> String {
        let args: Vec<&str> = seq(&self.lifeguard["args"])
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        let i = args
            .iter()
            .position(|a| *a == "--config")
            .unwrap_or_else(|| panic!("{}: lifeguard has no --config", self.rendered.name));
        args[i + 1].to_owned()
    }

    /// The volume mounted in lifeguard's container at `path`'s directory.
    pub(crate) fn volume_for(&self, path: &str) -> (&Value, &Value) {
        let dir = Path::new(path).parent().expect("absolute path");
        let mount = seq(&self.lifeguard["volumeMounts"])
            .into_iter()
            .find(|m| m["mountPath"].as_str().map(Path::new) == Some(dir))
            .unwrap_or_else(|| panic!("{}: nothing mounted at {dir:?}", self.rendered.name));
        let name = mount["name"].as_str().unwrap();
        let volume = seq(&self.spec["volumes"])
            .into_iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("{}: no volume {name}", self.rendered.name));
        (mount, volume)
    }

    /// config.yaml as lifeguard reads it: from the ConfigMap mounted at the
    /// directory of `--config`, or from the pod's annotation a downwardAPI
    /// volume mounts there (the admission webhook's way).
    pub(crate) fn config_text(&self) -> String {
        let path = self.config_path();
        let (_, volume) = self.volume_for(&path);
        if let Some(items) = volume["downwardAPI"]["items"].as_sequence() {
            let file = Path::new(&path).file_name().unwrap().to_str().unwrap();
            let item = items
                .iter()
                .find(|i| i["path"].as_str() == Some(file))
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no {file} in the downwardAPI volume",
                        self.rendered.name
                    )
                });
            let field = item["fieldRef"]["fieldPath"].as_str().expect("fieldRef");
            let key = field
                .strip_prefix("metadata.annotations['")
                .and_then(|k| k.strip_suffix("']"))
                .unwrap_or_else(|| panic!("{}: {field} is not an annotation", self.rendered.name));
            return self.annotations[key]
                .as_str()
                .unwrap_or_else(|| panic!("{}: no annotation {key}", self.rendered.name))
                .to_owned();
        }
        let cm_name = volume["configMap"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: config volume is not a ConfigMap", self.rendered.name));
        let cm = self.rendered.named("ConfigMap", cm_name);
        let file = Path::new(&path).file_name().unwrap().to_str().unwrap();
        cm["data"][file]
            .as_str()
            .unwrap_or_else(|| panic!("{}: ConfigMap {cm_name} has no {file}", self.rendered.name))
            .to_owned()
    }

    pub(crate) fn config(&self) -> Value {
        serde_yaml::from_str(&self.config_text()).expect("config.yaml is YAML")
    }

    /// Drain delay, timeout and grace_period from the config.
    pub(crate) fn drain(&self) -> (Duration, Duration, Duration) {
        let c = self.config();
        let d = |k: &str, default: &str| duration(c["drain"][k].as_str().unwrap_or(default));
        (
            d("delay", "5s"),
            d("timeout", "25s"),
            d("grace_period", "30s"),
        )
    }

    pub(crate) fn listen_port(&self) -> u16 {
        port_of(self.config()["listen"].as_str().unwrap_or("0.0.0.0:8080"))
    }

    pub(crate) fn admin_port(&self) -> u16 {
        port_of(
            self.config()["admin"]["listen"]
                .as_str()
                .unwrap_or("0.0.0.0:9901"),
        )
    }
}

/// The items of a YAML sequence (none for anything else).
pub(crate) fn seq(v: &Value) -> Vec<&Value> {
    v.as_sequence()
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

/// A container port given by number or by name.
pub(crate) fn resolve_port(container: &Value, port: &Value) -> Option<u16> {
    if let Some(n) = port.as_u64() {
        return u16::try_from(n).ok();
    }
    let name = port.as_str()?;
    if let Ok(n) = name.parse::<u16>() {
        return Some(n);
    }
    seq(&container["ports"])
        .into_iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|n| u16::try_from(n).ok())
}

/// "0.0.0.0:8080" -> 8080.
pub(crate) fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("not IP:PORT: {addr}"))
}

/// A lifeguard/Prometheus duration: "250ms", "5s", "2m", "1h".
pub(crate) fn duration(s: &str) -> Duration {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or_else(|| panic!("duration without unit: {s}"));
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().unwrap_or_else(|_| panic!("bad duration: {s}"));
    match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => panic!("bad duration unit: {s}"),
    }
}

/// Every label of `selector` is on `labels`.
pub(crate) fn selects(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .is_some_and(|m| !m.is_empty() && m.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The metric names (and types) documented in the table of docs/metrics.md.
pub(crate) fn documented_metrics() -> Vec<(String, String)> {
    let page = std::fs::read_to_string(repo().join("docs/metrics.md")).expect("docs/metrics.md");
    let list: Vec<(String, String)> = page
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `lifeguard_")?;
            let name = format!("lifeguard_{}", &rest[..rest.find('`')?]);
            let kind = l.split('|').nth(2)?.trim().to_owned();
            Some((name, kind))
        })
        .collect();
    assert!(list.len() > 10, "docs/metrics.md: metrics table not found");
    list
}

/// The `lifeguard_*` names used in a PromQL expression.
pub(crate) fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("lifeguard_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

/// Whether `name` is a documented metric (histograms: with their
/// `_bucket`/`_sum`/`_count` series).
pub(crate) fn is_documented(name: &str, documented: &[(String, String)]) -> bool {
    documented.iter().any(|(m, kind)| {
        name == m
            || (kind == "histogram"
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(m.as_str())))
    })
}

/// (), [] and {} balance, outside of double-quoted strings.
pub(crate) fn balanced(expr: &str) -> bool {
    let mut stack = Vec::new();
    let mut in_str = false;
    let mut escaped = false;
    for c in expr.chars() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    stack.is_empty() && !in_str
}

/// A port on 127.0.0.1 nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// `kubernetes-validate --strict` of `docs` for Kubernetes 1.29 and 1.33:
/// asserts each run succeeded and returns its output, one `(version,
/// output)` per run, for the caller's checks of the lines.
pub(crate) fn kubernetes_validate(docs: &[Value], what: &str) -> Vec<(&'static str, String)> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("render.yaml");
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
        .collect();
    std::fs::write(&file, text).unwrap();
    ["1.29.0", "1.33.0"]
        .into_iter()
        .map(|v| {
            let out = Command::new(tools().join("kubernetes-validate"))
                .args(["--strict", "-k", v])
                .arg(&file)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{what}: {v}: {text}");
            (v, text)
        })
        .collect()
}

/// As [`kubernetes_validate`], every resource passing.
pub(crate) fn assert_valid(docs: &[Value], what: &str) {
    for (v, text) in kubernetes_validate(docs, what) {
        assert!(
            text.lines()
                .all(|l| l.trim().is_empty() || l.contains(" passed for resource ")),
            "{what}: {v}: {text}"
        );
    }
}
