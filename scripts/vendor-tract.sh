#!/usr/bin/env bash
# Recreates the patched tract crates in guest/vendor: each is the crates.io crate
# plus guest/vendor/<crate>.patch (see guest/vendor/README.md). Run it after
# changing a patch or moving to a new tract release (then bump VERSION and redo
# the patches against it).
set -euo pipefail
VERSION=0.23.9
CRATES=(tract-data tract-core tract-nnef)
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Let cargo fetch the pristine crates, from a throwaway package outside this workspace
# (inside it, [patch.crates-io] would point them back here).
mkdir -p "$tmp/fetch/src"
echo 'fn main() {}' > "$tmp/fetch/src/main.rs"
{
  printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n'
  for crate in "${CRATES[@]}"; do printf '%s = "=%s"\n' "$crate" "$VERSION"; done
} > "$tmp/fetch/Cargo.toml"
(cd "$tmp/fetch" && cargo fetch --quiet)

for crate in "${CRATES[@]}"; do
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"$crate-$VERSION" | head -n 1)
  out=guest/vendor/$crate
  rm -rf "$out"
  mkdir -p "$out"
  cp -r "$src"/{Cargo.toml,LICENSE,LICENSE-APACHE,LICENSE-MIT,src} "$out"/
  if [ -e "$src/stdlib.nnef" ]; then cp "$src/stdlib.nnef" "$out"/; fi
  patch --quiet -d "$out" -p1 < "guest/vendor/$crate.patch"
  echo "recreated $out from $crate $VERSION + guest/vendor/$crate.patch"
done
