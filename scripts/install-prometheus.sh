#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's `prometheus` package) for the
# monitoring tests of tests/k8s: `promtool check rules`, `promtool test
# rules`, and a real Prometheus scraping a live lifeguard.
#
# Idempotent: when both are on PATH it only prints their directory. Needs
# root and apt-get otherwise (CI runs as root on Debian). The package's
# service is not started by this script (nor, in a container without an
# init system, by the package). Safe to run concurrently (flock).
# Prints the directory holding both binaries on stdout.
set -euo pipefail

found() {
  command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}
dir_of() { dirname "$(command -v promtool)"; }

if found; then
  dir_of
  exit 0
fi

say() { echo "install-prometheus: $*" >&2; }
command -v apt-get >/dev/null || { say "needs apt-get (Debian's prometheus package), or prometheus and promtool on PATH"; exit 1; }
[[ "$(id -u)" == 0 ]] || { say "needs root for apt-get install prometheus"; exit 1; }

exec 9>/tmp/lifeguard-install-prometheus.lock
flock 9
if found; then
  dir_of
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() {
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 prometheus >&2
}
if ! install; then
  say "apt-get update, then again"
  apt-get update -qq -o DPkg::Lock::Timeout=600 >&2
  install
fi
found || { say "prometheus/promtool still not on PATH"; exit 1; }
say "ready: $(promtool --version 2>&1 | head -1)"
dir_of
