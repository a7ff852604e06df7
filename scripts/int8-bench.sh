#!/usr/bin/env bash
# f32 vs int8 (onnxruntime's static QDQ quantiser, per channel) for the
# MobileNetV2-style fixture, in one run: component size, in-wasm p50, native
# tract p50 (`wasmops bench`), the two components head to head
# (`wasmops bench --against`), and onnxruntime (CPU, one thread) on the same
# two ONNX files. Prints one JSON line per measurement and a summary of
# ratios (int8 / f32) at the end.
#
#     bash scripts/int8-bench.sh [SECONDS]     # needs a release build
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
bin=${CARGO_TARGET_DIR:-target}/release/wasmops
[ -x "$bin" ] || cargo build --release
bash scripts/python-deps.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
f32=tests/fixtures/mobilenet_v2_style
int8=tests/fixtures/mobilenet_v2_style_int8
input=$f32/input_b1.json

for side in f32 int8; do
  dir=${!side}
  "$bin" build "$dir/model.onnx" --out "$tmp/$side.wasm" --name "mnet-$side" --version 1.0.0 >&2
  "$bin" bench "$tmp/$side.wasm" --model "$dir/model.onnx" --input "$input" --seconds "$seconds" |
    tail -n 1 > "$tmp/$side.json"
  echo "{\"side\":\"$side\",\"bench\":$(cat "$tmp/$side.json")}"
done
"$bin" bench "$tmp/int8.wasm" --against "$tmp/f32.wasm" --input "$input" --seconds "$seconds" |
  tail -n 1 > "$tmp/against.json"
echo "{\"int8_against_f32\":$(cat "$tmp/against.json")}"

python3 - "$f32/model.onnx" "$int8/model.onnx" "$input" "$tmp" "$seconds" <<'EOF'
import json, sys, time
import numpy as np
import onnxruntime as ort

f32_model, int8_model, input_path, tmp, seconds = sys.argv[1:6]
doc = json.load(open(input_path))
feeds = {t["name"]: np.array(t["data"], dtype=np.float32).reshape(t["shape"]) for t in doc["inputs"]}

def ort_p50(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    s.run(None, feeds)
    times, end = [], time.perf_counter() + float(seconds)
    while time.perf_counter() < end or len(times) < 20:
        t = time.perf_counter()
        s.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))

ort_ms = {"f32": ort_p50(f32_model), "int8": ort_p50(int8_model)}
print(json.dumps({"onnxruntime_p50_ms": ort_ms}))
b = {side: json.load(open(f"{tmp}/{side}.json")) for side in ("f32", "int8")}
rows = [
    ("component bytes", b["f32"]["size_bytes"], b["int8"]["size_bytes"]),
    ("in-wasm p50 ms", b["f32"]["wasm_p50_ms"], b["int8"]["wasm_p50_ms"]),
    ("native tract p50 ms", b["f32"]["native_p50_ms"], b["int8"]["native_p50_ms"]),
    ("onnxruntime p50 ms", ort_ms["f32"], ort_ms["int8"]),
]
print(f"{'':22} {'f32':>12} {'int8':>12} {'int8/f32':>9}")
for name, a, c in rows:
    print(f"{name:22} {a:12.3f} {c:12.3f} {c / a:9.2f}")
print(f"{'wasm/native f32':22} {b['f32']['ratio_p50']:12.2f}   int8 {b['int8']['ratio_p50']:.2f}")
EOF
