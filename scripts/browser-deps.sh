#!/usr/bin/env bash
# Installs what the headless-browser checks need, when missing: Debian's
# chromium (never a browser downloaded by a test tool) and playwright-core
# from npm (tests/browser/package-lock.json). Idempotent; the e2e tests call
# it before their first browser check, .ci/run before the tests.
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
