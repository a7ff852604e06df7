#!/usr/bin/env bash
# Recreates the patched crates in guest/vendor and host/vendor: each is the
# crates.io crate plus <dir>/<crate>.patch (see guest/vendor/README.md and
# host/vendor/README.md). Run it after changing a patch or moving to a new
# release (then bump the version below and redo the patches against it).
#
# `scripts/vendor.sh --check` recreates them in a temporary directory instead
# and fails on any difference from the checked-in copies (CI runs it), so a
# vendored crate is always exactly upstream + its one .patch.
set -euo pipefail
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: scripts/vendor.sh [--check]" >&2; exit 2 ;;
esac
# directory crate version
VENDORED=(
  "guest/vendor tract-data 0.23.9"
  "guest/vendor tract-core 0.23.9"
  "guest/vendor tract-nnef 0.23.9"
  "guest/vendor tract-linalg 0.23.9"
  "host/vendor wasmtime-internal-cranelift 48.0.8"
  "host/vendor rumqttd 0.20.0"
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
  if $check; then out=$tmp/check/$dir/$crate; fi
  rm -rf "$out"
  mkdir -p "$out"
  cp -r "$src"/{Cargo.toml,src} "$out"/
  for license in "$src"/LICENSE*; do
    if [ -e "$license" ]; then cp "$license" "$out"/; fi
  done
  # tract-linalg's build.rs assembles its native kernels from these template folders.
  for extra in stdlib.nnef build.rs arm32 arm64 riscv64 x86_64; do
    if [ -e "$src/$extra" ]; then cp -r "$src/$extra" "$out"/; fi
  done
  patch --quiet --no-backup-if-mismatch -d "$out" -p1 < "$dir/$crate.patch"
  if $check; then
    if ! diff -r -q "$out" "$dir/$crate"; then
      echo "error: $dir/$crate is not $crate $version + $dir/$crate.patch (run scripts/vendor.sh, or update the patch)" >&2
      failed=1
    else
      echo "ok: $dir/$crate = $crate $version + $dir/$crate.patch"
    fi
  else
    echo "recreated $out from $crate $version + $dir/$crate.patch"
  fi
done
exit "${failed:-0}"
