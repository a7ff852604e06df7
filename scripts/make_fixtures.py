#!/usr/bin/env python3
"""Generates the test fixtures: ONNX models exported the way data scientists do
(scikit-learn + skl2onnx, and hand-built CNNs), inputs, and the outputs of
onnxruntime, the independent reference the tests compare wasmops against.

    pip install onnx onnxruntime scikit-learn skl2onnx numpy
    python3 scripts/make_fixtures.py          # rewrites tests/fixtures/

Each fixture directory holds model.onnx, optional pipeline.toml, and pairs
input_b<N>.json / expected_b<N>.json for batch sizes 1 and >1.
"""
import json
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
RNG = np.random.default_rng(20261126)


def tensor_json(name, arr):
    arr = np.asarray(arr)
    if arr.dtype.kind == "f":
        data = [float(round(float(x), 7)) if np.isfinite(x) else None for x in arr.ravel()]
    elif arr.dtype.kind in "iub":
        data = [int(x) for x in arr.ravel()]
    else:
        data = [str(x) for x in arr.ravel()]
    return {"name": name, "shape": list(arr.shape), "data": data}


def write_case(d, batch, feeds, model_feeds, session):
    """feeds: what the caller sends (may be raw, before the pipeline);
    model_feeds: what onnxruntime receives (after the reference preprocessing)."""
    outs = session.run(None, model_feeds)
    # ZipMap outputs (a list of {class: probability}) become the [N, classes] tensor wasmops returns.
    outs = [np.array([[d[k] for k in sorted(d)] for d in o], dtype=np.float32) if isinstance(o, list) else o for o in outs]
    names = [o.name for o in session.get_outputs()]
    with open(os.path.join(d, f"input_b{batch}.json"), "w") as f:
        json.dump({"inputs": [tensor_json(k, v) for k, v in feeds.items()]}, f, separators=(",", ":"))
    with open(os.path.join(d, f"expected_b{batch}.json"), "w") as f:
        json.dump({"outputs": [tensor_json(n, o) for n, o in zip(names, outs)]}, f, separators=(",", ":"))


def save(name, model, cases, pipeline=None, tolerance=1e-4):
    d = os.path.join(ROOT, name)
    os.makedirs(d, exist_ok=True)
    data = model.SerializeToString()
    with open(os.path.join(d, "model.onnx"), "wb") as f:
        f.write(data)
    if pipeline:
        with open(os.path.join(d, "pipeline.toml"), "w") as f:
            f.write(pipeline)
    with open(os.path.join(d, "tolerance.txt"), "w") as f:
        f.write(f"{tolerance}\n")
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for batch, feeds, model_feeds in cases:
        write_case(d, batch, feeds, model_feeds, sess)
    print(f"{name}: {len(data)} bytes, outputs {[o.name for o in sess.get_outputs()]}")


def rounded(x, decimals=4):
    return np.round(np.asarray(x, dtype=np.float32), decimals).astype(np.float32)


