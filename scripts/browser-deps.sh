#!/usr/bin/env bash
# Installs what the headless-browser checks need, when missing: Debian's
# chromium (never a browser downloaded by a test tool) and playwright-core
# from npm (tests/browser/package-lock.json). Idempotent; the e2e tests call
# it before their first browser check, .ci/run before the tests. Also the
# npm build tools of `wasmops web` (host/web/js/package-lock.json) and the
# harness of `wasmops web-bench` (benches/web/package-lock.json).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
if [ ! -f tests/browser/node_modules/playwright-core/package.json ]; then
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
# The build tools of `wasmops web` (jco's transpiler, the WASI shims);
# `wasmops web` also installs them itself when they are missing.
if [ ! -f host/web/js/node_modules/@bytecodealliance/jco-transpile/package.json ]; then
  npm ci --prefix host/web/js --no-audit --no-fund --loglevel=error
fi
# `wasmops web-bench`'s harness (onnxruntime-web, playwright-core).
if [ ! -f benches/web/node_modules/onnxruntime-web/package.json ]; then
  npm ci --prefix benches/web --no-audit --no-fund --loglevel=error
fi
