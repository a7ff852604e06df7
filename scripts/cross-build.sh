#!/usr/bin/env bash
# Builds the `wasmops` binary for aarch64 gateways (what `wasmops provision
# --target aarch64 --agent-binary …` puts in their bundles) and prints its
# path. Installs the cross toolchain first (scripts/cross-deps.sh). It builds
# in `cross/` under the caller's target dir (CARGO_TARGET_DIR, else ./target):
# a rebuild is incremental, and a directory of its own holds no lock the host
# build needs, so .ci/run builds it in the background beside the host build.
# The provisioning test calls it too, so `cargo test` alone builds what it
# needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/cross-deps.sh
triple=aarch64-unknown-linux-gnu
# The gateway build (no `full` feature): what a gateway runs, in about half
# the compile time.
# Built by plain rustc whoever calls: .ci/run lints the host build with
# clippy-driver as cargo's workspace wrapper, and the tests it runs call this
# script again, which must find the agent fresh.
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS
dir="${CARGO_TARGET_DIR:-$PWD/target}/cross"
CARGO_TARGET_DIR="$dir" cargo build --release --locked --target "$triple" --bin wasmops --no-default-features >&2
echo "$dir/$triple/release/wasmops"
