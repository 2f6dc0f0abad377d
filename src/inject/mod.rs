//! Adding lifeguard to the pods a team already runs: Kubernetes YAML in,
//! the same YAML out with lifeguard injected into every opted-in workload
//! (`lifeguard inject`), or taken out again (`lifeguard inject --uninject`).
//! Pure: values in, values out; the command (`inject_cmd`) reads the files.
//!
//! - `pod`: one pod template: the lifeguard container, the app's port taken
//!   over, the shutdown order, the grace period; and its reversal, from the
//!   record the injection leaves in an annotation.
//! - `sidecar`: what lifeguard brings: its container, its config.
//! - `service`: Services of the input that target the app's port by number.
//!
//! Every document of a kind it does not inject passes through with its
//! values unchanged (key order and comments are not kept).

mod emit;
mod pod;
mod service;
mod sidecar;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use std::fmt;

/// The annotation prefix of everything `inject` reads or writes.
pub const PREFIX: &str = "lifeguard.io/";
/// Pod template annotation that opts a workload in (`enabled`) or out
/// (`disabled`, even with `--all`).
pub const INJECT: &str = "lifeguard.io/inject";
/// Pod template annotation naming the app's port (number or name), for
/// pods whose app port is not the first container's first port; it beats
/// `--app-port` (and is the webhook's only way to say it).
pub const APP_PORT: &str = "lifeguard.io/app-port";
/// Set on an injected pod template: the version of lifeguard that injected.
pub const INJECTED: &str = "lifeguard.io/injected";
/// Set on an injected pod template: what the injection changed (JSON), so
/// `--uninject` can undo exactly that.
pub const RECORD: &str = "lifeguard.io/inject-record";
/// Set on an injected pod template when the config travels with the pod
/// ([`ConfigSource::Annotation`], the webhook's way): lifeguard's
/// `config.yaml`, exposed to its container by a `downwardAPI` volume.
pub const CONFIG: &str = "lifeguard.io/config";
/// Set on a Service whose `targetPort`s were rewritten: the original ones
/// (JSON, by service port).
pub const TARGET_PORTS: &str = "lifeguard.io/original-target-ports";

/// The version written in [`INJECTED`].
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How lifeguard runs beside the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A regular container; the app's preStop hook waits for lifeguard's
    /// drain (any Kubernetes version).
    Classic,
    /// An init container with `restartPolicy: Always` (Kubernetes >= 1.29):
    /// started before the app, stopped after it.
    Native,
}

/// The app's port, as given to `--app-port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl PortRef {
    /// A number or an IANA service name.
    pub fn parse(s: &str) -> PortRef {
        match s.parse::<u16>() {
            Ok(n) => PortRef::Number(n),
            Err(_) => PortRef::Name(s.to_owned()),
        }
    }
}

/// Where lifeguard's `config.yaml` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A ConfigMap generated per workload (`<name>-lifeguard`), written
    /// beside it in the output.
    Generated,
    /// A ConfigMap of the user's, by name.
    ConfigMap(String),
    /// The pod's own [`CONFIG`] annotation, mounted through a `downwardAPI`
    /// volume: nothing to create beside the pod (the admission webhook
    /// cannot create ConfigMaps), and editing the annotation of a running
    /// pod still reaches lifeguard's hot reload.
    Annotation,
}

/// What to inject.
#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Every workload, not only those annotated `lifeguard.io/inject: enabled`.
    pub all: bool,
    /// Default: the first port of the first container.
    pub app_port: Option<PortRef>,
    /// Where lifeguard's `config.yaml` comes from.
    pub config: ConfigSource,
    pub image: String,
    /// lifeguard's client listener (the next free port when the pod uses it).
    pub port: u16,
    /// lifeguard's admin listener (likewise).
    pub admin_port: u16,
    /// `drain.delay` and `drain.timeout`, in seconds.
    pub drain_delay: u32,
    pub drain_timeout: u32,
    /// Warn when no Service of the input selects an injected pod (the
    /// command sees whole manifests; the webhook sees one Pod, never its
    /// Services).
    pub warn_unseen_services: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            mode: Mode::Classic,
            all: false,
            app_port: None,
            config: ConfigSource::Generated,
            image: format!("lifeguard:{VERSION}"),
            port: 8080,
            admin_port: 9901,
            drain_delay: 5,
            drain_timeout: 25,
            warn_unseen_services: true,
        }
    }
}

