//! Services of the input that send traffic to an injected app's port by
//! number: their `targetPort` becomes lifeguard's port name. A Service that
//! targets the app's port by name needs nothing: lifeguard has taken the
//! name over.

use super::pod::Facts;
use super::{entry, Warning, TARGET_PORTS};
use serde_yaml::Value;
use std::collections::BTreeMap;

/// Whether `svc` selects the pods of `facts` (same namespace, every
/// selector label on the pod template).
fn selects(svc: &Value, facts: &Facts) -> bool {
    let ns = svc["metadata"]
        .get("namespace")
        .and_then(Value::as_str)
        .map(str::to_owned);
    if ns != facts.namespace {
        return false;
    }
    let Some(selector) = svc["spec"].get("selector").and_then(Value::as_mapping) else {
        return false;
    };
    !selector.is_empty()
        && selector
            .iter()
            .all(|(k, v)| facts.labels.get(k).is_some_and(|l| l == v))
}

/// Rewrites the ports of `svc` that reach an injected app's port by number;
/// marks in `served` the injected pods it selects.
pub(super) fn retarget(svc: &mut Value, injected: &[Facts], served: &mut [bool]) {
    let mut originals: BTreeMap<String, Value> = BTreeMap::new();
    for (facts, served) in injected.iter().zip(served.iter_mut()) {
        if !selects(svc, facts) {
            continue;
        }
        *served = true;
        let Some(ports) = svc
            .get_mut("spec")
            .and_then(|s| s.get_mut("ports"))
            .and_then(Value::as_sequence_mut)
        else {
            continue;
        };
        for p in ports {
            let Some(port) = p.get("port").and_then(Value::as_u64) else {
                continue;
            };
            let target = p.get("targetPort").cloned();
            // targetPort defaults to port.
            let number = match &target {
                None => Some(port),
                Some(t) => t
                    .as_u64()
                    .or_else(|| t.as_str().and_then(|s| s.parse().ok())),
            };
            if number == Some(u64::from(facts.app_port)) {
                originals.insert(port.to_string(), target.unwrap_or(Value::Null));
                if let Some(m) = p.as_mapping_mut() {
                    m.insert(
                        "targetPort".into(),
                        Value::String(facts.lifeguard_port_name.clone()),
                    );
                }
            }
        }
    }
    if originals.is_empty() {
        return;
    }
    let json = serde_json::to_string(&originals).unwrap_or_default();
    if let Some(annotations) = svc
        .get_mut("metadata")
        .and_then(|m| entry(m, "annotations"))
        .and_then(Value::as_mapping_mut)
    {
        annotations.insert(TARGET_PORTS.into(), Value::String(json));
    }
}

/// Puts back the `targetPort`s [`retarget`] changed.
pub(super) fn restore(svc: &mut Value) {
    let Some(json) = svc["metadata"]["annotations"]
        .get(TARGET_PORTS)
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return;
    };
    let originals: BTreeMap<String, Value> = serde_json::from_str(&json).unwrap_or_default();
    if let Some(ports) = svc
        .get_mut("spec")
        .and_then(|s| s.get_mut("ports"))
        .and_then(Value::as_sequence_mut)
    {
        for p in ports {
            let Some(port) = p.get("port").and_then(Value::as_u64) else {
                continue;
            };
            let Some(original) = originals.get(&port.to_string()) else {
                continue;
            };
            if let Some(m) = p.as_mapping_mut() {
                if original.is_null() {
                    m.remove("targetPort");
                } else {
                    m.insert("targetPort".into(), original.clone());
                }
            }
        }
    }
    if let Some(meta) = svc.get_mut("metadata").and_then(Value::as_mapping_mut) {
        let empty = match meta.get_mut("annotations").and_then(Value::as_mapping_mut) {
            Some(a) => {
                a.remove(TARGET_PORTS);
                a.is_empty()
            }
            None => false,
        };
        if empty {
            meta.remove("annotations");
        }
    }
}

/// For an injected workload no Service of the input selects: which Service
/// ports to check.
pub(super) fn unseen_warning(facts: &Facts) -> Warning {
    let by_name = match &facts.app_port_name {
        Some(name) => {
            format!("a Service that targets the app's port by name ({name}) follows with no edit; ")
        }
        None => String::new(),
    };
    Warning {
        object: facts.id.clone(),
        message: format!(
            "no Service in the input selects these pods: {by_name}a Service that targets \
             port {app} by number must change that port's targetPort to {name} \
             (lifeguard, port {lg}), or its traffic bypasses lifeguard",
            app = facts.app_port,
            name = facts.lifeguard_port_name,
            lg = facts.lifeguard_port,
        ),
    }
}
