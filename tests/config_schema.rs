//! The config's JSON Schema, generated from lifeguard's own types
//! (`lifeguard::config::schema`) and published twice: docs/config.schema.json
//! for editors, and the `lifeguard.config` subtree of the Helm chart's
//! values.schema.json. Both committed copies must equal the generated schema
//! (run scripts/update-config-schema.sh after changing a key), the schema
//! must accept every config in the repository (config.yaml, deploy/'s
//! ConfigMaps, the chart's values, YAML examples in the docs, and what
//! `lifeguard config` prints for each) and reject typos and wrong types —
//! with lifeguard itself agreeing on each verdict. (The chart's rendered
//! ConfigMaps are checked against it in tests/k8s, `config_schema`.)
//! Validated with `boon`, an independent JSON Schema implementation.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A compiled schema: `check(yaml value)` → the validation error, if any.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn new(schema: Value) -> Validator {
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V7);
        let loc = "urn:lifeguard:config.schema.json";
        compiler.add_resource(loc, schema).unwrap();
        let index = compiler.compile(loc, &mut schemas).unwrap();
        Validator { schemas, index }
    }

    fn check(&self, config: &serde_yaml::Value) -> Result<(), String> {
        let instance: Value = serde_json::to_value(config).map_err(|e| e.to_string())?;
        self.schemas
            .validate(&instance, self.index)
            .map_err(|e| format!("{e:#}"))
    }
}

fn config_schema() -> Validator {
    Validator::new(lifeguard::config::schema::config_schema())
}

fn yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn the_committed_schemas_are_the_generated_one() {
    let generated = lifeguard::config::schema::config_schema();
    assert_eq!(
        read_json("docs/config.schema.json"),
        generated,
        "docs/config.schema.json is stale: run scripts/update-config-schema.sh"
    );
    let values = read_json("helm/lifeguard/values.schema.json");
    assert_eq!(
        values["properties"]["lifeguard"]["properties"]["config"],
        lifeguard::config::schema::chart_config_schema(),
        "helm/lifeguard/values.schema.json (lifeguard.config) is stale: run scripts/update-config-schema.sh"
    );
    // The chart's part is the file's part, less what the chart sets itself.
    let chart = lifeguard::config::schema::chart_config_schema();
    for (key, sub) in generated["properties"].as_object().unwrap() {
        if lifeguard::config::schema::SET_BY_CHART.contains(&key.as_str()) {
            assert!(chart["properties"].get(key).is_none(), "{key}");
        } else {
            assert_eq!(&chart["properties"][key], sub, "{key}");
        }
    }
}

/// Every lifeguard config kept in the repository, by where it is.
fn repository_configs() -> Vec<(String, String)> {
    let mut configs = vec![(
        "config.yaml".to_owned(),
        std::fs::read_to_string(repo().join("config.yaml")).unwrap(),
    )];
    // deploy/: every ConfigMap's config.yaml.
    let mut stack = vec![repo().join("deploy")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path).unwrap();
                for doc in serde_yaml::Deserializer::from_str(&text) {
                    let doc: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
                    if doc["kind"] == "ConfigMap" {
                        if let Some(c) = doc["data"]["config.yaml"].as_str() {
                            configs.push((format!("{} (ConfigMap)", rel(&path)), c.to_owned()));
                        }
                    }
                }
            }
        }
    }
    // ```yaml blocks of the docs and README that are lifeguard configs
    // (every top-level key one of the config's sections).
    let sections = lifeguard::config::schema::config_schema()["properties"].clone();
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.push(repo().join("README.md"));
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for block in text.split("```yaml\n").skip(1) {
            let block = block.split("```").next().unwrap_or("");
            let Ok(serde_yaml::Value::Mapping(m)) = serde_yaml::from_str(block) else {
                continue;
            };
            if m.keys()
                .all(|k| k.as_str().is_some_and(|k| sections.get(k).is_some()))
            {
                configs.push((format!("{} (```yaml)", rel(&doc)), block.to_owned()));
            }
        }
    }
    configs
}

