//! What lifeguard brings into a pod: its container and its config (a
//! generated ConfigMap, unless the user names one of theirs).

use super::{Mode, Options, INJECTED, VERSION};
use serde_json::json;
use serde_yaml::Value;

/// The name of lifeguard's container.
pub(super) const CONTAINER: &str = "lifeguard";
/// The volume holding lifeguard's config.
pub(super) const CONFIG_VOLUME: &str = "lifeguard-config";
/// The name of lifeguard's admin port (probes, metrics, drain).
pub(super) const ADMIN_PORT_NAME: &str = "lifeguard-admin";
/// Where the config volume is mounted, and the file lifeguard reads.
const CONFIG_DIR: &str = "/etc/lifeguard";
const CONFIG_FILE: &str = "config.yaml";

/// The ports and names chosen for one pod.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub mode: Mode,
    /// The port lifeguard listens on, and its name (the app port's old name).
    pub port: u16,
    pub port_name: String,
    pub admin_port: u16,
    pub app_port: u16,
    /// `health.path` when the app has an HTTP probe on its port; TCP probes
    /// otherwise.
    pub health_path: Option<String>,
    pub grace_seconds: i64,
}

fn to_yaml(v: serde_json::Value) -> Value {
    // A JSON value always has a YAML form.
    name_first(serde_yaml::to_value(v).unwrap_or(Value::Null))
}

/// Mappings with their `name` (and `kind`, `apiVersion`) first, as people
/// write them (JSON objects here come out sorted).
fn name_first(v: Value) -> Value {
    match v {
        Value::Mapping(m) => {
            let mut out = serde_yaml::Mapping::new();
            for key in ["apiVersion", "kind", "name"] {
                if let Some(x) = m.get(key) {
                    out.insert(key.into(), name_first(x.clone()));
                }
            }
            for (k, x) in m {
                if !out.contains_key(&k) {
                    out.insert(k, name_first(x));
                }
            }
            Value::Mapping(out)
        }
        Value::Sequence(s) => Value::Sequence(s.into_iter().map(name_first).collect()),
        other => other,
    }
}

/// lifeguard's container (a native sidecar in native mode).
pub(super) fn container(plan: &Plan, opts: &Options) -> Value {
    let probe = |path: &str| json!({"httpGet": {"path": path, "port": ADMIN_PORT_NAME}});
    let mut c = json!({
        "name": CONTAINER,
        "image": opts.image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["--config", format!("{CONFIG_DIR}/{CONFIG_FILE}")],
        "ports": [
            {"name": plan.port_name, "containerPort": plan.port, "protocol": "TCP"},
            {"name": ADMIN_PORT_NAME, "containerPort": plan.admin_port, "protocol": "TCP"},
        ],
        "startupProbe": probe("/livez"),
        "readinessProbe": probe("/readyz"),
        "livenessProbe": probe("/livez"),
        "resources": {
            "requests": {"cpu": "50m", "memory": "32Mi"},
            "limits": {"memory": "128Mi"},
        },
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            // A directory mount (never subPath): ConfigMap updates reach the
            // file and lifeguard's hot reload.
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": true},
        ],
    });
    c["startupProbe"]["periodSeconds"] = json!(1);
    c["startupProbe"]["failureThreshold"] = json!(30);
    c["readinessProbe"]["periodSeconds"] = json!(5);
    c["readinessProbe"]["timeoutSeconds"] = json!(2);
    c["readinessProbe"]["failureThreshold"] = json!(1);
    c["livenessProbe"]["periodSeconds"] = json!(10);
    c["livenessProbe"]["timeoutSeconds"] = json!(2);
    c["livenessProbe"]["failureThreshold"] = json!(3);
    if plan.mode == Mode::Native {
        c["restartPolicy"] = json!("Always");
    }
    to_yaml(c)
}

/// The volume of lifeguard's config.
pub(super) fn volume(config_map: &str) -> Value {
    to_yaml(json!({"name": CONFIG_VOLUME, "configMap": {"name": config_map}}))
}

/// The volume of lifeguard's config when it is the pod's `annotation`:
/// the kubelet writes the annotation's value to `config.yaml` and rewrites
/// it when the annotation changes (as for a ConfigMap: a new directory and
/// an atomic symlink swap, so hot reload sees it).
pub(super) fn annotation_volume(annotation: &str) -> Value {
    to_yaml(json!({
        "name": CONFIG_VOLUME,
        "downwardAPI": {
            "items": [{
                "path": CONFIG_FILE,
                "fieldRef": {"fieldPath": format!("metadata.annotations['{annotation}']")},
            }],
        },
    }))
}

/// The app container's preStop hook in classic mode: the kubelet waits on
/// lifeguard's `/admin/drained` (open to the kubelet: it only reads), so the
/// app gets SIGTERM once lifeguard has drained. No client is needed in the
/// app's image.
pub(super) fn app_pre_stop(plan: &Plan, opts: &Options) -> Value {
    to_yaml(json!({
        "httpGet": {
            "path": format!("/admin/drained?wait={}s", opts.drain_timeout + 5),
            "port": plan.admin_port,
        }
    }))
}

/// lifeguard's `config.yaml` for the pod.
pub(super) fn config_text(plan: &Plan, opts: &Options, owner: &str) -> String {
    let health = match &plan.health_path {
        Some(path) => format!("  mode: http\n  path: {}\n", quote(path)),
        None => "  # The app has no HTTP probe on its port: probe by connecting.\n  mode: tcp\n"
            .to_owned(),
    };
    format!(
        "# lifeguard's config for {owner}, generated by `lifeguard inject`\n\
         # (docs/configuration.md). listen and admin.listen are the ports of the\n\
         # lifeguard container; app.endpoints is the app's port.\n\
         listen: \"0.0.0.0:{port}\"\n\
         admin:\n  listen: \"0.0.0.0:{admin}\"\n\
         app:\n  endpoints: [\"127.0.0.1:{app}\"]\n\
         health:\n{health}\
         drain:\n  delay: {delay}s\n  timeout: {timeout}s\n  grace_period: {grace}s\n\
         log:\n  format: json\n",
        port = plan.port,
        admin = plan.admin_port,
        app = plan.app_port,
        delay = opts.drain_delay,
        timeout = opts.drain_timeout,
        grace = plan.grace_seconds,
    )
}

/// A double-quoted YAML scalar.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"/\"".to_owned())
}

/// The generated ConfigMap (marked with [`INJECTED`], so `--uninject`
/// removes it).
pub(super) fn config_map(
    name: &str,
    namespace: Option<&str>,
    plan: &Plan,
    opts: &Options,
    owner: &str,
) -> Value {
    let mut cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/component": "lifeguard"},
            "annotations": {INJECTED: VERSION},
        },
        "data": {CONFIG_FILE: config_text(plan, opts, owner)},
    });
    if let Some(ns) = namespace {
        cm["metadata"]["namespace"] = json!(ns);
    }
    to_yaml(cm)
}