def sklearn_fixtures():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_iris
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler
    from skl2onnx import to_onnx

    def export(est, n_features):
        x = np.zeros((1, n_features), dtype=np.float32)
        opts = {id(est): {"zipmap": False}} if hasattr(est, "predict_proba") else None
        return to_onnx(est, x, options=opts, target_opset={"": 17, "ai.onnx.ml": 3})

    def cases(x, batch):
        return [(1, {"X": x[:1]}, {"X": x[:1]}), (batch, {"X": x[1 : 1 + batch]}, {"X": x[1 : 1 + batch]})]

    x, y = load_iris(return_X_y=True)
    x = rounded(x, 2)
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    save("scaler_logreg", export(est, 4), cases(x[::7], 5))

    x, y = load_digits(return_X_y=True)
    x = rounded(x, 0)
    est = make_pipeline(MinMaxScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0)).fit(x, y)
    save("scaler_mlp", export(est, 64), cases(x[::50], 8))

    x, y = load_breast_cancer(return_X_y=True)
    x = rounded(x, 3)
    est = RandomForestClassifier(n_estimators=20, max_depth=6, random_state=0).fit(x, y)
    save("random_forest_classifier", export(est, 30), cases(x[::40], 6))

    # Multi-class, exported with skl2onnx's defaults (ZipMap left in).
    xi, yi = load_iris(return_X_y=True)
    xi = rounded(xi, 2)
    est = RandomForestClassifier(n_estimators=15, max_depth=4, random_state=0).fit(xi, yi)
    save("random_forest_iris_zipmap", to_onnx(est, xi[:1], target_opset={"": 17, "ai.onnx.ml": 3}), cases(xi[::9], 5))

    x, y = load_diabetes(return_X_y=True)
    x = rounded(x, 4)
    est = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0).fit(x, y)
    save("gradient_boosting_regressor", export(est, 10), cases(x[::30], 7))

    est = RandomForestRegressor(n_estimators=10, max_depth=5, random_state=0).fit(x, y)
    save("random_forest_regressor", export(est, 10), cases(x[::31], 4))

    est = make_pipeline(StandardScaler(), LinearRegression()).fit(x, y)
    save("scaler_linear_regression", export(est, 10), cases(x[::32], 3))


def wide_fixture():
    """300 input features: a telemetry report summarises every column, so this is
    the model whose reports and probes must fit the fleet's message sizes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import to_onnx

    rng = np.random.default_rng(300)
    x = rounded(rng.normal(size=(600, 300)), 3)
    w = rng.normal(size=(300, 3))
    y = np.argmax(x @ w + rng.normal(scale=0.5, size=(600, 3)), axis=1)
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    model = to_onnx(est, x[:1], options={id(est): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    save("wide_logreg", model, [(1, {"X": x[:1]}, {"X": x[:1]}), (6, {"X": x[1:7]}, {"X": x[1:7]})])


def tabular_pipeline_fixture():
    """A wasmops pipeline (impute, one-hot, category-map, standard-scale) in front of
    a logistic regression; the reference preprocesses with numpy, independently."""
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx

    n = 400
    age = RNG.normal(40, 12, n).round(1)
    income = RNG.normal(50, 15, n).round(1)
    plan = RNG.integers(0, 3, n).astype(np.float64)  # numeric category code
    color = RNG.choice(["red", "green", "blue"], n)
    mean, std = np.array([40.0, 50.0]), np.array([12.0, 15.0])

    def features(age, income, plan, color):
        num = np.stack([age, income], axis=1)
        num = np.where(np.isnan(num), mean, num)
        num = (num - mean) / std
        onehot_plan = np.stack([(plan == c).astype(float) for c in (0.0, 1.0, 2.0)], axis=1)
        onehot_color = np.stack([(color == c).astype(float) for c in ("red", "green", "blue")], axis=1)
        return np.concatenate([num, onehot_plan, onehot_color], axis=1).astype(np.float32)

    y = ((age > 45) ^ (color == "red") ^ (plan == 2)).astype(int)
    est = LogisticRegression(max_iter=500).fit(features(age, income, plan, color), y)
    model = to_onnx(est, np.zeros((1, 8), np.float32), options={id(est): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
    pipeline = """# Raw columns: age, income, plan code; `color` arrives as text.
[[step]]
op = "impute"
values = [40.0, 50.0, 0.0]

[[step]]
op = "one-hot"
column = 2
categories = [0.0, 1.0, 2.0]

[[step]]
op = "category-map"
source = "color"
categories = ["red", "green", "blue"]

