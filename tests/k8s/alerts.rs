//! The alerts, checked by Prometheus's own tools: `promtool check rules` on
//! the rules of deploy/monitoring/ and of the chart, and `promtool test
//! rules` with the unit tests of tests/k8s/alerts.test.yaml (every alert
//! fires in one case and stays silent in another). The two rule sets are the
//! same rules, the chart's scoped by its series selector; every alert's
//! `runbook_url` points at its section of docs/alerts.md.

use crate::render::{self, seq, Rendered};
use serde_yaml::{Mapping, Value};
use std::path::Path;
use std::process::Command;

/// The chart's default `monitoring.prometheusRule.runbookBaseUrl`, also
/// written in deploy/monitoring/prometheusrule.yaml.
fn runbook_base() -> String {
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(render::repo().join("helm/lifeguard/values.yaml")).unwrap(),
    )
    .unwrap();
    values["monitoring"]["prometheusRule"]["runbookBaseUrl"]
        .as_str()
        .expect("monitoring.prometheusRule.runbookBaseUrl")
        .to_owned()
}

/// The Prometheus rule file of a render's one PrometheusRule: its `spec`.
fn rule_file(r: &Rendered) -> Value {
    r.one("PrometheusRule")["spec"].clone()
}

fn alerts(rules: &Value) -> Vec<&Value> {
    seq(&rules["groups"])
        .into_iter()
        .flat_map(|g| seq(&g["rules"]))
        .collect()
}

fn promtool(args: &[&str], dir: &Path, what: &str) -> String {
    support::tools::run_ok(
        Command::new(render::prometheus_tools().join("promtool"))
            .args(args)
            .current_dir(dir),
        &format!("{what}: promtool {args:?}"),
    )
}

/// The chart's rules and deploy/monitoring/'s.
fn rule_sets() -> Vec<(String, Value)> {
    let helm = render::helm_template(None, &["monitoring.prometheusRule.enabled=true"]);
    let deploy = render::kustomize("deploy/monitoring");
    vec![
        (helm.name.clone(), rule_file(&helm)),
        (deploy.name.clone(), rule_file(&deploy)),
    ]
}

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let base = runbook_base();
    let tests_text =
        std::fs::read_to_string(render::repo().join("tests/k8s/alerts.test.yaml")).unwrap();
    let tests: Value = serde_yaml::from_str(&tests_text).unwrap();

    // Every alert has a case where it fires and one where it must not.
    let mut firing = std::collections::BTreeSet::new();
    let mut silent = std::collections::BTreeSet::new();
    for t in seq(&tests["tests"]) {
        for case in seq(&t["alert_rule_test"]) {
            let name = case["alertname"].as_str().unwrap().to_owned();
            if seq(&case["exp_alerts"]).is_empty() {
                silent.insert(name);
            } else {
                firing.insert(name);
            }
        }
    }

    for (name, rules) in rule_sets() {
        let dir = tempfile::tempdir().unwrap();
        // The whole rule file: expressions, durations, annotation templates.
        std::fs::write(
            dir.path().join("full.yaml"),
            serde_yaml::to_string(&rules).unwrap(),
        )
        .unwrap();
        let out = promtool(&["check", "rules", "full.yaml"], dir.path(), &name);
        let all = alerts(&rules);
        assert!(
            out.contains(&format!("SUCCESS: {} rules found", all.len())),
            "{name}: {out}"
        );

        // The unit tests, on the rules with runbook_url as their only
        // annotation.
        let mut reduced = rules.clone();
        for g in reduced["groups"].as_sequence_mut().unwrap() {
            for rule in g["rules"].as_sequence_mut().unwrap() {
                let url = rule["annotations"]["runbook_url"].clone();
                let mut a = Mapping::new();
                a.insert("runbook_url".into(), url);
                rule["annotations"] = Value::Mapping(a);
            }
        }
        std::fs::write(
            dir.path().join("rules.yaml"),
            serde_yaml::to_string(&reduced).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("alerts.test.yaml"),
            tests_text.replace("RUNBOOK#", &format!("{base}#")),
        )
        .unwrap();
        let out = promtool(&["test", "rules", "alerts.test.yaml"], dir.path(), &name);
        assert!(out.contains("SUCCESS"), "{name}: {out}");

        for rule in all {
            let alert = rule["alert"].as_str().expect("alert name");
            assert!(
                firing.contains(alert),
                "{name}: no unit test where {alert} fires"
            );
            assert!(
                silent.contains(alert),
                "{name}: no unit test where {alert} stays silent"
            );
        }
    }
}

#[test]
fn every_alert_links_its_runbook() {
    let base = runbook_base();
    let page = std::fs::read_to_string(render::repo().join("docs/alerts.md")).unwrap();
    for (name, rules) in rule_sets() {
        for rule in alerts(&rules) {
            let alert = rule["alert"].as_str().unwrap();
            assert_eq!(
                rule["annotations"]["runbook_url"].as_str(),
                Some(format!("{base}#{}", alert.to_lowercase()).as_str()),
                "{name}: {alert}"
            );
            assert!(
                page.lines().any(|l| l == format!("## {alert}")),
                "docs/alerts.md has no section for {alert}"
            );
            assert!(
                page.contains(&format!("| `{alert}` |")),
                "docs/alerts.md: {alert} is not in the table"
            );
        }
    }
    // A base URL of the operator's own.
    let r = render::helm_template(
        None,
        &[
            "monitoring.prometheusRule.enabled=true",
            "monitoring.prometheusRule.runbookBaseUrl=https://wiki.example.com/lifeguard",
        ],
    );
    for rule in alerts(&rule_file(&r)) {
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        assert!(
            url.starts_with("https://wiki.example.com/lifeguard#lifeguard"),
            "{url}"
        );
    }
}

/// deploy/monitoring/prometheusrule.yaml is the chart's rule set without the
/// selector (and with the chart's default thresholds).
#[test]
fn deploy_rules_are_the_charts_without_the_selector() {
    let helm = render::helm_template(
        None,
        &[
            "monitoring.prometheusRule.enabled=true",
            "monitoring.prometheusRule.selector=namespace=\"SEL\"",
        ],
    );
    let mut helm_rules = rule_file(&helm);
    for g in helm_rules["groups"].as_sequence_mut().unwrap() {
        g["name"] = "lifeguard".into();
        for rule in g["rules"].as_sequence_mut().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            let stripped = expr
                .replace("{namespace=\"SEL\"}", "")
                .replace("{namespace=\"SEL\", ", "{");
            assert!(!stripped.contains("SEL"), "selector left in {stripped}");
            // Each metric selector of the chart's rules carries the selector.
            assert!(
                render::metrics_in(expr)
                    .iter()
                    .all(|m| expr.contains(&format!("{m}{{namespace=\"SEL\""))),
                "a metric without the release selector: {expr}"
            );
            rule["expr"] = stripped.into();
        }
    }
    let deploy = rule_file(&render::kustomize("deploy/monitoring"));
    // Mappings compare regardless of key order (kustomize sorts keys).
    assert!(
        helm_rules == deploy,
        "deploy/monitoring/prometheusrule.yaml differs from the chart's rules:\n{}\n---\n{}",
        serde_yaml::to_string(&helm_rules).unwrap(),
        serde_yaml::to_string(&deploy).unwrap(),
    );
}
