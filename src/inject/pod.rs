//! One pod template: lifeguard injected (its container and config volume,
//! the app's named port taken over, the app's probes kept on the app, the
//! app's preStop wait in classic mode, the grace period raised to fit the
//! drain), and taken out again from the record the injection leaves.

use super::sidecar::{self, Plan, ADMIN_PORT_NAME, CONFIG_VOLUME, CONTAINER};
use super::{
    entry, ConfigSource, Mode, Options, PortRef, Warning, APP_PORT, CONFIG, INJECT, INJECTED,
    RECORD, VERSION,
};
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;

/// The kinds whose pods `inject` handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Workload {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
}

impl Workload {
    pub(super) fn of_kind(kind: &str) -> Option<Workload> {
        Some(match kind {
            "Pod" => Workload::Pod,
            "Deployment" => Workload::Deployment,
            "StatefulSet" => Workload::StatefulSet,
            "DaemonSet" => Workload::DaemonSet,
            "ReplicaSet" => Workload::ReplicaSet,
            "Job" => Workload::Job,
            "CronJob" => Workload::CronJob,
            _ => return None,
        })
    }
}

/// A pod template (`metadata` + `spec`; for a bare Pod, the Pod itself) and
/// the metadata of the object that holds it.
#[derive(Debug)]
pub(super) struct Template<'a> {
    pub value: &'a mut Value,
    pub workload: Workload,
    pub owner_meta: Value,
}

/// What the Services of the input need to know about an injected pod.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub id: String,
    pub namespace: Option<String>,
    pub labels: Mapping,
    pub app_port: u16,
    /// The app port's name before the injection.
    pub app_port_name: Option<String>,
    pub lifeguard_port: u16,
    pub lifeguard_port_name: String,
    /// Pods that take traffic (not Jobs, nor Pods that run to completion).
    pub has_service: bool,
}

#[derive(Debug)]
pub(super) struct Done {
    pub facts: Facts,
    pub config_map: Option<Value>,
    pub warnings: Vec<Warning>,
}

#[derive(Debug)]
pub(super) enum Injected {
    Done(Box<Done>),
    /// Left as it was, with a warning when the user asked for it.
    Skipped(Option<Warning>),
}

/// What an injection changed, kept in the [`RECORD`] annotation.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Record {
    mode: Mode,
    /// The app container's name, and the port lifeguard forwards to.
    app: String,
    app_port: u16,
    /// The app port's name before and after (when it had one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port_rename: Option<(String, String)>,
    /// Probes and hooks of the app container whose port name followed the
    /// rename (`readinessProbe.httpGet`, `lifecycle.postStart.tcpSocket`…).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    renamed_refs: Vec<String>,
    /// The app's preStop hook was added (classic mode).
    #[serde(default)]
    pre_stop: bool,
    /// `terminationGracePeriodSeconds` was raised.
    #[serde(default)]
    grace_raised: bool,
    /// Its value before (none: it was unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grace_before: Option<i64>,
    /// Keys that did not exist and were created: `metadata`, `annotations`,
    /// `initContainers`, `volumes`, `lifecycle`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    created: Vec<String>,
}

const PROBES: [&str; 3] = ["readinessProbe", "livenessProbe", "startupProbe"];
const HANDLERS: [&str; 2] = ["httpGet", "tcpSocket"];

