#!/usr/bin/env bash
# Makes the toolchain pinned in rust-toolchain.toml available to rustup, with
# rustfmt and clippy, offline if need be. Idempotent: when rustup already
# lists the toolchain it only checks that rustc, rustfmt and clippy run.
#
#   1. `rustup toolchain install <channel> --profile minimal -c rustfmt -c clippy`
#   2. if that fails (no route to the Rust distribution server) and the
#      installed `stable` is the same minor release (1.95.x), make <channel>
#      an alias of stable: `rustup toolchain link`, and where rustup refuses
#      that name (rustup >= 1.28 rejects official-looking names for custom
#      toolchains) a symlink in $RUSTUP_HOME/toolchains, which is what
#      `link` itself would have made.
#
# Only `rustup` and `+stable` commands run here: a plain `cargo`/`rustc` inside
# the repo would resolve rust-toolchain.toml and, with RUSTUP_AUTO_INSTALL on,
# try to download the very toolchain this script is about to provide.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { echo "ensure-toolchain: $*" >&2; }

channel="$(sed -n 's/^[[:space:]]*channel[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' rust-toolchain.toml)"
[[ -n "$channel" ]] || { say "no channel in rust-toolchain.toml"; exit 1; }
listed() { rustup toolchain list | grep -E "^${channel//./\\.}(-[^ ]+)?( |$)" >/dev/null; }

check() {
  rustc "+$channel" --version >/dev/null \
    && rustfmt "+$channel" --version >/dev/null \
    && cargo "+$channel" clippy --version >/dev/null
}

if listed; then
  if ! check; then
    say "$channel is listed but lacks rustfmt or clippy; adding them"
    rustup component add --toolchain "$channel" rustfmt clippy
    check
  fi
  say "$channel ready ($(rustc "+$channel" --version))"
  exit 0
fi

say "rustup lacks $channel; installing it"
if timeout 600 rustup toolchain install "$channel" --profile minimal -c rustfmt -c clippy; then
  check
  say "$channel installed ($(rustc "+$channel" --version))"
  exit 0
fi

want_minor="${channel%.*}"                       # 1.95.0 -> 1.95
stable_version="$(rustc +stable --version 2>/dev/null | awk '{print $2}')" || true
if [[ "${stable_version%.*}" != "$want_minor" ]]; then
  say "cannot install $channel, and stable is ${stable_version:-not installed}, not $want_minor.x: giving up"
  exit 1
fi

sysroot="$(rustc +stable --print sysroot)"
host="$(rustc +stable -vV | sed -n 's/^host: //p')"
say "install failed; linking $channel to the installed stable $stable_version ($sysroot)"
if ! rustup toolchain link "$channel" "$sysroot" 2>/dev/null; then
  toolchains="$(rustup show home)/toolchains"
  say "rustup refuses to link under the name $channel; symlinking $toolchains/$channel-$host"
  mkdir -p "$toolchains"
  ln -sfn "$sysroot" "$toolchains/$channel-$host"
fi
listed || { say "rustup still does not list $channel"; exit 1; }
check
say "$channel ready ($(rustc "+$channel" --version))"
