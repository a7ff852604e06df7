#!/usr/bin/env python3
"""Reference values for the drift statistics (issue 21), computed with scipy
following Evidently's default rules (as read from its source,
evidently/legacy/calculations/stattests/: registry._get_default_stattest,
utils.get_binned_data, psi, jensenshannon, chisquare_stattest, z_stattest,
wasserstein_distance_norm, ks_stattest). The Rust statistics are tested
against the JSON this writes.

    pip install numpy scipy scikit-learn onnxruntime
    python3 scripts/make_drift_fixtures.py     # rewrites tests/fixtures/drift/

Each case: a reference and a current sample of one column, its kind, and the
expected values: the default method and its score, threshold and verdict, and
always the KS p-value (numeric), PSI, Jensen-Shannon distance and normalised
Wasserstein distance (numeric).
"""
import json
import os

import numpy as np
from scipy import stats
from scipy.spatial import distance

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "drift")
RNG = np.random.default_rng(20261201)


def binned(ref, cur, numeric, fill_zeroes):
    """Evidently's get_binned_data: Sturges bins over both samples for numeric
    columns with more than 20 distinct reference values, else one bin per value."""
    ref, cur = np.asarray(ref), np.asarray(cur)
    if numeric and len(np.unique(ref)) > 20:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins="sturges")
        r = np.histogram(ref, edges)[0] / len(ref)
        c = np.histogram(cur, edges)[0] / len(cur)
    else:
        keys = sorted(set(ref.tolist()) | set(cur.tolist()), key=str)
        r = np.array([np.sum(ref == k) for k in keys]) / len(ref)
        c = np.array([np.sum(cur == k) for k in keys]) / len(cur)
    r, c = r.astype(float), c.astype(float)
    if fill_zeroes:
        for p in (r, c):
            low = p[p != 0].min()
            p[p == 0] = low / 1e6 if low <= 1e-4 else 1e-4
    return r, c


def psi(ref, cur, numeric):
    r, c = binned(ref, cur, numeric, True)
    return float(np.sum((r - c) * np.log(r / c)))


def jensenshannon(ref, cur, numeric):
    r, c = binned(ref, cur, numeric, False)
    return float(distance.jensenshannon(r, c))


def wasserstein_norm(ref, cur):
    return float(stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), 0.001))


def chi_square_p(ref, cur):
    ref, cur = np.asarray(ref), np.asarray(cur)
    keys = sorted(set(ref.tolist()) | set(cur.tolist()), key=str)
    k = len(cur) / len(ref)
    expected = [np.sum(ref == key) * k for key in keys]
    observed = [np.sum(cur == key) for key in keys]
    return float(stats.chisquare(observed, expected)[1])


def z_test_p(ref, cur):
    ref, cur = np.asarray(ref), np.asarray(cur)
    keys = sorted(set(ref.tolist()) | set(cur.tolist()), key=str)
    if len(keys) == 1:
        return 1.0
    if len(keys) > 2:
        return float("nan")  # a test of two proportions: for two values only
    a = (ref != keys[0]).astype(float)
    b = (cur != keys[0]).astype(float)
    p1, p2 = a.mean(), b.mean()
    pooled = (a.sum() + b.sum()) / (len(a) + len(b))
    z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
    return float(2 * (1 - stats.norm.cdf(abs(z))))


def default_method(ref, cur, numeric):
    """Evidently's default test: (method, threshold, is_p_value)."""
    n = len(set(np.asarray(ref).tolist()) | set(np.asarray(cur).tolist()))
    if len(ref) <= 1000:
        if numeric and n > 5:
            return "ks", 0.05, True
        return ("chisquare", 0.05, True) if n > 2 else ("z", 0.05, True)
    if numeric and n > 5:
        return "wasserstein_norm", 0.1, False
    return "jensenshannon", 0.1, False


