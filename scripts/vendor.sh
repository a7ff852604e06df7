#!/usr/bin/env bash
# Recreates the patched crates in guest/vendor and host/vendor: each is the
# crates.io crate plus <dir>/<crate>.patch (see guest/vendor/README.md and
# host/vendor/README.md). Run it after changing a patch or moving to a new
# release (then bump the version below and redo the patches against it).
set -euo pipefail
# directory crate version
VENDORED=(
  "guest/vendor tract-data 0.23.9"
  "guest/vendor tract-core 0.23.9"
  "guest/vendor tract-nnef 0.23.9"
  "guest/vendor tract-linalg 0.23.9"
  "host/vendor wasmtime-internal-cranelift 48.0.8"
)
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Let cargo fetch the pristine crates, from a throwaway package outside this workspace
# (inside it, [patch.crates-io] would point them back here).
mkdir -p "$tmp/fetch/src"
echo 'fn main() {}' > "$tmp/fetch/src/main.rs"
{
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n'
  for entry in "${VENDORED[@]}"; do
    read -r _ crate version <<< "$entry"
    printf '%s = "=%s"\n' "$crate" "$version"
  done
} > "$tmp/fetch/Cargo.toml"
(cd "$tmp/fetch" && cargo fetch --quiet)

for entry in "${VENDORED[@]}"; do
  read -r dir crate version <<< "$entry"
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$version" | head -n 1)
  out=$dir/$crate
  rm -rf "$out"
  mkdir -p "$out"
  cp -r "$src"/{Cargo.toml,src} "$src"/LICENSE* "$out"/
  # tract-linalg's build.rs assembles its native kernels from these template folders.
  for extra in stdlib.nnef build.rs arm32 arm64 riscv64 x86_64; do
    if [ -e "$src/$extra" ]; then cp -r "$src/$extra" "$out"/; fi
  done
  patch --quiet -d "$out" -p1 < "$dir/$crate.patch"
  echo "recreated $out from $crate $version + $dir/$crate.patch"
done
