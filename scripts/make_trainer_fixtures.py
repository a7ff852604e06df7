#!/usr/bin/env python3
"""Reference values for the built-in trainers (issue 22), from scikit-learn.

    pip install numpy scikit-learn
    python3 scripts/make_trainer_fixtures.py    # rewrites tests/fixtures/trainer/

- iris_train.csv / iris_holdout.csv: tests/fixtures/drift/iris_coded.csv split
  by row number (every fifth row held out, 30 rows), and sklearn's holdout
  accuracy and log-loss for StandardScaler + LogisticRegression (L2, C=1,
  lbfgs, multinomial) trained on the rest; the built-in logistic trainer
  (linfa, alpha 1 on standardised features) reaches the same optimum.
- linear_train.csv / linear_holdout.csv: y = 3 + 2 x0 - 0.5 x1 + 0.1 x2 +
  noise (seeded), and sklearn's LinearRegression coefficients and holdout
  MAE/RMSE. Least squares has one answer: the built-in trainer must match it.
"""
import csv
import json
import os

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, mean_squared_error
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "trainer")
IRIS = os.path.join(HERE, "..", "tests", "fixtures", "drift", "iris_coded.csv")


def iris():
    with open(IRIS) as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    train = [r for i, r in enumerate(body) if i % 5 != 4]
    hold = [r for i, r in enumerate(body) if i % 5 == 4]
    for name, part in (("iris_train.csv", train), ("iris_holdout.csv", hold)):
        with open(os.path.join(OUT, name), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            w.writerows(part)
    xt = np.array([[float(v) for v in r[:4]] for r in train])
    yt = np.array([int(r[4]) for r in train])
    xh = np.array([[float(v) for v in r[:4]] for r in hold])
    yh = np.array([int(r[4]) for r in hold])
    scaler = StandardScaler().fit(xt)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(xt), yt)
    p = model.predict_proba(scaler.transform(xh))
    return {
        "rows": len(yh),
        "accuracy": accuracy_score(yh, model.predict(scaler.transform(xh))),
        "log_loss": log_loss(yh, p, labels=[0, 1, 2]),
    }


def linear():
    rng = np.random.default_rng(20261201)
    x = rng.normal(size=(200, 3)) * np.array([1.0, 4.0, 10.0]) + np.array([0.0, 5.0, -3.0])
    y = 3 + 2 * x[:, 0] - 0.5 * x[:, 1] + 0.1 * x[:, 2] + rng.normal(scale=0.3, size=200)
    rows = np.column_stack([x, y])
    train, hold = rows[:160], rows[160:]
    header = ["x0", "x1", "x2", "y"]
    for name, part in (("linear_train.csv", train), ("linear_holdout.csv", hold)):
        with open(os.path.join(OUT, name), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(header)
            for r in part:
                w.writerow([repr(float(v)) for v in r])
    model = LinearRegression().fit(train[:, :3], train[:, 3])
    pred = model.predict(hold[:, :3])
    return {
        "coef": list(model.coef_),
        "intercept": float(model.intercept_),
        "mae": mean_absolute_error(hold[:, 3], pred),
        "rmse": float(np.sqrt(mean_squared_error(hold[:, 3], pred))),
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    ref = {"iris_logistic": iris(), "linear": linear()}
    with open(os.path.join(OUT, "sklearn.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(ref, indent=1))


if __name__ == "__main__":
    main()
