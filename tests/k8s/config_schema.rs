//! lifeguard's config JSON Schema (docs/config.schema.json, generated from
//! lifeguard's own types) on the chart: every rendered ConfigMap's config
//! (every value set, both kustomize variants) is valid against it, and a
//! typo or a wrong type under `lifeguard.config` fails `helm template`
//! (the chart's values.schema.json embeds the same schema), instead of
//! rendering a config that lifeguard rejects and the pod crash-looping.

use crate::render;

/// The JSON Schema validation error of `config`, if any.
fn schema_error(config: &serde_yaml::Value) -> Option<String> {
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    compiler.set_default_draft(boon::Draft::V7);
    let loc = "urn:lifeguard:config.schema.json";
    compiler
        .add_resource(loc, lifeguard::config::schema::config_schema())
        .expect("the schema loads");
    let index = compiler
        .compile(loc, &mut schemas)
        .expect("the schema compiles");
    let instance = serde_json::to_value(config).expect("YAML as JSON");
    schemas
        .validate(&instance, index)
        .err()
        .map(|e| format!("{e:#}"))
}

#[test]
fn rendered_configs_are_valid_against_the_config_schema() {
    for rendered in render::all_pod_renders() {
        let pod = rendered.pod();
        let config = pod.config();
        if let Some(e) = schema_error(&config) {
            panic!(
                "{}: the rendered config is invalid against docs/config.schema.json:\n{e}\n{}",
                rendered.name,
                pod.config_text()
            );
        }
    }
}

#[test]
fn a_config_typo_fails_helm_template() {
    for set in [
        "lifeguard.config.health.intervall=2s",
        "lifeguard.config.helth.interval=2s",
        "lifeguard.config.health.mode=htp",
        "lifeguard.config.retry.attempts=lots",
        "lifeguard.config.app.connect_timeout=5",
    ] {
        let err = render::helm_template_error(&[set], &[]);
        assert!(
            err.contains("values don't meet the specifications of the schema"),
            "{set}: {err}"
        );
    }
    // The written forms lifeguard accepts render.
    let ok = render::helm_template(
        None,
        &[
            "lifeguard.config.health.interval=5s",
            "lifeguard.config.health.expect_status=2xx",
            "lifeguard.config.client.max_body_size=10Mi",
            "lifeguard.config.app.endpoints[0]=localhost:3000",
        ],
    );
    let config = ok.pod().config();
    assert_eq!(config["health"]["interval"].as_str(), Some("5s"));
    assert_eq!(schema_error(&config), None);
}