fn skip(id: &str, message: impl Into<String>) -> Injected {
    Injected::Skipped(Some(Warning {
        object: id.to_owned(),
        message: message.into(),
    }))
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Injects lifeguard into `t`, unless it opted out, is injected already, or
/// cannot be (a warning says why). Nothing is changed before every check
/// has passed.
pub(super) fn inject(t: Template<'_>, kind: &str, id: &str, opts: &Options) -> Injected {
    let annotations = t.value["metadata"]["annotations"].clone();
    if annotations.get(INJECTED).is_some() {
        return Injected::Skipped(None);
    }
    let wanted = match str_of(&annotations, INJECT) {
        Some("enabled" | "true") => true,
        Some("disabled" | "false") => false,
        Some(other) => {
            return skip(
                id,
                format!("{INJECT}: {other:?} is neither enabled nor disabled; not injected"),
            )
        }
        None => opts.all,
    };
    if !wanted {
        return Injected::Skipped(None);
    }
    let spec = &t.value["spec"];
    let containers = seq(&spec["containers"]);
    if containers.is_empty() {
        return skip(id, "the pod has no containers; not injected");
    }
    let inits = seq(&spec["initContainers"]);
    if containers
        .iter()
        .chain(inits)
        .any(|c| str_of(c, "name") == Some(CONTAINER))
    {
        return skip(
            id,
            format!(
                "a container is already named {CONTAINER} (injected by other means?); not injected"
            ),
        );
    }
    if seq(&spec["volumes"])
        .iter()
        .any(|v| str_of(v, "name") == Some(CONFIG_VOLUME))
    {
        return skip(
            id,
            format!("a volume is already named {CONFIG_VOLUME}; not injected"),
        );
    }
    let runs_to_completion = matches!(t.workload, Workload::Job | Workload::CronJob)
        || (t.workload == Workload::Pod
            && matches!(str_of(spec, "restartPolicy"), Some("Never" | "OnFailure")));
    if runs_to_completion && opts.mode == Mode::Classic {
        return skip(
            id,
            format!(
                "a {kind} runs to completion, which a classic sidecar would prevent: \
                 injected only with --mode native (Kubernetes >= 1.29); left as it was"
            ),
        );
    }

    // The app container and its port.
    // The pod's own `lifeguard.io/app-port` beats --app-port (the webhook
    // has no per-pod flags).
    let chosen = match annotations.get(APP_PORT) {
        Some(Value::String(p)) => Some(PortRef::parse(p)),
        Some(Value::Number(n)) => Some(PortRef::parse(&n.to_string())),
        _ => opts.app_port.clone(),
    };
    let Some((app_index, app_port, app_port_name)) = find_app(containers, chosen.as_ref()) else {
        return skip(
            id,
            match &chosen {
                Some(PortRef::Name(n)) => {
                    format!("no container has a port named {n}; not injected")
                }
                _ => {
                    "the first container declares no port: pass --app-port; not injected".to_owned()
                }
            },
        );
    };
    let app = &containers[app_index];
    let app_name = str_of(app, "name").unwrap_or_default().to_owned();

    // Ports and names in use in the pod.
    let mut used_ports = BTreeSet::new();
    let mut used_names = BTreeSet::new();
    for c in containers.iter().chain(inits) {
        for p in seq(&c["ports"]) {
            if let Some(n) = p.get("containerPort").and_then(Value::as_u64) {
                used_ports.insert(n);
            }
            if let Some(n) = str_of(p, "name") {
                used_names.insert(n.to_owned());
            }
        }
    }
    used_ports.insert(u64::from(app_port));
    let Some(port) = free_port(opts.port, &used_ports) else {
        return skip(id, "no free port for lifeguard's listener; not injected");
    };
    used_ports.insert(u64::from(port));
    let Some(admin_port) = free_port(opts.admin_port, &used_ports) else {
        return skip(
            id,
            "no free port for lifeguard's admin listener; not injected",
        );
    };
    if used_names.contains(ADMIN_PORT_NAME) {
        return skip(
            id,
            format!("a port is already named {ADMIN_PORT_NAME}; not injected"),
        );
    }
    let (port_name, rename) = match &app_port_name {
        Some(old) => (old.clone(), Some((old.clone(), renamed(old, &used_names)))),
        None => {
            let name = ["http", "lifeguard-http"]
                .into_iter()
                .find(|n| !used_names.contains(*n))
                .unwrap_or("lifeguard-http");
            (name.to_owned(), None)
        }
    };

    // The grace period: raised to fit the drain, never lowered.
    let grace_now = spec
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64);
    let needed = i64::from(opts.drain_timeout) + 10;
    let grace = grace_now.unwrap_or(30).max(needed);
    let grace_raised = grace != grace_now.unwrap_or(30);

    let plan = Plan {
        mode: opts.mode,
        port,
        port_name: port_name.clone(),
        admin_port,
        app_port,
        health_path: health_path(app, app_port, app_port_name.as_deref()),
        grace_seconds: grace,
    };

    // The config.
    let owner_name = str_of(&t.owner_meta, "name")
        .or_else(|| str_of(&t.owner_meta, "generateName").map(|g| g.trim_end_matches('-')))
        .unwrap_or("pod");
    let namespace = str_of(&t.owner_meta, "namespace").map(str::to_owned);
    let (volume, config_map, config_annotation) = match &opts.config {
        ConfigSource::ConfigMap(name) => (sidecar::volume(name), None, None),
        ConfigSource::Generated => {
            let name = format!("{owner_name}-lifeguard");
            let cm = sidecar::config_map(&name, namespace.as_deref(), &plan, opts, id);
            (sidecar::volume(&name), Some(cm), None)
        }
        ConfigSource::Annotation => (
            sidecar::annotation_volume(CONFIG),
            None,
            Some(sidecar::config_text(&plan, opts, id)),
        ),
    };

    let mut warnings = Vec::new();
    let mut record = Record {
        mode: opts.mode,
        app: app_name.clone(),
        app_port,
        port_rename: rename.clone(),
        renamed_refs: Vec::new(),
        pre_stop: false,
        grace_raised,
        grace_before: grace_now,
        created: Vec::new(),
    };
    let facts = Facts {
        id: id.to_owned(),
        namespace,
        labels: labels_of(t.value),
        app_port,
        app_port_name: app_port_name.clone(),
        lifeguard_port: port,
        lifeguard_port_name: port_name,
        has_service: !runs_to_completion,
    };

    // Every check passed: change the template.
    let Template { value, .. } = t;
    let Some(spec) = value.get_mut("spec") else {
        return skip(id, "the pod has no spec; not injected");
    };
    if record.grace_raised {
        if let Some(m) = spec.as_mapping_mut() {
            m.insert("terminationGracePeriodSeconds".into(), grace.into());
        }
    }
    let container = sidecar::container(&plan, opts);
    let list_key = match opts.mode {
        Mode::Classic => "containers",
        Mode::Native => "initContainers",
    };
    push(spec, list_key, container, &mut record.created);
    push(spec, "volumes", volume, &mut record.created);
    if let Some(app) = spec
        .get_mut("containers")
        .and_then(Value::as_sequence_mut)
        .and_then(|c| c.get_mut(app_index))
    {
        if let Some((old, new)) = &rename {
            rename_port(app, old, new, &mut record.renamed_refs);
        }
        if opts.mode == Mode::Classic {
            if app["lifecycle"].get("preStop").is_some() {
                warnings.push(Warning {
                    object: id.to_owned(),
                    message: format!(
                        "container {app_name} has its own preStop hook, kept: lifeguard's drain \
                         wait (httpGet /admin/drained on port {admin_port}) was not added, so the \
                         app may get SIGTERM before lifeguard has drained"
                    ),
                });
            } else {
                if app.get("lifecycle").is_none() {
                    record.created.push("lifecycle".to_owned());
                }
                if let Some(l) = entry(app, "lifecycle").and_then(Value::as_mapping_mut) {
                    l.insert("preStop".into(), sidecar::app_pre_stop(&plan, opts));
                    record.pre_stop = true;
                }
            }
        }
    }
    if value.get("metadata").is_none() {
        record.created.push("metadata".to_owned());
    }
    if value["metadata"].get("annotations").is_none() {
        record.created.push("annotations".to_owned());
    }
    let record_json = serde_json::to_string(&record).unwrap_or_default();
    if let Some(a) = entry(value, "metadata")
        .and_then(|m| entry(m, "annotations"))
        .and_then(Value::as_mapping_mut)
    {
        a.insert(INJECTED.into(), VERSION.into());
        a.insert(RECORD.into(), record_json.into());
        if let Some(text) = config_annotation {
            a.insert(CONFIG.into(), text.into());
        }
    }
    Injected::Done(Box::new(Done {
        facts,
        config_map,
        warnings,
    }))
}

