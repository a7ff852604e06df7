#!/usr/bin/env python3
"""An external trainer for `wasmops retrain --command` (or `trainer = "…"` in
a model's loop file): scikit-learn fits, skl2onnx writes the ONNX file.

    wasmops retrain MODEL --dataset NAME \\
        --command "python3 train_sklearn.py --data {data} --holdout {holdout} --label {label} --out {out} --metrics {metrics}"

Reads the training CSV the worker writes (features, then the label column),
fits StandardScaler + LogisticRegression (class codes) or LinearRegression
(numbers), writes `{out}` with input `X` float [N, features] and, when asked,
holdout metrics to `{metrics}`. Output lines end up in the run's log.
"""
import argparse
import json

import numpy as np
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, mean_squared_error
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def read(path, label):
    with open(path) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    j = header.index(label)
    x = np.array([[float(v) if v else np.nan for i, v in enumerate(r) if i != j] for r in rows], dtype=np.float32)
    y = np.array([float(r[j]) for r in rows])
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--holdout")
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--metrics")
    a = ap.parse_args()
    x, y = read(a.data, a.label)
    classes = np.all(y == np.round(y)) and len(set(y)) <= 100
    if classes:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x, y.astype(np.int64))
    else:
        model = make_pipeline(StandardScaler(), LinearRegression())
        model.fit(x, y)
    print(f"fitted {model} on {len(y)} rows", flush=True)
    onx = to_onnx(model, x[:1], options={id(model.steps[-1][1]): {"zipmap": False}} if classes else None,
                  target_opset={"": 17, "ai.onnx.ml": 3})
    with open(a.out, "wb") as f:
        f.write(onx.SerializeToString())
    if a.metrics and a.holdout:
        hx, hy = read(a.holdout, a.label)
        if classes:
            m = {"accuracy": accuracy_score(hy.astype(np.int64), model.predict(hx))}
        else:
            m = {"rmse": float(np.sqrt(mean_squared_error(hy, model.predict(hx))))}
        with open(a.metrics, "w") as f:
            json.dump(m, f)
        print(f"holdout {m}", flush=True)


if __name__ == "__main__":
    main()
