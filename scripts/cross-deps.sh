#!/usr/bin/env bash
# Installs what an aarch64 gateway build needs, when missing: the Rust target
# (rustup, for the pinned toolchain), Debian's cross gcc and C library (the
# linker, and C code in dependencies such as SQLite and zstd), and qemu-user
# to run the result on this machine. Idempotent; .ci/run calls it, and the
# provisioning tests call it before they build the aarch64 agent.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || missing+=(qemu-user)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