/// Why the input could not be processed at all (a workload that cannot be
/// injected is a [`Warning`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("document {index}: not YAML: {message}")]
    Yaml { index: usize, message: String },
    #[error("cannot write YAML: {0} is not supported")]
    Emit(String),
    #[error("drain delay ({delay}s) must be below the drain timeout ({timeout}s)")]
    Drain { delay: u32, timeout: u32 },
}

/// Something the user should act on, naming the object it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// `kind/name` (with `namespace/` when set).
    pub object: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

/// The documents out, and what the user should know.
#[derive(Debug)]
pub struct Output {
    pub docs: Vec<Value>,
    pub warnings: Vec<Warning>,
    /// Pod templates injected (or, with `--uninject`, restored).
    pub changed: usize,
}

/// Parses a multi-document YAML stream (empty documents dropped).
pub fn parse_stream(text: &str) -> Result<Vec<Value>, InjectError> {
    let mut docs = Vec::new();
    for (index, d) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = Value::deserialize(d).map_err(|e| InjectError::Yaml {
            index: index + 1,
            message: e.to_string(),
        })?;
        if !v.is_null() {
            docs.push(v);
        }
    }
    Ok(docs)
}

/// Writes documents as one YAML stream that YAML 1.1 readers (kubectl)
/// read with the same values (see `emit`).
pub fn emit_stream(docs: &[Value]) -> Result<String, InjectError> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&emit::document(d).map_err(|e| InjectError::Emit(e.0))?);
    }
    Ok(out)
}

/// Injects lifeguard into the opted-in workloads of `docs`.
pub fn inject(mut docs: Vec<Value>, opts: &Options) -> Result<Output, InjectError> {
    if opts.drain_delay >= opts.drain_timeout {
        return Err(InjectError::Drain {
            delay: opts.drain_delay,
            timeout: opts.drain_timeout,
        });
    }
    let mut warnings = Vec::new();
    let mut injected = Vec::new();
    let mut extra = Vec::new();
    for doc in &mut docs {
        for_each_object(doc, &mut |obj| {
            fix_octal_modes(obj);
            let kind = kind_of(obj);
            let id = object_id(obj_meta(obj), &kind);
            let Some(Some(template)) = pod_template_mut(obj, &kind) else {
                return;
            };
            match pod::inject(template, &kind, &id, opts) {
                pod::Injected::Done(done) => {
                    warnings.extend(done.warnings);
                    if let Some(cm) = done.config_map {
                        extra.push(cm);
                    }
                    injected.push(done.facts);
                }
                pod::Injected::Skipped(Some(w)) => warnings.push(w),
                pod::Injected::Skipped(None) => {}
            }
        });
    }
    // Services anywhere in the input (before or after their workload).
    let mut served = vec![false; injected.len()];
    for doc in &mut docs {
        for_each_object(doc, &mut |obj| {
            if kind_of(obj) == "Service" {
                service::retarget(obj, &injected, &mut served);
            }
        });
    }
    for (facts, served) in injected.iter().zip(&served) {
        if !served && facts.has_service && opts.warn_unseen_services {
            warnings.push(service::unseen_warning(facts));
        }
    }
    let changed = injected.len();
    // Each generated ConfigMap right after the documents, in input order.
    docs.extend(extra);
    Ok(Output {
        docs,
        warnings,
        changed,
    })
}

/// Takes lifeguard out of every pod template it was injected into, restores
/// the Services it retargeted and drops the ConfigMaps it generated.
pub fn uninject(mut docs: Vec<Value>) -> Output {
    let mut warnings = Vec::new();
    let mut changed = 0;
    for doc in &mut docs {
        for_each_object(doc, &mut |obj| {
            fix_octal_modes(obj);
            let kind = kind_of(obj);
            if kind == "Service" {
                service::restore(obj);
                return;
            }
            let id = object_id(obj_meta(obj), &kind);
            if let Some(Some(template)) = pod_template_mut(obj, &kind) {
                match pod::uninject(template) {
                    Ok(true) => changed += 1,
                    Ok(false) => {}
                    Err(message) => warnings.push(Warning {
                        object: id,
                        message,
                    }),
                }
            }
        });
    }
    // Generated ConfigMaps (top level or in a List).
    let generated = |v: &Value| {
        kind_of(v) == "ConfigMap" && v["metadata"]["annotations"].get(INJECTED).is_some()
    };
    docs.retain(|d| !generated(d));
    for d in &mut docs {
        if let Some(items) = d.get_mut("items").and_then(Value::as_sequence_mut) {
            items.retain(|i| !generated(i));
        }
    }
    Output {
        docs,
        warnings,
        changed,
    }
}

