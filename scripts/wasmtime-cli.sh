#!/usr/bin/env bash
# `wasmtime serve`, the independent wasi:http host that runs `wasmops build
# --http` components in the tests and in `serve-bench`: wasmtime-cli from
# crates.io at the host's own wasmtime version, with only what `serve` and
# `run` need (the default features take twice as long to compile). Installed
# into cargo's bin directory when missing or at another version; prints the
# path of the binary.
set -euo pipefail
version=$(sed -n 's/^wasmtime = { version = "=\([0-9.]*\)".*/\1/p' "$(dirname "$0")/../Cargo.toml")
root=${WASMOPS_TOOLS:-${CARGO_HOME:-$HOME/.cargo}}
bin="$root/bin/wasmtime"
if [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q "wasmtime $version "; then
  echo "$bin"
  exit 0
fi
# Its own target directory: the project's caches hold other features.
CARGO_TARGET_DIR="${TMPDIR:-/tmp}/wasmops-wasmtime-cli" cargo install --locked --root "$root" \
  --no-default-features --features serve,run,cranelift,component-model-async,pooling-allocator,parallel-compilation \
  wasmtime-cli@"$version" >&2
echo "$bin"
