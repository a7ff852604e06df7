#!/usr/bin/env bash
# f32 vs int8 (onnxruntime's static QDQ quantiser, per channel) in one run,
# for two networks of the same MobileNetV2 structure:
# - `fixture`: tests/fixtures/mobilenet_v2_style (width 0.35, 0.2 M weights)
#   and its committed int8 twin;
# - `paper`: the paper's width (1.0, 1280-channel head, 1000 classes, 2.9 M
#   weights), generated here by scripts/make_fixtures.py's builder and
#   quantised as scripts/make_quant_fixtures.py does (nothing is downloaded).
# For each: component size, in-wasm p50 and native tract p50 (`wasmops
# bench`, with `--profile`: native time per operator kind), the two
# components head to head (`wasmops bench --against`),
# onnxruntime (CPU, one thread) on the same ONNX files, and in headless
# Chromium (`wasmops web-bench`) both components against onnxruntime-web's
# wasm backend (SIMD, one thread) on the same files: the independent answer
# to what int8 costs in wasm. One JSON line per measurement, then a table of
# int8/f32 ratios.
#
#     bash scripts/int8-bench.sh [SECONDS]     # builds wasmops (release) if needed
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
bin=${CARGO_TARGET_DIR:-target}/release/wasmops
[ -x "$bin" ] || cargo build --release >&2
bash scripts/python-deps.sh
bash scripts/browser-deps.sh >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
input=tests/fixtures/mobilenet_v2_style/input_b1.json

mkdir -p "$tmp/fixture" "$tmp/paper"
# The browser bundle checks a signature: a throwaway key signs both components.
"$bin" keygen --out "$tmp/release" >/dev/null
cp tests/fixtures/mobilenet_v2_style/model.onnx "$tmp/fixture/f32.onnx"
cp tests/fixtures/mobilenet_v2_style_int8/model.onnx "$tmp/fixture/int8.onnx"
python3 - "$tmp/paper" <<'EOF' 2>/dev/null
import os, sys
sys.path.insert(0, "scripts")
import onnx
import make_fixtures
import make_quant_fixtures as mq
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

out = sys.argv[1]
model = make_fixtures.mobilenet_v2_style(width=1.0, head=1280, classes=1000, model_name="mobilenet_v2")
onnx.save(model, os.path.join(out, "f32.onnx"))
quant_pre_process(os.path.join(out, "f32.onnx"), os.path.join(out, "pre.onnx"))
quantize_static(os.path.join(out, "pre.onnx"), os.path.join(out, "int8.onnx"), mq.Images("x", (1, 3, 224, 224)),
                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8)
EOF

for net in fixture paper; do
  for side in f32 int8; do
    model=$tmp/$net/$side.onnx
    "$bin" build "$model" --out "$tmp/$net/$side.wasm" --name "mnet-$net-$side" --version 1.0.0 2>&1 |
      grep '^built' >&2
    "$bin" sign "$tmp/$net/$side.wasm" --key "$tmp/release.key" >/dev/null
    "$bin" bench "$tmp/$net/$side.wasm" --model "$model" --input "$input" --seconds "$seconds" --profile |
      tail -n 1 > "$tmp/$net/$side.json"
    echo "{\"net\":\"$net\",\"side\":\"$side\",\"bench\":$(cat "$tmp/$net/$side.json")}"
    "$bin" web-bench "$tmp/$net/$side.wasm" --model "$model" --input "$input" --runs 100 --rounds 2 \
      --trust "$tmp/release.pub" |
      tail -n 1 > "$tmp/$net/$side.web.json"
    echo "{\"net\":\"$net\",\"side\":\"$side\",\"web_bench\":$(cat "$tmp/$net/$side.web.json")}"
  done
  "$bin" bench "$tmp/$net/int8.wasm" --against "$tmp/$net/f32.wasm" --input "$input" --seconds "$seconds" |
    tail -n 1 > "$tmp/$net/against.json"
  echo "{\"net\":\"$net\",\"int8_against_f32\":$(cat "$tmp/$net/against.json")}"
done

python3 - "$tmp" "$input" "$seconds" <<'EOF'
import json, os, sys, time
import numpy as np
import onnxruntime as ort

tmp, input_path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
doc = json.load(open(input_path))
feeds = {t["name"]: np.array(t["data"], dtype=np.float32).reshape(t["shape"]) for t in doc["inputs"]}

def ort_p50(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    s = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    s.run(None, feeds)
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 20:
        t = time.perf_counter()
        s.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))

for net in ("fixture", "paper"):
    d = os.path.join(tmp, net)
    b = {side: json.load(open(os.path.join(d, f"{side}.json"))) for side in ("f32", "int8")}
    head = json.load(open(os.path.join(d, "against.json")))
    web = {side: json.load(open(os.path.join(d, f"{side}.web.json"))) for side in ("f32", "int8")}
    ort_ms = {side: ort_p50(os.path.join(d, f"{side}.onnx")) for side in ("f32", "int8")}
    print(json.dumps({"net": net, "onnxruntime_p50_ms": ort_ms}))
    rows = [
        ("ONNX bytes", os.path.getsize(os.path.join(d, "f32.onnx")), os.path.getsize(os.path.join(d, "int8.onnx"))),
        ("component bytes", b["f32"]["size_bytes"], b["int8"]["size_bytes"]),
        ("in-wasm p50 ms", b["f32"]["wasm_p50_ms"], b["int8"]["wasm_p50_ms"]),
        ("native tract p50 ms", b["f32"]["native_p50_ms"], b["int8"]["native_p50_ms"]),
        ("onnxruntime p50 ms", ort_ms["f32"], ort_ms["int8"]),
        ("browser wasmops p50", web["f32"]["wasmops_inline"]["p50_ms"], web["int8"]["wasmops_inline"]["p50_ms"]),
        ("browser ORT-web p50", web["f32"]["onnxruntime_web"]["p50_ms"], web["int8"]["onnxruntime_web"]["p50_ms"]),
    ]
    print(f"\n{net}: {'':11} {'f32':>12} {'int8':>12} {'int8/f32':>9}")
    for name, a, c in rows:
        print(f"  {name:20} {a:12.3f} {c:12.3f} {c / a:9.2f}")
    print(f"  {'wasm/native':20} {b['f32']['ratio_p50']:12.2f} {b['int8']['ratio_p50']:12.2f}")
    print(f"  {'wasm/onnxruntime':20} {b['f32']['wasm_p50_ms'] / ort_ms['f32']:12.2f} "
          f"{b['int8']['wasm_p50_ms'] / ort_ms['int8']:12.2f}")
    print(f"  head to head (bench --against): int8/f32 p50 {head['ratio_p50']:.2f}")
    # Where native tract's time goes (bench --profile), the five largest per side.
    for side in ("f32", "int8"):
        top = ", ".join(f"{t['op']} {t['ms_per_run']:.2f} ms ({t['share'] * 100:.0f} %)"
                        for t in b[side]["native_profile"][:5])
        print(f"  native {side:4} time by operator: {top}")
EOF
