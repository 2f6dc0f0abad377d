//! The JSON Schema of `config.yaml`, generated from the serde mirror
//! (`raw`) so it cannot say something lifeguard does not: published as
//! `docs/config.schema.json` for editors (`lifeguard schema`) and embedded in
//! the Helm chart's `values.schema.json` under `lifeguard.config`
//! (`lifeguard schema --chart`), so a typo fails `helm template` too.
//! Draft 07 (what the chart's schema is written in), every subschema
//! inline, and each key's default taken from the effective config of an
//! empty file. The schema checks structure (keys, types, forms, integer
//! ranges); `lifeguard check` remains the full validation (duration and
//! size ranges, files, addresses).

use super::raw::RawConfig;
use super::Config;
use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

/// Keys the chart sets itself (from its own values), so not under
/// `lifeguard.config`.
pub const SET_BY_CHART: [&str; 3] = ["listen", "admin", "drain"];

/// The schema of the whole config file.
pub fn config_schema() -> Value {
    let settings = SchemaSettings::draft07().with(|s| s.inline_subschemas = true);
    let schema = settings
        .into_generator()
        .into_root_schema_for::<RawConfig>();
    let mut schema = schema.to_value();
    unwrap_descriptions(&mut schema);
    if let Ok(defaults) = Config::from_yaml("", "defaults") {
        if let Ok(defaults) = serde_json::to_value(defaults.effective()) {
            insert_defaults(&mut schema, &defaults);
        }
    }
    schema
}

/// The schema of the chart's `lifeguard.config`: the config's sections
/// except those the chart sets itself.
pub fn chart_config_schema() -> Value {
    let full = config_schema();
    let mut properties = full["properties"].clone();
    if let Some(p) = properties.as_object_mut() {
        for key in SET_BY_CHART {
            p.remove(key);
        }
    }
    json!({
        "type": "object",
        "description": "lifeguard config keys other than listen, admin and drain (set by the chart); generated from lifeguard's own config schema (docs/config.schema.json)",
        "additionalProperties": false,
        "properties": properties,
    })
}

/// Doc comments arrive with their line breaks; an editor wraps by itself.
fn unwrap_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(obj) => {
            for (key, v) in obj.iter_mut() {
                match v {
                    Value::String(text) if key == "description" => {
                        *text = text.replace('\n', " ");
                    }
                    _ => unwrap_descriptions(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(unwrap_descriptions),
        _ => {}
    }
}

/// Adds `"default"` to every property of `schema` that `defaults` has.
fn insert_defaults(schema: &mut Value, defaults: &Value) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (key, sub) in props.iter_mut() {
        let Some(default) = defaults.get(key) else {
            continue;
        };
        if default.is_object() {
            insert_defaults(sub, default);
        } else if let Some(obj) = sub.as_object_mut() {
            obj.insert("default".into(), default.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_closed_and_typed() {
        let s = config_schema();
        assert_eq!(s["additionalProperties"], json!(false));
        let app = &s["properties"]["app"];
        assert_eq!(app["additionalProperties"], json!(false));
        assert!(app["properties"]["connect_timeout"]["pattern"].is_string());
        assert_eq!(app["properties"]["connect_timeout"]["default"], json!("1s"));
        assert_eq!(
            s["properties"]["health"]["properties"]["mode"]["enum"],
            json!(["http", "tcp"])
        );
        assert_eq!(
            s["properties"]["retry"]["properties"]["attempts"]["maximum"],
            json!(10)
        );
        let chart = chart_config_schema();
        assert!(chart["properties"].get("listen").is_none());
        assert!(chart["properties"].get("health").is_some());
    }
}