fn rel(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn the_schema_accepts_every_config_in_the_repository() {
    let schema = config_schema();
    let configs = repository_configs();
    assert!(
        configs.iter().any(|(w, _)| w.starts_with("deploy/")),
        "no ConfigMap found under deploy/"
    );
    assert!(
        configs.iter().any(|(w, _)| w.starts_with("README.md")),
        "the README's Quick start config is not found"
    );
    for (where_, text) in &configs {
        if let Err(e) = schema.check(&yaml(text)) {
            panic!("{where_}: the schema rejects it:\n{e}\n{text}");
        }
        // What `lifeguard config` would print for it is valid too. Files
        // the config names may not exist here: drop those keys first.
        let mut v = yaml(text);
        for (section, key) in [
            ("admin", "token_file"),
            ("tls", "cert_file"),
            ("tls", "key_file"),
            ("maintenance", "page"),
            ("maintenance", "bypass_token_file"),
        ] {
            if let Some(m) = v.get_mut(section).and_then(|s| s.as_mapping_mut()) {
                m.remove(key);
            }
        }
        if v.get("tls").is_some() {
            v.as_mapping_mut().unwrap().remove("tls");
        }
        let text = serde_yaml::to_string(&v).unwrap();
        let config = lifeguard::config::Config::from_yaml(&text, where_)
            .unwrap_or_else(|e| panic!("{where_}: lifeguard rejects it: {e}"));
        if let Err(e) = schema.check(&config.effective()) {
            panic!("{where_}: the schema rejects its effective config:\n{e}");
        }
    }
}

#[test]
fn the_chart_schema_accepts_the_charts_values() {
    let chart = Validator::new(lifeguard::config::schema::chart_config_schema());
    let mut files = vec![repo().join("helm/lifeguard/values.yaml")];
    for entry in std::fs::read_dir(repo().join("helm/lifeguard/ci")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let mut seen = 0;
    for file in files {
        let values = yaml(&std::fs::read_to_string(&file).unwrap());
        let config = &values["lifeguard"]["config"];
        if config.is_null() {
            continue;
        }
        seen += 1;
        if let Err(e) = chart.check(config) {
            panic!("{}: lifeguard.config rejected:\n{e}", rel(&file));
        }
    }
    assert!(seen >= 1, "no lifeguard.config in the chart's values");
}

/// Typos and wrong types: the schema rejects each, and so does lifeguard.
#[test]
fn the_schema_rejects_typos_and_wrong_types() {
    let schema = config_schema();
    let chart = Validator::new(lifeguard::config::schema::chart_config_schema());
    for bad in [
        "health:\n  intervall: 2s\n",
        "helth:\n  interval: 2s\n",
        "app:\n  conect_timeout: 1s\n",
        "app:\n  endpoints: []\n",
        "app:\n  endpoints: [\"x:y\"]\n",
        "app:\n  connect_timeout: 5\n",
        "app:\n  connect_timeout: fast\n",
        "app:\n  max_in_flight: -1\n",
        "client:\n  max_body_size: lots\n",
        "health:\n  mode: htp\n",
        "health:\n  healthy_threshold: 0\n",
        "health:\n  expect_status: 600\n",
        "retry:\n  attempts: 11\n",
        "retry:\n  budget_percent: \"20\"\n",
        "log:\n  format: xml\n",
        "maintenance:\n  enabled: maybe\n",
        "unavailable: 5\n",
    ] {
        let v = yaml(bad);
        assert!(schema.check(&v).is_err(), "the schema accepts {bad:?}");
        assert!(
            lifeguard::config::Config::from_yaml(bad, "t").is_err(),
            "lifeguard accepts {bad:?}"
        );
        let top = v.as_mapping().unwrap().keys().next().unwrap();
        if top != "listen" && top != "admin" && top != "drain" {
            assert!(chart.check(&v).is_err(), "the chart accepts {bad:?}");
        }
    }
    // What the chart sets itself is refused under lifeguard.config.
    assert!(chart.check(&yaml("listen: \":8080\"\n")).is_err());
    // Written forms lifeguard accepts, the schema accepts too.
    for good in [
        "listen: \":8080\"\n",
        "app:\n  endpoints: [\"localhost:3000\", \"[::1]:3001\"]\n",
        "client:\n  max_body_size: 0\n  max_header_size: 64Ki\n",
        "client:\n  max_body_size: 10Mi\n",
        "reload:\n  poll_interval: 0\n",
        "health:\n  expect_status: 200\n",
        "health:\n  expect_status: \"2xx, 304\"\n",
        "app:\n  response_timeout: 1m30s\n",
    ] {
        if let Err(e) = schema.check(&yaml(good)) {
            panic!("the schema rejects {good:?}: {e}");
        }
        if let Err(e) = lifeguard::config::Config::from_yaml(good, "t") {
            panic!("lifeguard rejects {good:?}: {e}");
        }
    }
    assert_eq!(
        lifeguard::config::schema::config_schema()["properties"]["health"]["properties"]
            ["expect_status"]["default"],
        json!("100-499")
    );
}
