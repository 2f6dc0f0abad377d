#!/usr/bin/env bash
# Validates the Kubernetes packaging:
#   1. helm lint --strict of helm/lifeguard, with the default values and with
#      every value set in helm/lifeguard/ci/;
#   2. helm template of each value set, and kustomize builds of deploy/,
#      deploy/native/, deploy/monitoring/ and deploy/migration/, written to
#      OUT_DIR (default target/k8s-rendered) for the checks of tests/k8s.rs;
#   3. kubernetes-validate --strict of every rendered manifest against each
#      Kubernetes version of KUBE_VERSIONS. Custom resources of the Prometheus
#      Operator (PodMonitor, ServiceMonitor, PrometheusRule) have no schema
#      there: they are skipped here, with a message, and checked structurally
#      by tests/k8s.rs. Any other resource without a schema is an error.
#
# Exit 0 when everything passes. Tools come from scripts/install-tools.sh.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-${OUT_DIR:-$repo/target/k8s-rendered}}"
# Native sidecars need 1.29; the newest schemas catch removed fields.
read -r -a kube_versions <<<"${KUBE_VERSIONS:-1.29.0 1.33.0}"
helm_kube_version="${HELM_KUBE_VERSION:-1.30.0}"
crd_kinds="PodMonitor ServiceMonitor PrometheusRule"

bin="$("$repo/scripts/install-tools.sh")"
helm="$bin/helm"
kubectl="$bin/kubectl"
validate="$bin/kubernetes-validate"

# Keep helm away from the user's helm config and caches.
tools="$(dirname "$bin")"
export HELM_CACHE_HOME="$tools/helm/cache" HELM_CONFIG_HOME="$tools/helm/config" HELM_DATA_HOME="$tools/helm/data"

chart="$repo/helm/lifeguard"
rm -rf "$out"
mkdir -p "$out"
fail=0
step() { echo "==> $*"; }
problem() { echo "FAIL: $*"; fail=1; }

# --- 1. helm lint -------------------------------------------------------------
value_sets=("")
for f in "$chart"/ci/*.yaml; do value_sets+=("$f"); done
for f in "${value_sets[@]}"; do
  name="$(basename "${f:-default}" .yaml)"
  args=(--strict --kube-version "$helm_kube_version")
  [[ -n "$f" ]] && args+=(--values "$f")
  step "helm lint $name"
  if ! lint_out="$("$helm" lint "$chart" "${args[@]}" 2>&1)"; then
    echo "$lint_out"
    problem "helm lint ($name)"
  fi
done

# --- 2. render -----------------------------------------------------------------
for f in "${value_sets[@]}"; do
  name="$(basename "${f:-default}" .yaml)"
  args=(--kube-version "$helm_kube_version" --namespace demo)
  [[ -n "$f" ]] && args+=(--values "$f")
  step "helm template $name"
  if ! "$helm" template demo "$chart" "${args[@]}" >"$out/helm-$name.yaml"; then
    problem "helm template ($name)"
  fi
done
# NOTES.txt is not part of `helm template`'s output: render it through a
# scratch copy of the chart that includes it in a template of its own.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
cp -r "$chart" "$scratch/"
printf 'notes: {{ include "lifeguard/templates/NOTES.txt" . | toJson }}\n' \
  >"$scratch/lifeguard/templates/zz-notes-check.yaml"
for f in "${value_sets[@]}"; do
  name="$(basename "${f:-default}" .yaml)"
  args=(--kube-version "$helm_kube_version" --namespace demo --show-only templates/zz-notes-check.yaml)
  [[ -n "$f" ]] && args+=(--values "$f")
  step "helm NOTES.txt $name"
  if ! "$helm" template demo "$scratch/lifeguard" "${args[@]}" \
    | python3 -c 'import json, sys; print(json.loads(sys.stdin.read().split("notes: ", 1)[1]))' \
      >"$out/notes-$name.txt"; then
    problem "NOTES.txt ($name)"
  fi
done
for dir in deploy deploy/native deploy/monitoring deploy/migration; do
  name="$(echo "$dir" | tr '/' '-')"
  step "kustomize $dir"
  if ! "$kubectl" kustomize "$repo/$dir" >"$out/$name.yaml"; then
    problem "kubectl kustomize $dir"
  fi
done

# --- 3. schema validation ----------------------------------------------------------
files=("$out"/*.yaml)   # manifests only, not the notes
for v in "${kube_versions[@]}"; do
  step "kubernetes-validate --strict -k $v (${#files[@]} files)"
  set +e
  report="$("$validate" --strict -k "$v" "${files[@]}" 2>&1)"
  rc=$?
  set -e
  passed=0
  while IFS= read -r line; do
    [[ -z "$line" ]] && continue
    case "$line" in
      INFO*" passed for resource "*) passed=$((passed + 1)) ;;
      WARN*"Couldn't find schema for kind "*)
        kind="$(sed -E 's/.*schema for kind ([A-Za-z]+) .*/\1/' <<<"$line")"
        if [[ " $crd_kinds " == *" $kind "* ]]; then
          echo "skipped: $kind has no schema in kubernetes-validate (custom resource, checked structurally by tests/k8s.rs): ${line#WARN }"
        else
          problem "$line"
        fi ;;
      *) problem "$line" ;;
    esac
  done <<<"$report"
  if [[ $rc -ne 0 ]]; then problem "kubernetes-validate exited $rc for $v"; fi
  if [[ $passed -eq 0 ]]; then problem "kubernetes-validate validated nothing for $v"; fi
  echo "    $passed resources passed against $v"
done

if [[ $fail -ne 0 ]]; then
  echo "validate-k8s: FAILED"
  exit 1
fi
echo "validate-k8s: ok (rendered manifests in $out)"
