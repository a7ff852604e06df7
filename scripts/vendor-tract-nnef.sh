#!/usr/bin/env bash
# Recreates guest/vendor/tract-nnef: the crates.io tract-nnef plus
# guest/vendor/tract-nnef.patch (see guest/vendor/README.md). Run it after
# changing the patch or moving to a new tract release (then bump VERSION and
# redo the patch against it).
set -euo pipefail
VERSION=0.23.9
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Let cargo fetch the pristine crate, from a throwaway package outside this workspace
# (inside it, [patch.crates-io] would point tract-nnef back here).
mkdir -p "$tmp/fetch/src"
echo 'fn main() {}' > "$tmp/fetch/src/main.rs"
printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ntract-nnef = "=%s"\n' "$VERSION" > "$tmp/fetch/Cargo.toml"
(cd "$tmp/fetch" && cargo fetch --quiet)
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/tract-nnef-$VERSION | head -n 1)

out=guest/vendor/tract-nnef
rm -rf "$out"
mkdir -p "$out"
cp -r "$src"/{Cargo.toml,LICENSE,LICENSE-APACHE,LICENSE-MIT,src,stdlib.nnef} "$out"/
patch --quiet -d "$out" -p1 < guest/vendor/tract-nnef.patch
echo "recreated $out from tract-nnef $VERSION + guest/vendor/tract-nnef.patch"
