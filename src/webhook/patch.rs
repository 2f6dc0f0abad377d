//! The JSON Patch (RFC 6902) that turns the Pod the API server sent into
//! the injected one: objects are compared member by member, anything else
//! (lists included) is replaced whole. `add` on a member that exists
//! replaces its value (RFC 6902 §4.1), so only `add` and `remove` are needed.

use serde_json::{json, Map, Value};

/// The operations turning `old` into `new` (both JSON objects at the top).
pub(super) fn diff(old: &Value, new: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => members(o, n, "", &mut ops),
        _ if old != new => ops.push(json!({"op": "replace", "path": "", "value": new})),
        _ => {}
    }
    ops
}

fn members(old: &Map<String, Value>, new: &Map<String, Value>, path: &str, ops: &mut Vec<Value>) {
    for (key, n) in new {
        let here = format!("{path}/{}", escape(key));
        match old.get(key) {
            Some(o) if o == n => {}
            Some(Value::Object(o)) if n.is_object() => {
                if let Value::Object(n) = n {
                    members(o, n, &here, ops);
                }
            }
            _ => ops.push(json!({"op": "add", "path": here, "value": n})),
        }
    }
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        ops.push(json!({"op": "remove", "path": format!("{path}/{}", escape(key))}));
    }
}

/// A JSON Pointer reference token (RFC 6901 §3): `~` → `~0`, `/` → `~1`.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_added_replaced_removed() {
        let old = json!({"metadata": {"name": "a", "annotations": {"x": "1"}}, "spec": {"containers": [1], "gone": true}});
        let new = json!({"metadata": {"name": "a", "annotations": {"x": "1", "lifeguard.io/injected": "v"}}, "spec": {"containers": [1, 2], "grace": 35}});
        assert_eq!(
            diff(&old, &new),
            vec![
                json!({"op": "add", "path": "/metadata/annotations/lifeguard.io~1injected", "value": "v"}),
                json!({"op": "add", "path": "/spec/containers", "value": [1, 2]}),
                json!({"op": "add", "path": "/spec/grace", "value": 35}),
                json!({"op": "remove", "path": "/spec/gone"}),
            ]
        );
        assert!(diff(&old, &old).is_empty());
        assert_eq!(escape("a~b/c"), "a~0b~1c");
    }

    #[test]
    fn absent_annotations_are_added_whole() {
        let old = json!({"metadata": {"name": "a"}});
        let new = json!({"metadata": {"name": "a", "annotations": {"k": "v"}}});
        assert_eq!(
            diff(&old, &new),
            vec![json!({"op": "add", "path": "/metadata/annotations", "value": {"k": "v"}})]
        );
    }
}
