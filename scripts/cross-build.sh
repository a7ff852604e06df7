#!/usr/bin/env bash
# Builds the `wasmops` binary for aarch64 gateways (what `wasmops provision
# --target aarch64 --agent-binary …` puts in their bundles) and prints its
# path. Installs the cross toolchain first (scripts/cross-deps.sh). Cargo's
# target dir is the caller's (CARGO_TARGET_DIR, else ./target): a rebuild is
# incremental. .ci/run calls it before the tests; the provisioning test
# calls it too, so `cargo test` alone builds what it needs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/cross-deps.sh
triple=aarch64-unknown-linux-gnu
# The gateway build (no `full` feature): what a gateway runs, in about half
# the compile time.
cargo build --release --locked --target "$triple" --bin wasmops --no-default-features >&2
echo "${CARGO_TARGET_DIR:-$PWD/target}/$triple/release/wasmops"
