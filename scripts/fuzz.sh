#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each).
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs `cargo install cargo-fuzz`. cargo-fuzz passes nightly-only sanitizer
# flags; RUSTC_BOOTSTRAP lets the pinned stable toolchain accept them.
# A crash lands in fuzz/artifacts/TARGET/; copy it to tests/fuzz_regressions/TARGET/
# so `cargo test` replays it forever (tests/all/fuzz_regressions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-60}"; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(signature claims trust_metadata pipeline_toml)
export RUSTC_BOOTSTRAP=1
failed=()
for t in "${targets[@]}"; do
  corpus="fuzz/corpus/$t"
  mkdir -p "$corpus"
  # Seed with the committed regression inputs and fixtures.
  cp -n tests/fuzz_regressions/"$t"/* "$corpus"/ 2>/dev/null || true
  echo "== $t for ${secs}s"
  if ! cargo fuzz run --sanitizer none "$t" "$corpus" -- -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048; then
    failed+=("$t")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "CRASHES in: ${failed[*]} (see fuzz/artifacts/)"
  exit 1
fi
echo "no crashes"
