#!/usr/bin/env bash
# Installs the cargo subcommands CI runs, from crates.io, into .tools/cargo
# (gitignored), each with `cargo install --locked` at a pinned version:
#
#   cargo-deny      licenses, bans and sources checks (deny.toml)
#   cargo-machete   unused dependencies
#   cargo-fuzz      the fuzz targets in fuzz/ (`cargo +nightly fuzz ...`;
#                   cargo-fuzz itself builds with the pinned stable)
#
# Idempotent: a tool whose binary already reports the pinned version is not
# rebuilt, so a second run returns at once. Safe to run concurrently (flock).
# Builds with the toolchain of rust-toolchain.toml (run
# scripts/ensure-toolchain.sh first). Prints the bin directory on stdout; add
# it to PATH for `cargo deny`, `cargo machete` and `cargo +nightly fuzz`.
#
# Environment: LIFEGUARD_CARGO_TOOLS_DIR (default: <repo>/.tools/cargo).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
root="${LIFEGUARD_CARGO_TOOLS_DIR:-$repo/.tools/cargo}"
bin="$root/bin"

# crate version; 0.20.2 needs rustc >= 1.88.
TOOLS=(
  "cargo-deny 0.20.2"
  "cargo-machete 0.9.2"
  "cargo-fuzz 0.13.2"
)

say() { echo "install-cargo-tools: $*" >&2; }

# `cargo-deny --version` prints "cargo-deny 0.20.2", cargo-machete "0.9.2",
# cargo-fuzz "cargo-fuzz 0.13.2".
has() { # crate version
  [[ -x "$bin/$1" ]] && "$bin/$1" --version 2>/dev/null | grep -Eq "(^| )$2\$"
}

all_there() {
  local t
  for t in "${TOOLS[@]}"; do
    # shellcheck disable=SC2086
    has $t || return 1
  done
}

if all_there; then
  echo "$bin"
  exit 0
fi

mkdir -p "$root"
exec 9>"$root/.lock"
flock 9

for t in "${TOOLS[@]}"; do
  read -r crate version <<<"$t"
  if has "$crate" "$version"; then
    continue
  fi
  say "building $crate $version from crates.io"
  start=$SECONDS
  cargo install --locked --quiet --force --root "$root" "$crate" --version "$version"
  has "$crate" "$version" || { say "$crate does not report version $version"; exit 1; }
  say "$crate $version installed in $((SECONDS - start))s"
done

echo "$bin"