[[step]]
op = "standard-scale"
mean = [40.0, 50.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
std = [12.0, 15.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
"""
    out = []
    for batch, sl in ((1, slice(0, 1)), (6, slice(1, 7))):
        a, i, p, c = age[sl].copy(), income[sl].copy(), plan[sl], color[sl]
        if batch > 1:
            i[2] = np.nan  # a missing value the pipeline imputes
        raw = np.stack([a, i, p], axis=1).astype(np.float32)
        feeds = {"X": raw, "color": np.array(c)}
        out.append((batch, feeds, {"X": features(a, i, p, c)}))
    save("tabular_pipeline", model, out, pipeline=pipeline)


def conv(name, x, cin, cout, k, stride=1, group=1, inits=None):
    w = (RNG.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / (cin // group * k * k))).astype(np.float32)
    b = (RNG.standard_normal(cout) * 0.05).astype(np.float32)
    inits += [numpy_helper.from_array(w, name + "_w"), numpy_helper.from_array(b, name + "_b")]
    pad = k // 2
    return helper.make_node("Conv", [x, name + "_w", name + "_b"], [name], strides=[stride, stride], pads=[pad] * 4, group=group, kernel_shape=[k, k])


def with_classifier_head(name, nodes, inits, features, channels, classes, weight_scale, chw):
    """Global average pool, dense layer and softmax on `features`; input `x` [N, *chw]."""
    nodes.append(helper.make_node("GlobalAveragePool", [features], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    inits.append(numpy_helper.from_array((RNG.standard_normal((channels, classes)) * weight_scale).astype(np.float32), "fc_w"))
    inits.append(numpy_helper.from_array(np.zeros(classes, np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1))
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *chw])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def small_cnn():
    """Digits-sized CNN: [N,1,8,8] -> probs [N,10]."""
    inits, nodes = [], []
    nodes.append(conv("c1", "x", 1, 8, 3, inits=inits))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    nodes.append(helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(conv("c2", "p1", 8, 16, 3, inits=inits))
    nodes.append(helper.make_node("Relu", ["c2"], ["r2"]))
    model = with_classifier_head("small_cnn", nodes, inits, "r2", 16, 10, 0.3, [1, 8, 8])
    x = rounded(RNG.uniform(0, 16, (9, 1, 8, 8)), 1)
    save("small_cnn", model, [(1, {"x": x[:1]}, {"x": x[:1]}), (8, {"x": x[1:]}, {"x": x[1:]})], tolerance=1e-3)


def mobilenet_v2_style(width=0.35, head=256, classes=100, model_name="mobilenet_v2_style"):
    """MobileNetV2 structure (inverted residuals, depthwise 3x3, ReLU6, linear
    bottlenecks) at 224x224, slimmed so the fixture stays small (the paper's
    network: width=1.0, head=1280, classes=1000; scripts/int8-bench.sh)."""
    inits, nodes = [], []

    def c(v):
        return max(8, int(v * width + 4) // 8 * 8)

    def relu6(x, name):
        lo = numpy_helper.from_array(np.array(0.0, np.float32), name + "_lo")
        hi = numpy_helper.from_array(np.array(6.0, np.float32), name + "_hi")
        inits.extend([lo, hi])
        nodes.append(helper.make_node("Clip", [x, name + "_lo", name + "_hi"], [name]))
        return name

    nodes.append(conv("stem", "x", 3, c(32), 3, stride=2, inits=inits))
    x, cin = relu6("stem", "stem_a"), c(32)
    # (expansion t, channels c, repeats n, stride s) from the MobileNetV2 paper.
    settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2), (6, 96, 2, 1), (6, 160, 2, 2), (6, 320, 1, 1)]
    block = 0
    for t, ch, n, s in settings:
        for i in range(n):
            stride, cout, name = (s if i == 0 else 1), c(ch), f"b{block}"
            hidden = cin * t
            h = x
            if t != 1:
                nodes.append(conv(name + "_exp", h, cin, hidden, 1, inits=inits))
                h = relu6(name + "_exp", name + "_exp_a")
            nodes.append(conv(name + "_dw", h, hidden, hidden, 3, stride=stride, group=hidden, inits=inits))
            h = relu6(name + "_dw", name + "_dw_a")
            nodes.append(conv(name + "_proj", h, hidden, cout, 1, inits=inits))
            h = name + "_proj"
            if stride == 1 and cin == cout:
                nodes.append(helper.make_node("Add", [x, h], [name + "_res"]))
                h = name + "_res"
            x, cin = h, cout
            block += 1
    nodes.append(conv("head", x, cin, head, 1, inits=inits))
    x = relu6("head", "head_a")
    return with_classifier_head(model_name, nodes, inits, x, head, classes, 0.05, [3, 224, 224])


def mobilenet_fixtures():
    model = mobilenet_v2_style()
    x = rounded(RNG.uniform(-2, 2, (3, 3, 224, 224)), 2)
    save("mobilenet_v2_style", model, [(1, {"x": x[:1]}, {"x": x[:1]}), (2, {"x": x[1:]}, {"x": x[1:]})], tolerance=1e-3)

    # The same network behind an image pipeline: raw HWC pixels of any size ->
    # resize 224x224 -> normalise -> CHW. onnxruntime's Resize/Sub/Div/Transpose is the reference.
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    pre_nodes = [
        helper.make_node("Transpose", ["img"], ["nchw_raw"], perm=[0, 3, 1, 2]),
        helper.make_node("Resize", ["nchw_raw", "", "", "sizes"], ["resized"], mode="linear", coordinate_transformation_mode="half_pixel"),
        helper.make_node("Mul", ["resized", "scale"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["x"]),
    ]
    pre_inits = [
        numpy_helper.from_array(np.array([1, 3, 224, 224], np.int64), "sizes"),
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1), "mean"),
        numpy_helper.from_array(np.array(std, np.float32).reshape(1, 3, 1, 1), "std"),
    ]
    pre = helper.make_graph(pre_nodes, "pre", [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 60, 80, 3])],
                            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])], pre_inits)
    pre_model = helper.make_model(pre, opset_imports=[helper.make_opsetid("", 17)])
    pre_sess = ort.InferenceSession(pre_model.SerializeToString(), providers=["CPUExecutionProvider"])
    img = RNG.integers(0, 256, (1, 60, 80, 3)).astype(np.float32)
    x = pre_sess.run(None, {"img": img})[0]
    pipeline = f"""# Camera frames arrive as [N, H, W, 3] pixels in 0..255, any size.
[[step]]
op = "resize"
height = 224
width = 224

[[step]]
op = "normalize"
scale = {1/255!r}
mean = {mean}
std = {std}

[[step]]
op = "hwc-to-chw"
"""
    save("image_pipeline", model, [(1, {"x": img}, {"x": x})], pipeline=pipeline, tolerance=1e-3)


def slow_iris():
    """Same contract as scaler_logreg (X [N,4] -> label [N], probabilities [N,3]) but
    ~100 M multiply-adds per row and tiny weights: the "slow release" a latency gate must stop."""
    inits, nodes = [], []
    inits.append(numpy_helper.from_array(np.array([-1, 4, 1, 1], np.int64), "to4d"))
    inits.append(numpy_helper.from_array(np.array([1, 4, 128, 128], np.int64), "plane"))
    nodes.append(helper.make_node("Reshape", ["X", "to4d"], ["x4"]))
    nodes.append(helper.make_node("Expand", ["x4", "plane"], ["img"]))
    nodes.append(conv("c1", "img", 4, 16, 3, inits=inits))
    prev = "c1"
    for i in range(2, 5):
        nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
        nodes.append(conv(f"c{i}", f"r{i}", 16, 16, 3, inits=inits))
        prev = f"c{i}"
    nodes.append(helper.make_node("GlobalAveragePool", [prev], ["gap"]))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], axis=1))
    inits.append(numpy_helper.from_array((RNG.standard_normal((16, 3)) * 0.5).astype(np.float32), "fc_w"))
    inits.append(numpy_helper.from_array(np.zeros(3, np.float32), "fc_b"))
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
    nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
    graph = helper.make_graph(nodes, "slow_iris", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
                               helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    x = rounded(RNG.uniform(0, 8, (1, 4)))
    save("slow_iris", model, [(1, {"X": x}, {"X": x})], tolerance=1e-3)


def lstm_sequence():
    """A sensor-window classifier as PyTorch exports an LSTM(batch_first=True)
    without dynamic axes: x [1, 12, 3] -> Transpose -> LSTM(8) -> last hidden ->
    Gemm -> Softmax [1, 2]. Its LSTM needs tract's scan ops, which only the full
    generic guest carries. (tract 0.23 cannot expand an LSTM over a symbolic batch:
    tests/bad_input.rs checks that `build` says so.)"""
    hidden, feats, steps = 8, 3, 12
    rng = np.random.default_rng(12)  # its own stream: regenerating it alone changes nothing else
    inits = [
        numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, feats)) * 0.4).astype(np.float32), "W"),
        numpy_helper.from_array((rng.standard_normal((1, 4 * hidden, hidden)) * 0.4).astype(np.float32), "R"),
        numpy_helper.from_array((rng.standard_normal((1, 8 * hidden)) * 0.1).astype(np.float32), "B"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array((rng.standard_normal((hidden, 2)) * 0.5).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(2, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["x_tnf"], perm=[1, 0, 2]),
        helper.make_node("LSTM", ["x_tnf", "W", "R", "B"], ["Y", "Y_h"], hidden_size=hidden),
        helper.make_node("Squeeze", ["Y_h", "axis0"], ["h"]),
        helper.make_node("Gemm", ["h", "fc_w", "fc_b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(nodes, "lstm_sequence", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, steps, feats])],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 2])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    x = rounded(rng.uniform(-1, 1, (1, steps, feats)))
    save("lstm_sequence", model, [(1, {"x": x}, {"x": x})])


def rows_model(name, nodes, inits, outputs):
    """A checked opset-17 model from x [N, 4] float to y [N, outputs] float."""
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def comparisons():
    """Every ONNX comparison on the same inputs, packed into one float output:
    y = Less + 2 Greater + 4 Equal + 8 LessOrEqual + 16 GreaterOrEqual + 32 Not(Equal),
    with x against a per-column threshold t (the inputs hit t exactly too). The slim
    guest's tract runs the six comparisons through one shared kernel per type."""
    rng = np.random.default_rng(6)  # its own stream: regenerating it alone changes nothing else
    t = np.array([0.5, -1.0, 0.0, 2.0], np.float32)
    inits = [numpy_helper.from_array(t, "t")]
    nodes, terms = [], []
    for ix, op in enumerate(["Less", "Greater", "Equal", "LessOrEqual", "GreaterOrEqual"]):
        nodes.append(helper.make_node(op, ["x", "t"], [f"b{ix}"]))
        terms.append((f"b{ix}", float(2 ** ix)))
    nodes.append(helper.make_node("Not", ["b2"], ["b5"]))
    terms.append(("b5", 32.0))
    acc = None
    for ix, (name, weight) in enumerate(terms):
        inits.append(numpy_helper.from_array(np.array(weight, np.float32), f"w{ix}"))
        nodes.append(helper.make_node("Cast", [name], [f"f{ix}"], to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Mul", [f"f{ix}", f"w{ix}"], [f"m{ix}"]))
        if acc is None:
            acc = f"m{ix}"
        else:
            nodes.append(helper.make_node("Add", [acc, f"m{ix}"], [f"s{ix}"]))
            acc = f"s{ix}"
    nodes.append(helper.make_node("Identity", [acc], ["y"]))
    model = rows_model("comparisons", nodes, inits, 4)
    cases = []
    for batch in (1, 6):
        x = rounded(rng.uniform(-3, 3, (batch, 4)))
        x[0] = t  # equal to the thresholds
        cases.append((batch, {"x": x}, {"x": x}))
    save("comparisons", model, cases)


def double_precision():
    """A linear model that computes in float64, as exports with DoubleTensorType
    parts do: x [N, 4] -> Cast(double) -> MatMul -> Add -> Cast(float) -> y [N, 3].
    The slim generic guest leaves f64 out of tract's per-type kernels, so `build`
    must fall back to the full guest for it."""
    rng = np.random.default_rng(64)  # its own stream: regenerating it alone changes nothing else
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float64), "w"),
        numpy_helper.from_array(rng.standard_normal(3).astype(np.float64), "b"),
    ]
    nodes = [
        helper.make_node("Cast", ["x"], ["x64"], to=TensorProto.DOUBLE),
        helper.make_node("MatMul", ["x64", "w"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["y64"]),
        helper.make_node("Cast", ["y64"], ["y"], to=TensorProto.FLOAT),
    ]
    model = rows_model("double_precision", nodes, inits, 3)
    cases = []
    for batch in (1, 5):
        x = rounded(rng.uniform(-2, 2, (batch, 4)))
        cases.append((batch, {"x": x}, {"x": x}))
    save("double_precision", model, cases)


def batch_mixing():
    """A convolution whose outputs mix samples across the batch: softmax over axis 0
    and the conv output minus its batch mean. tract optimises convolutional models for
    batch 1 and runs a batch sample by sample (guest/batching); this model must be
    recognised as unsafe for that and keep the whole-batch plan."""
    rng = np.random.default_rng(71)  # its own stream: regenerating it alone changes nothing else
    inits = [numpy_helper.from_array(rounded(rng.standard_normal((3, 2, 3, 3)) * 0.5), "w"),
             numpy_helper.from_array(rounded(rng.standard_normal(3) * 0.1), "b")]
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Softmax", ["c"], ["across"], axis=0),
        helper.make_node("ReduceMean", ["c"], ["mean"], axes=[0], keepdims=1),
        helper.make_node("Sub", ["c", "mean"], ["centred"]),
    ]
    graph = helper.make_graph(nodes, "batch_mixing", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("across", TensorProto.FLOAT, ["N", 3, 6, 6]),
                               helper.make_tensor_value_info("centred", TensorProto.FLOAT, ["N", 3, 6, 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    cases = []
    for batch in (1, 3):
        x = rounded(rng.uniform(-2, 2, (batch, 2, 6, 6)))
        cases.append((batch, {"x": x}, {"x": x}))
    save("batch_mixing", model, cases)


def bad_fixtures():
    d = os.path.join(ROOT, "bad")
    os.makedirs(d, exist_ok=True)
    good = open(os.path.join(ROOT, "small_cnn", "model.onnx"), "rb").read()
    open(os.path.join(d, "truncated.onnx"), "wb").write(good[: len(good) // 2])
    open(os.path.join(d, "garbage.onnx"), "wb").write(b"this is not a protobuf \x00\xff\xfe" * 10)
    node = helper.make_node("FancyFutureOp", ["x"], ["y"], domain="com.example")
    graph = helper.make_graph([node], "unsupported", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    open(os.path.join(d, "unsupported_op.onnx"), "wb").write(model.SerializeToString())


if __name__ == "__main__":
    which = sys.argv[1:] or ["sklearn", "wide", "tabular", "cnn", "mobilenet", "slow", "lstm", "double", "comparisons", "mixing", "bad"]
    if "sklearn" in which:
        sklearn_fixtures()
    if "wide" in which:
        wide_fixture()
    if "tabular" in which:
        tabular_pipeline_fixture()
    if "cnn" in which:
        small_cnn()
    if "mobilenet" in which:
        mobilenet_fixtures()
    if "slow" in which:
        slow_iris()
    if "lstm" in which:
        lstm_sequence()
    if "double" in which:
        double_precision()
    if "comparisons" in which:
        comparisons()
    if "mixing" in which:
        batch_mixing()
    if "bad" in which:
        bad_fixtures()
