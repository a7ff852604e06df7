#!/usr/bin/env bash
# The load generator `wasmops serve-bench` drives (hey, Debian's package).
# Installs it when missing; the serve tests call this too.
set -euo pipefail
if command -v hey >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q hey >&2 || { $sudo apt-get update -q >&2 && $sudo apt-get install -y -q hey >&2; }