/// Appends `item` to the list `key` of `spec`, creating it if needed.
fn push(spec: &mut Value, key: &str, item: Value, created: &mut Vec<String>) {
    let Some(m) = spec.as_mapping_mut() else {
        return;
    };
    if !matches!(m.get(key), Some(Value::Sequence(_))) {
        if m.get(key).is_none() {
            created.push(key.to_owned());
        }
        m.insert(key.into(), Value::Sequence(Vec::new()));
    }
    if let Some(list) = m.get_mut(key).and_then(Value::as_sequence_mut) {
        list.push(item);
    }
}

/// The app container (index), its port and the port's name.
fn find_app(
    containers: &[Value],
    chosen: Option<&PortRef>,
) -> Option<(usize, u16, Option<String>)> {
    let port_of = |p: &Value| {
        p.get("containerPort")
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
    };
    let name_of = |p: &Value| str_of(p, "name").map(str::to_owned);
    match chosen {
        None => {
            let p = seq(&containers[0]["ports"]).first()?;
            Some((0, port_of(p)?, name_of(p)))
        }
        Some(PortRef::Number(n)) => {
            for (i, c) in containers.iter().enumerate() {
                if let Some(p) = seq(&c["ports"]).iter().find(|p| port_of(p) == Some(*n)) {
                    return Some((i, *n, name_of(p)));
                }
            }
            // Not declared: the first container's, unnamed.
            Some((0, *n, None))
        }
        Some(PortRef::Name(name)) => {
            for (i, c) in containers.iter().enumerate() {
                if let Some(p) = seq(&c["ports"])
                    .iter()
                    .find(|p| str_of(p, "name") == Some(name))
                {
                    return Some((i, port_of(p)?, Some(name.clone())));
                }
            }
            None
        }
    }
}