/// Calls `f` on a document, or on each item of a `List` (and of `*List`
/// kinds such as `DeploymentList`).
fn for_each_object(doc: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    let is_list = kind_of(doc).ends_with("List") && doc.get("items").is_some();
    if is_list {
        if let Some(items) = doc.get_mut("items").and_then(Value::as_sequence_mut) {
            for item in items {
                for_each_object(item, f);
            }
        }
        return;
    }
    f(doc);
}

fn kind_of(v: &Value) -> String {
    v.get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn obj_meta(v: &Value) -> &Value {
    static NULL: Value = Value::Null;
    v.get("metadata").unwrap_or(&NULL)
}

/// `kind/name`, with the namespace when set.
fn object_id(meta: &Value, kind: &str) -> String {
    let name = meta
        .get("name")
        .and_then(Value::as_str)
        .or_else(|| meta.get("generateName").and_then(Value::as_str))
        .unwrap_or("(unnamed)");
    match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) => format!("{}/{ns}/{name}", kind.to_lowercase()),
        None => format!("{}/{name}", kind.to_lowercase()),
    }
}

/// The pod template of a workload kind (`Some(None)` when the kind has one
/// but this document lacks it); `None` for other kinds.
fn pod_template_mut<'a>(obj: &'a mut Value, kind: &str) -> Option<Option<pod::Template<'a>>> {
    let workload = pod::Workload::of_kind(kind)?;
    let meta = obj_meta(obj).clone();
    let template = match workload {
        pod::Workload::Pod => Some(obj),
        pod::Workload::CronJob => obj
            .get_mut("spec")
            .and_then(|s| s.get_mut("jobTemplate"))
            .and_then(|s| s.get_mut("spec"))
            .and_then(|s| s.get_mut("template")),
        _ => obj.get_mut("spec").and_then(|s| s.get_mut("template")),
    };
    Some(template.and_then(|t| {
        if !t.is_mapping() {
            return None;
        }
        Some(pod::Template {
            value: t,
            workload,
            owner_meta: meta,
        })
    }))
}

/// YAML 1.1 (what kubectl reads) takes an unquoted `0644` as octal 420;
/// the YAML 1.2 parser used here reads it as the string "0644" and would
/// write it back quoted, which Kubernetes rejects. The file modes of a pod
/// spec's volumes are the one place manifests write octal: they become
/// integers again. (A quoted "0644" there was invalid anyway.)
fn fix_octal_modes(obj: &mut Value) {
    let kind = kind_of(obj);
    let Some(Some(t)) = pod_template_mut(obj, &kind) else {
        return;
    };
    let Some(volumes) = t
        .value
        .get_mut("spec")
        .and_then(|s| s.get_mut("volumes"))
        .and_then(Value::as_sequence_mut)
    else {
        return;
    };
    fn fix(v: &mut Value) {
        match v {
            Value::Mapping(m) => {
                for (k, val) in m.iter_mut() {
                    if matches!(k.as_str(), Some("defaultMode" | "mode")) {
                        if let Some(n) = val.as_str().and_then(octal) {
                            *val = Value::Number(n.into());
                            continue;
                        }
                    }
                    fix(val);
                }
            }
            Value::Sequence(s) => s.iter_mut().for_each(fix),
            _ => {}
        }
    }
    volumes.iter_mut().for_each(fix);
}

/// "0644" → 420.
fn octal(s: &str) -> Option<u64> {
    let digits = s.strip_prefix('0')?;
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    u64::from_str_radix(digits, 8).ok()
}

/// A mapping's entry, created empty (a mapping) when absent.
fn entry<'a>(parent: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let m = parent.as_mapping_mut()?;
    if !m.contains_key(key) {
        m.insert(key.into(), Value::Mapping(Mapping::new()));
    }
    m.get_mut(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_modes() {
        assert_eq!(octal("0644"), Some(420));
        assert_eq!(octal("0400"), Some(256));
        assert_eq!(octal("0"), None);
        assert_eq!(octal("0x1"), None);
        assert_eq!(octal("0648"), None);
        assert_eq!(octal("644"), None);
    }

    #[test]
    fn lists_and_bad_yaml() {
        let docs = parse_stream("a: [\n").unwrap_err();
        assert!(docs.to_string().contains("document 1"), "{docs}");
        let docs = parse_stream("---\n---\nkind: List\nitems: []\n").unwrap();
        assert_eq!(docs.len(), 1);
    }
}