def case(name, ref, cur, numeric):
    ref = [float(x) for x in ref] if numeric else [str(x) for x in ref]
    cur = [float(x) for x in cur] if numeric else [str(x) for x in cur]
    method, threshold, is_p = default_method(ref, cur, numeric)
    values = {
        "psi": psi(ref, cur, numeric),
        "jensenshannon": jensenshannon(ref, cur, numeric),
        "chisquare": chi_square_p(ref, cur),
        "z": z_test_p(ref, cur),
    }
    if numeric:
        values["ks"] = float(stats.ks_2samp(ref, cur)[1])
        values["wasserstein_norm"] = wasserstein_norm(ref, cur)
    score = values[method]
    return {
        "name": name,
        "kind": "numeric" if numeric else "categorical",
        "reference": ref,
        "current": cur,
        "expected": {
            "method": method,
            "score": score,
            "threshold": threshold,
            "drifted": bool(score < threshold if is_p else score >= threshold),
            # A test without an answer (chi-square on one category) is null.
            **{k: (None if np.isnan(v) else v) for k, v in values.items()},
        },
    }


def dataset():
    """Two CSV files of several columns, with missing cells, and the report
    `wasmops drift --json` must print for them (the statistics part; the data
    quality part follows the project's own rules and is asserted by the test)."""
    def frame(rows, shift, site_p, out_of_range):
        temp = np.round(RNG.normal(20 + shift, 2, rows), 3)
        vibration = np.round(RNG.gamma(2.0, 1.5, rows), 3)
        vibration[: int(rows * out_of_range)] = 40.0 + np.arange(int(rows * out_of_range))
        sites = RNG.choice(["north", "south", "east", "delta"], rows, p=site_p)
        door = RNG.integers(0, 2, rows)
        cols = {"temp": temp.tolist(), "vibration": vibration.tolist(),
                "site": sites.tolist(), "door": door.astype(float).tolist()}
        # Missing cells: every 50th temperature, every 70th site.
        for i in range(0, rows, 50):
            cols["temp"][i] = None
        for i in range(3, rows, 70):
            cols["site"][i] = None
        return cols

    ref = frame(800, 0.0, [0.5, 0.3, 0.2, 0.0], 0.0)
    cur = frame(600, 0.8, [0.45, 0.3, 0.2, 0.05], 0.05)
    kinds = {"temp": True, "vibration": True, "site": False, "door": True}

    def write(cols, name):
        with open(os.path.join(OUT, name), "w") as f:
            f.write(",".join(cols) + "\n")
            for row in zip(*cols.values()):
                cells = ["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row]
                f.write(",".join(cells) + "\n")

    write(ref, "reference.csv")
    write(cur, "current.csv")
    columns = []
    for name, numeric in kinds.items():
        r = [v for v in ref[name] if v is not None]
        c = [v for v in cur[name] if v is not None]
        e = case(name, r, c, numeric)["expected"]
        columns.append({
            "name": name,
            "kind": "numeric" if numeric else "categorical",
            "method": e["method"],
            "score": e["score"],
            "threshold": e["threshold"],
            "drifted": e["drifted"],
            "ks_p_value": e.get("ks"),
            "psi": e["psi"],
        })
    share = sum(c["drifted"] for c in columns) / len(columns)
    report = {"dataset_drift": share >= 0.5, "drift_share": share, "columns": columns}
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1, allow_nan=False)
    print("dataset:", json.dumps({c["name"]: (c["method"], round(c["score"], 6), c["drifted"]) for c in columns}))