/// The first port from `from` up that no container uses.
fn free_port(from: u16, used: &BTreeSet<u64>) -> Option<u16> {
    (from..=u16::MAX).find(|p| !used.contains(&u64::from(*p)))
}

/// The app port's new name: `app-<name>`, a valid port name (at most 15
/// characters, no `-` at either end) not used in the pod.
fn renamed(old: &str, used: &BTreeSet<String>) -> String {
    let base: String = format!("app-{old}").chars().take(15).collect();
    let base = base.trim_end_matches('-').to_owned();
    if !used.contains(&base) {
        return base;
    }
    (2..100)
        .map(|i| {
            let suffix = format!("-{i}");
            let head: String = base.chars().take(15 - suffix.len()).collect();
            format!("{}{suffix}", head.trim_end_matches('-'))
        })
        .find(|n| !used.contains(n))
        .unwrap_or_else(|| "app-port".to_owned())
}

/// `health.path` from an HTTP probe of the app on its port, if any.
fn health_path(app: &Value, port: u16, name: Option<&str>) -> Option<String> {
    PROBES.iter().find_map(|probe| {
        let get = &app[*probe]["httpGet"];
        let on_port = match get.get("port") {
            Some(Value::Number(n)) => n.as_u64() == Some(u64::from(port)),
            Some(Value::String(s)) => Some(s.as_str()) == name || s.parse() == Ok(port),
            _ => false,
        };
        let http = str_of(get, "scheme").is_none_or(|s| s.eq_ignore_ascii_case("HTTP"));
        if on_port && http {
            str_of(get, "path")
                .filter(|p| p.starts_with('/'))
                .map(str::to_owned)
        } else {
            None
        }
    })
}

/// The handlers (probes, lifecycle hooks) of a container that can name a
/// port, as (path, handler).
fn handler_paths() -> Vec<(String, [&'static str; 3])> {
    let mut out = Vec::new();
    for probe in PROBES {
        for h in HANDLERS {
            out.push((format!("{probe}.{h}"), [probe, h, ""]));
        }
    }
    for hook in ["postStart", "preStop"] {
        for h in HANDLERS {
            out.push((format!("lifecycle.{hook}.{h}"), ["lifecycle", hook, h]));
        }
    }
    out
}

fn handler_mut<'a>(c: &'a mut Value, path: &[&str; 3]) -> Option<&'a mut Value> {
    let mut v = c;
    for key in path.iter().filter(|k| !k.is_empty()) {
        v = v.get_mut(*key)?;
    }
    Some(v)
}

/// Renames the app's port `old` to `new`, and every probe or hook of the
/// app container that names it (a port name resolves within its container:
/// left alone, they would name a port the app no longer has).
fn rename_port(app: &mut Value, old: &str, new: &str, refs: &mut Vec<String>) {
    if let Some(ports) = app.get_mut("ports").and_then(Value::as_sequence_mut) {
        for p in ports {
            if str_of(p, "name") == Some(old) {
                if let Some(m) = p.as_mapping_mut() {
                    m.insert("name".into(), new.into());
                }
            }
        }
    }
    for (path, keys) in handler_paths() {
        if let Some(h) = handler_mut(app, &keys) {
            if str_of(h, "port") == Some(old) {
                if let Some(m) = h.as_mapping_mut() {
                    m.insert("port".into(), new.into());
                    refs.push(path);
                }
            }
        }
    }
}

