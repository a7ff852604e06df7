#!/usr/bin/env python3
"""Generates the int8 and float16 fixtures from the f32 ones, as an edge
team would: onnxruntime's own quantiser (static QDQ for the CNN, per channel
and per tensor; dynamic for the MLP) and onnxconverter-common's float16
converter (the CNN with half-float inputs and outputs, the small CNN with
f32 ones: keep_io_types). The expected outputs
are onnxruntime's on the converted file itself, for the f32 fixture's own
inputs (batch 1 and N), which the tests read from there.

    python3 scripts/make_quant_fixtures.py    # after scripts/make_fixtures.py

Each directory holds model.onnx, expected_b<N>.json, tolerance.txt, and
inputs_from.txt naming the fixture whose input_b<N>.json it uses.
"""
import json
import os
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxconverter_common import float16

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def load_inputs(path):
    with open(path) as f:
        doc = json.load(f)
    return {t["name"]: np.array(t["data"], dtype=np.float32).reshape(t["shape"]) for t in doc["inputs"]}


def tensor_json(name, arr):
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        data = [float(round(float(x), 7)) for x in arr.ravel()]
    else:
        data = [int(x) for x in arr.ravel()]
    return {"name": name, "shape": list(arr.shape), "data": data}


def save(name, source, model_path, tolerance):
    """Writes fixture `name`: the model at model_path, and onnxruntime's outputs
    on the inputs of fixture `source`."""
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    with open(model_path, "rb") as f:
        data = f.read()
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(data)
    with open(os.path.join(d, "inputs_from.txt"), "w") as f:
        f.write(source + "\n")
    with open(os.path.join(d, "tolerance.txt"), "w") as f:
        f.write(f"{tolerance}\n")
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    half = {i.name for i in sess.get_inputs() if i.type == "tensor(float16)"}
    src = os.path.join(ROOT, source)
    for file in sorted(os.listdir(src)):
        if not (file.startswith("input_") and file.endswith(".json")):
            continue
        batch = file[len("input_"):-len(".json")]
        inputs = load_inputs(os.path.join(src, file))
        outs = sess.run(None, {k: v.astype(np.float16) if k in half else v for k, v in inputs.items()})
        with open(os.path.join(d, f"expected_{batch}.json"), "w") as f:
            json.dump({"outputs": [tensor_json(n, o) for n, o in zip(names, outs)]}, f, separators=(",", ":"))
    print(f"{name}: {len(data)} bytes (f32 source {os.path.getsize(os.path.join(src, 'model.onnx'))})")


class Images(CalibrationDataReader):
    """Calibration: 16 images of the fixture's input shape, fixed seed."""

    def __init__(self, name, shape):
        rng = np.random.default_rng(20261203)
        self.batches = iter([{name: rng.random(shape, dtype=np.float32)} for _ in range(16)])

    def get_next(self):
        return next(self.batches, None)


def cnn_int8(tmp):
    src = os.path.join(ROOT, "mobilenet_v2_style", "model.onnx")
    pre = os.path.join(tmp, "pre.onnx")
    quant_pre_process(src, pre)
    for per_channel, name in [(True, "mobilenet_v2_style_int8"), (False, "mobilenet_v2_style_int8_per_tensor")]:
        out = os.path.join(tmp, name + ".onnx")
        quantize_static(pre, out, Images("x", (1, 3, 224, 224)), quant_format=QuantFormat.QDQ,
                        per_channel=per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8)
        # Probabilities come out quantised to 1/255; tract and onnxruntime round
        # an int8 value differently now and then: two steps.
        save(name, "mobilenet_v2_style", out, 2 / 255)