def iris_profile():
    """Training data for the scaler_logreg fixture (iris, as make_fixtures.py
    trained it) as CSV with a label column, and the reference profile
    `wasmops build --training-data` must sign for it: feature statistics with
    numpy, the model's outputs on the training rows with onnxruntime."""
    import onnxruntime as ort
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    x = np.round(x, 2)
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    species = np.array(["setosa", "versicolor", "virginica"])[y]
    with open(os.path.join(OUT, "iris_training.csv"), "w") as f:
        f.write(",".join(names + ["species"]) + "\n")
        for row, s in zip(x, species):
            f.write(",".join(repr(float(v)) for v in row) + f",{s}\n")
    # The same rows with the label as the model's class id (what the model
    # predicts and what applications post as outcomes): fleet scenarios.
    with open(os.path.join(OUT, "iris_coded.csv"), "w") as f:
        f.write(",".join(names + ["species"]) + "\n")
        for row, label in zip(x, y):
            f.write(",".join(repr(float(v)) for v in row) + f",{int(label)}\n")

    def numeric(name, v):
        v = np.sort(np.asarray(v, dtype=float))
        n = len(v)
        # wasmops-profile's rule: inner edges at the i/20 quantiles (lower
        # value), repeats merged, none at the minimum; bin i = values with
        # edges[i-1] <= x < edges[i].
        edges = sorted(set(float(v[(i * (n - 1)) // 20]) for i in range(1, 20)) - {float(v[0])})
        counts = np.bincount(np.searchsorted(edges, v, side="right"), minlength=len(edges) + 1)
        return {
            "name": name, "kind": "numeric", "rows": n, "missing": 0,
            "min": float(v[0]), "max": float(v[-1]), "mean": float(np.mean(v)), "std": float(np.std(v)),
            "quantiles": [float(q) for q in np.quantile(v, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])],
            "edges": edges, "counts": [int(c) for c in counts],
        }

    def categorical(name, v):
        keys, counts = np.unique(np.asarray(v).astype(str), return_counts=True)
        return {"name": name, "kind": "categorical" if len(keys) > 2 else "binary", "rows": len(v),
                "missing": 0, "domain": {str(k): int(c) for k, c in zip(keys, counts)}}

    model = os.path.join(OUT, "..", "scaler_logreg", "model.onnx")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    label, proba = session.run(None, {"X": x.astype(np.float32)})
    # The component computes in float32 from the same float32 inputs.
    profile = {
        "rows": len(x),
        "columns": [numeric(n, x[:, j]) for j, n in enumerate(names)],
        "label": categorical("species", species),
        "outputs": [numeric(f"probabilities[{j}]", proba[:, j].astype(float)) for j in range(proba.shape[1])]
        + [categorical("label", label)],
    }
    with open(os.path.join(OUT, "iris_profile.json"), "w") as f:
        json.dump(profile, f, indent=1, allow_nan=False)
    print("iris profile:", {c["name"]: c.get("mean", c.get("domain")) for c in profile["columns"] + profile["outputs"]})


def binned_cases():
    """Drift from counts, as the coordinator computes it from device bins:
    a reference profile's 20 equal-mass bins (wasmops-profile's rule) and the
    current counts in them. Expected PSI and Jensen-Shannon with scipy on the
    shares; W1 by numerical integration of |F_ref - F_cur| with both CDFs
    linear inside each bin, the outer bins ending at the extremes seen (an
    independent check of the closed form in cloud/drift/src/binned.rs)."""
    out = []
    for name, shift, scale in [("same", 0.0, 1.0), ("shift_small", 0.1, 1.0),
                               ("shift_half", 0.5, 1.0), ("wider", 0.0, 1.5)]:
        ref = np.sort(RNG.normal(0, 1, 4000))
        cur = RNG.normal(shift, scale, 2500)
        n = len(ref)
        edges = sorted(set(float(ref[(i * (n - 1)) // 20]) for i in range(1, 20)) - {float(ref[0])})
        rc = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
        cc = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
        rs, cs = rc / rc.sum(), cc / cc.sum()
        rf, cf = rs.copy(), cs.copy()
        for p in (rf, cf):
            if (p == 0).any():
                low = p[p != 0].min()
                p[p == 0] = low / 1e6 if low <= 1e-4 else 1e-4
        lo, hi = min(ref.min(), cur.min()), max(ref.max(), cur.max())
        bounds = np.array([min(lo, edges[0])] + edges + [max(hi, edges[-1])])
        grid = np.linspace(bounds[0], bounds[-1], 2_000_001)
        fr = np.interp(grid, bounds, np.concatenate([[0], np.cumsum(rs)]))
        fc = np.interp(grid, bounds, np.concatenate([[0], np.cumsum(cs)]))
        w1 = float(np.trapezoid(np.abs(fr - fc), grid))
        out.append({
            "name": name,
            "reference": {"min": float(ref.min()), "max": float(ref.max()), "std": float(np.std(ref)),
                          "edges": edges, "counts": [int(c) for c in rc]},
            "current": {"min": float(cur.min()), "max": float(cur.max()), "counts": [int(c) for c in cc]},
            "expected": {"psi": float(np.sum((rf - cf) * np.log(rf / cf))),
                         "jensenshannon": float(distance.jensenshannon(rs, cs)),
                         "wasserstein_norm": w1 / max(float(np.std(ref)), 0.001)},
        })
    with open(os.path.join(OUT, "binned.json"), "w") as f:
        json.dump({"cases": out}, f, separators=(",", ":"), allow_nan=False)
    print("binned:", {c["name"]: round(c["expected"]["wasserstein_norm"], 4) for c in out})


def performance_cases():
    """Realised performance as scikit-learn computes it: accuracy,
    roc_auc_score (binary; ovr macro for three classes) and log_loss on
    classifier rows with probabilities (some tied scores), and MAE/RMSE on
    regressor pairs."""
    from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, mean_squared_error, roc_auc_score

    cases = []
    for name, k, n in [("binary", 2, 400), ("three_classes", 3, 600)]:
        logits = RNG.normal(0, 1.5, (n, k))
        actual = np.array([RNG.choice(k, p=np.exp(l) / np.exp(l).sum()) for l in logits])
        proba = np.round(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 3)
        proba = proba / proba.sum(axis=1, keepdims=True)
        predicted = proba.argmax(axis=1)
        auc = roc_auc_score(actual, proba[:, 1]) if k == 2 else roc_auc_score(actual, proba, multi_class="ovr", average="macro")
        cases.append({
            "name": name, "predicted": predicted.tolist(), "actual": actual.tolist(),
            "probabilities": proba.tolist(),
            "expected": {"accuracy": float(accuracy_score(actual, predicted)), "auc": float(auc),
                         "log_loss": float(log_loss(actual, proba, labels=list(range(k))))},
        })
    pred = RNG.normal(10, 3, 300)
    actual = pred + RNG.normal(0, 1, 300)
    regression = {"predicted": pred.tolist(), "actual": actual.tolist(),
                  "expected": {"mae": float(mean_absolute_error(actual, pred)),
                               "rmse": float(np.sqrt(mean_squared_error(actual, pred)))}}
    with open(os.path.join(OUT, "performance.json"), "w") as f:
        json.dump({"classification": cases, "regression": regression}, f, separators=(",", ":"), allow_nan=False)
    print("performance:", {c["name"]: c["expected"] for c in cases}, regression["expected"])


def main():
    n = lambda size, shift=0.0, scale=1.0: np.round(RNG.normal(shift, scale, size), 4)
    cats = ["red", "green", "blue", "black"]
    cases = [
        case("numeric_small_two_draws", n(600), n(500), True),
        case("numeric_small_shifted", n(500), n(400, 0.3), True),
        case("numeric_large_two_draws", n(5000), n(3000), True),
        case("numeric_large_shifted", n(5000), n(3000, 0.5), True),
        case("numeric_large_scaled", n(5000), n(3000, 0.0, 1.6), True),
        case("numeric_few_values_small", RNG.integers(0, 4, 600), RNG.integers(0, 5, 500), True),
        case("numeric_few_values_large", RNG.integers(0, 4, 3000), RNG.integers(0, 4, 2000), True),
        case("binary_small", RNG.integers(0, 2, 700), (RNG.random(600) < 0.6).astype(int), True),
        case("categorical_small", RNG.choice(cats, 800, p=[0.4, 0.3, 0.2, 0.1]),
             RNG.choice(cats, 500, p=[0.25, 0.25, 0.25, 0.25]), False),
        case("categorical_large_new_value", RNG.choice(cats[:3], 4000, p=[0.5, 0.3, 0.2]),
             RNG.choice(cats, 2500, p=[0.45, 0.3, 0.2, 0.05]), False),
        case("constant_same", [1.0] * 300, [1.0] * 200, True),
        case("numeric_equal_sizes", n(400), n(400, 0.2), True),
        case("numeric_ties", np.round(RNG.normal(0, 1, 900), 1), np.round(RNG.normal(0.1, 1, 700), 1), True),
        case("numeric_exact_ks_largest", n(9000), n(10000, 0.02), True),
    ]
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"cases": cases}, f, separators=(",", ":"), allow_nan=False)
    dataset()
    iris_profile()
    binned_cases()
    performance_cases()
    for c in cases:
        e = c["expected"]
        print(f'{c["name"]}: {e["method"]} {e["score"]:.6g} drifted={e["drifted"]}')


if __name__ == "__main__":
    main()
