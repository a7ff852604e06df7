#!/usr/bin/env bash
# Installs the Python packages the tests use as references and the example
# trainer needs (scripts/python-requirements.txt), from the Python package
# index, when python3 cannot import them yet. Idempotent; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

if python3 -c "import numpy, scipy, onnx, onnxruntime, sklearn, skl2onnx" 2>/dev/null; then
  exit 0
fi
pip=(python3 -m pip install --quiet --disable-pip-version-check -r scripts/python-requirements.txt)
# Debian's python marks its environment as externally managed.
"${pip[@]}" 2>/dev/null || "${pip[@]}" --break-system-packages
python3 -c "import numpy, scipy, onnx, onnxruntime, sklearn, skl2onnx"