/// Takes lifeguard out of `t` if it was injected. Ok(false): nothing to do.
pub(super) fn uninject(t: Template<'_>) -> Result<bool, String> {
    let value = t.value;
    let annotations = &value["metadata"]["annotations"];
    if annotations.get(INJECTED).is_none() {
        return Ok(false);
    }
    let record: Record = str_of(annotations, RECORD)
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| {
            format!("{INJECTED} is set but {RECORD} is missing or unreadable: left as it is")
        })?;
    let created = |k: &str| record.created.iter().any(|c| c == k);
    let Some(spec) = value.get_mut("spec") else {
        return Err("the pod has no spec: left as it is".to_owned());
    };
    for key in ["containers", "initContainers"] {
        remove_named(spec, key, CONTAINER, created(key));
    }
    remove_named(spec, "volumes", CONFIG_VOLUME, created("volumes"));
    if record.grace_raised {
        if let Some(m) = spec.as_mapping_mut() {
            match record.grace_before {
                Some(g) => m.insert("terminationGracePeriodSeconds".into(), g.into()),
                None => m.remove("terminationGracePeriodSeconds"),
            };
        }
    }
    if let Some(app) = spec
        .get_mut("containers")
        .and_then(Value::as_sequence_mut)
        .and_then(|cs| {
            cs.iter_mut()
                .find(|c| str_of(c, "name") == Some(record.app.as_str()))
        })
    {
        if record.pre_stop {
            let empty = match app.get_mut("lifecycle").and_then(Value::as_mapping_mut) {
                Some(l) => {
                    l.remove("preStop");
                    l.is_empty()
                }
                None => false,
            };
            if empty && created("lifecycle") {
                if let Some(m) = app.as_mapping_mut() {
                    m.remove("lifecycle");
                }
            }
        }
        if let Some((old, new)) = &record.port_rename {
            if let Some(ports) = app.get_mut("ports").and_then(Value::as_sequence_mut) {
                for p in ports {
                    if str_of(p, "name") == Some(new.as_str()) {
                        if let Some(m) = p.as_mapping_mut() {
                            m.insert("name".into(), old.as_str().into());
                        }
                    }
                }
            }
            for (path, keys) in handler_paths() {
                if !record.renamed_refs.contains(&path) {
                    continue;
                }
                if let Some(m) = handler_mut(app, &keys).and_then(Value::as_mapping_mut) {
                    m.insert("port".into(), old.as_str().into());
                }
            }
        }
    }
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_mapping_mut) {
        let empty = match meta.get_mut("annotations").and_then(Value::as_mapping_mut) {
            Some(a) => {
                a.remove(INJECTED);
                a.remove(RECORD);
                a.remove(CONFIG);
                a.is_empty()
            }
            None => false,
        };
        if empty && created("annotations") {
            meta.remove("annotations");
        }
        if meta.is_empty() && created("metadata") {
            if let Some(m) = value.as_mapping_mut() {
                m.remove("metadata");
            }
        }
    }
    Ok(true)
}

/// Removes the item named `name` from the list `key`; the list too if it is
/// left empty and the injection created it.
fn remove_named(spec: &mut Value, key: &str, name: &str, created: bool) {
    let Some(m) = spec.as_mapping_mut() else {
        return;
    };
    let empty = match m.get_mut(key).and_then(Value::as_sequence_mut) {
        Some(list) => {
            list.retain(|i| str_of(i, "name") != Some(name));
            list.is_empty()
        }
        None => false,
    };
    if empty && created {
        m.remove(key);
    }
}

/// The labels of a pod template (empty when it has none).
pub(super) fn labels_of(template: &Value) -> Mapping {
    template["metadata"]
        .get("labels")
        .and_then(Value::as_mapping)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renamed_ports_are_valid_and_unique() {
        let used: BTreeSet<String> = ["http".to_owned(), "app-http".to_owned()].into();
        assert_eq!(renamed("web", &used), "app-web");
        assert_eq!(renamed("http", &used), "app-http-2");
        let long = renamed("metrics-extra-x", &BTreeSet::new());
        assert!(long.len() <= 15 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn free_ports_skip_used_ones() {
        let used: BTreeSet<u64> = [8080, 8081].into();
        assert_eq!(free_port(8080, &used), Some(8082));
        assert_eq!(free_port(9901, &used), Some(9901));
    }
}