def image_pipeline_int8():
    """The int8 CNN behind the image_pipeline fixture's pipeline (resize,
    normalise, HWC to CHW): onnxruntime's Resize/Mul/Sub/Div/Transpose on the
    raw image is the reference preprocessing, as in make_fixtures.py."""
    name, d = "image_pipeline_int8", os.path.join(ROOT, "image_pipeline_int8")
    os.makedirs(d, exist_ok=True)
    link = os.path.join(d, "model.onnx")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.join("..", "mobilenet_v2_style_int8", "model.onnx"), link)
    src = os.path.join(ROOT, "image_pipeline")
    with open(os.path.join(src, "pipeline.toml")) as f:
        pipeline = f.read()
    with open(os.path.join(d, "pipeline.toml"), "w") as f:
        f.write(pipeline)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pre = helper.make_graph([
        helper.make_node("Transpose", ["img"], ["nchw_raw"], perm=[0, 3, 1, 2]),
        helper.make_node("Resize", ["nchw_raw", "", "", "sizes"], ["resized"], mode="linear",
                         coordinate_transformation_mode="half_pixel"),
        helper.make_node("Mul", ["resized", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["x"]),
    ], "pre", [helper.make_tensor_value_info("img", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)], [
        numpy_helper.from_array(np.array([1, 3, 224, 224], np.int64), "sizes"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1), "mean"),
        numpy_helper.from_array(np.array(std, np.float32).reshape(1, 3, 1, 1), "std"),
    ])
    pre = ort.InferenceSession(helper.make_model(pre, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                               providers=["CPUExecutionProvider"])
    sess = ort.InferenceSession(link, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    img = load_inputs(os.path.join(src, "input_b1.json"))["x"]
    outs = sess.run(None, {"x": pre.run(None, {"img": img})[0]})
    with open(os.path.join(d, "expected_b1.json"), "w") as f:
        json.dump({"outputs": [tensor_json(n, o) for n, o in zip(names, outs)]}, f, separators=(",", ":"))
    with open(os.path.join(d, "inputs_from.txt"), "w") as f:
        f.write("image_pipeline\n")
    # The pipeline's resize differs from onnxruntime's by ~1e-6 (f32 fixture:
    # within 1e-3); an int8 activation on a rounding edge then moves a level
    # more than on the model alone (seen: two steps of 1/255): three steps.
    with open(os.path.join(d, "tolerance.txt"), "w") as f:
        f.write(f"{3 / 255}\n")
    print(f"{name}: the int8 CNN behind image_pipeline's pipeline")


def mlp_dynamic(tmp):
    src = os.path.join(ROOT, "scaler_mlp", "model.onnx")
    out = os.path.join(tmp, "mlp_dynamic.onnx")
    quantize_dynamic(src, out, weight_type=QuantType.QInt8)
    save("scaler_mlp_int8_dynamic", "scaler_mlp", out, 1e-3)


def cnn_float16(tmp):
    """The CNN in half precision, inputs and outputs included
    (keep_io_types=False). onnxruntime computes most ops in f32 and rounds
    the outputs to float16; wasmops computes in f32 and returns f32: they
    differ by that last rounding (half a float16 step, 2.4e-4 below 0.5)
    plus the input's rounding to float16 (seen: 1.3e-4)."""
    src = onnx.load(os.path.join(ROOT, "mobilenet_v2_style", "model.onnx"))
    out = os.path.join(tmp, "cnn_f16.onnx")
    onnx.save(float16.convert_float_to_float16(src, keep_io_types=False), out)
    save("mobilenet_v2_style_f16", "mobilenet_v2_style", out, 1e-3)
    # The converter's usual call: f32 inputs and outputs, casts inside.
    src = onnx.load(os.path.join(ROOT, "small_cnn", "model.onnx"))
    out = os.path.join(tmp, "small_cnn_f16.onnx")
    onnx.save(float16.convert_float_to_float16(src, keep_io_types=True), out)
    save("small_cnn_f16_keep_io", "small_cnn", out, 1e-3)


def bad_models():
    """Quantised models `build` must refuse, naming the problem."""
    d = os.path.join(ROOT, "bad")
    f32 = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    def write(file, nodes, inits, opsets=(("", 17),)):
        graph = helper.make_graph(nodes, file, [f32("x", [1, 4])], [f32("y", [1, 4])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d_, v) for d_, v in opsets])
        with open(os.path.join(d, file), "wb") as f:
            f.write(model.SerializeToString())

    scale = lambda name, v: numpy_helper.from_array(np.array(v, dtype=np.float32), name)
    zp = lambda name, v, dt=np.uint8: numpy_helper.from_array(np.array(v, dtype=dt), name)
    # onnxruntime's QOperator format: QLinearAdd exists only in com.microsoft.
    write("int8_unsupported_op.onnx", [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("QLinearAdd", ["xq", "s", "z", "xq", "s", "z", "s", "z"], ["yq"], domain="com.microsoft"),
        helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"]),
    ], [scale("s", 0.1), zp("z", 128)], opsets=(("", 17), ("com.microsoft", 1)))
    # A scale of zero divides by zero.
    write("int8_zero_scale.onnx", [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["y"]),
    ], [scale("s", 0.0), zp("z", 128)])
    # Per-channel weights: four scales, three zero points.
    write("int8_zero_points_mismatch.onnx", [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
        helper.make_node("Mul", ["x", "w"], ["y"]),
    ], [numpy_helper.from_array(np.array([[1], [2], [3], [4]], dtype=np.int8).reshape(4), "wq"),
        scale("ws", [0.1, 0.1, 0.1, 0.1]), zp("wz", [0, 0, 0], np.int8)])
    # A float16 weight with 3 bytes of data for 2 half floats (a cut file).
    cut = numpy_helper.from_array(np.array([0.5, 0.25], dtype=np.float16), "w")
    cut.raw_data = cut.raw_data[:3]
    graph = helper.make_graph([helper.make_node("Mul", ["x", "w"], ["y"])], "f16_truncated",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT16, [1, 2])], [cut])
    with open(os.path.join(d, "f16_truncated.onnx"), "wb") as f:
        f.write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    print("bad: int8_unsupported_op, int8_zero_scale, int8_zero_points_mismatch, f16_truncated")


if __name__ == "__main__":
    bad_models()
    with tempfile.TemporaryDirectory() as tmp:
        cnn_int8(tmp)
        image_pipeline_int8()
        mlp_dynamic(tmp)
        cnn_float16(tmp)
