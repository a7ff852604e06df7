//! `wasmops drift` (issue 21.4): a data scientist's own files in, Evidently's
//! default verdicts out — as JSON (checked against scipy's values), as a
//! table, and as an HTML page checked in headless Chromium; bad files get an
//! error naming the line or column, and nothing half-written.

use serde_json::Value;

use crate::common::*;

fn drift_fixtures() -> std::path::PathBuf {
    fixtures().join("drift")
}

/// `wasmops drift --reference REF --current CUR EXTRA…`.
fn drift_args<'a>(
    r: &'a std::path::Path,
    c: &'a std::path::Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["drift", "--reference", p(r), "--current", p(c)];
    args.extend(extra);
    args
}

#[test]
fn json_report_matches_scipy_and_the_html_page_renders_one_plot_per_column() {
    let dir = scratch();
    let html = dir.join("report.html");
    let (r, c) = (
        drift_fixtures().join("reference.csv"),
        drift_fixtures().join("current.csv"),
    );
    let out = ok(&drift_args(&r, &c, &["--json", "--html", p(&html)]));
    let got: Value = serde_json::from_str(&out).unwrap();
    let want = read_json(&drift_fixtures().join("report.json"));
    assert_eq!(got["dataset_drift"], want["dataset_drift"], "{got}");
    assert_eq!(got["drift_share"], want["drift_share"], "{got}");
    for (g, w) in got["columns"]
        .as_array()
        .unwrap()
        .iter()
        .zip(want["columns"].as_array().unwrap())
    {
        for k in ["name", "kind", "method", "threshold", "drifted"] {
            assert_eq!(g[k], w[k], "{k}: {g} vs {w}");
        }
        let (a, b) = (g["psi"].as_f64().unwrap(), w["psi"].as_f64().unwrap());
        assert!((a - b).abs() <= 1e-6 * b.abs(), "psi {a} vs scipy {b}");
    }
    let anomalies: Vec<&str> = got["data_quality"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["anomaly"].as_str().unwrap())
        .collect();
    assert!(
        anomalies.contains(&"ENUM_TYPE_UNEXPECTED_STRING_VALUES"),
        "{got}"
    );

    // The page, as Chromium renders it: self-contained, one plot per column.
    let seen = browse(&html);
    let plots = seen["plots"].as_array().unwrap();
    let names: Vec<&str> = plots
        .iter()
        .map(|p| p["column"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["temp", "vibration", "site", "door"], "{seen}");
    for plot in plots {
        assert!(plot["width"].as_f64().unwrap() > 100.0, "{plot}");
        assert!(plot["height"].as_f64().unwrap() > 100.0, "{plot}");
        assert!(plot["bars"].as_u64().unwrap() >= 2, "{plot}");
    }
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(
        seen["requests"],
        serde_json::json!([]),
        "no network: {seen}"
    );
    assert!(
        seen["summary"]
            .as_str()
            .unwrap()
            .contains("2 of 4 columns drifted"),
        "{seen}"
    );

    // The table for people, and --fail-on-drift for pipelines.
    let table = ok(&drift_args(&r, &c, &[]));
    assert!(
        table.contains("dataset drift: DETECTED (2 of 4 columns"),
        "{table}"
    );
    assert!(table.contains("vibration  FLOAT_TYPE_BIG_FLOAT"), "{table}");
    let e = fails(&drift_args(&r, &c, &["--fail-on-drift"]));
    assert!(e.contains("dataset drift: 50% of columns drifted"), "{e}");
    // The reference against itself passes the same gate.
    ok(&drift_args(&r, &r, &["--fail-on-drift"]));
}

#[test]
fn methods_and_thresholds_can_be_set_per_column() {
    let (r, c) = (
        drift_fixtures().join("reference.csv"),
        drift_fixtures().join("current.csv"),
    );
    let out = ok(&drift_args(
        &r,
        &c,
        &[
            "--json",
            "--method",
            "psi",
            "--method",
            "temp=wasserstein_norm",
            "--threshold",
            "temp=0.5",
        ],
    ));
    let got: Value = serde_json::from_str(&out).unwrap();
    let col = |name: &str| {
        got["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    };
    let temp = col("temp");
    assert_eq!(temp["method"], "wasserstein_norm");
    assert_eq!(temp["threshold"], 0.5);
    // 0.8 °C on a 2 °C spread: W1 ≈ 0.4 of a std, below 0.5.
    assert_eq!(temp["drifted"], false, "{temp}");
    let site = col("site");
    assert_eq!(site["method"], "psi");
    assert_eq!(site["score"], site["psi"]);
    assert_eq!(site["threshold"], 0.1);

    let e = fails(&drift_args(&r, &c, &["--method", "site=ks"]));
    assert!(e.contains("column `site`: ks needs numbers"), "{e}");
    let e = fails(&drift_args(&r, &c, &["--method", "nope=psi"]));
    assert!(
        e.contains("column `nope`, which the reference does not have"),
        "{e}"
    );
    let e = fails(&drift_args(&r, &c, &["--method", "kl"]));
    assert!(e.contains("unknown drift method `kl`"), "{e}");
}

#[test]
fn bad_files_are_refused_naming_the_line_or_column_and_nothing_is_half_written() {
    let dir = scratch().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let reference = write("ref.csv", "temp,site\n1.5,a\n2.5,b\n3.5,a\n");
    let html = dir.join("report.html");
    let cases = [
        (
            "ragged.csv",
            "temp,site\n1.0,a\n2.0\n",
            "line 3 has 1 cells, the header 2",
        ),
        (
            "text.csv",
            "temp,site\n1.0,a\nwarm,b\n",
            "line 3, column `temp`: `warm` is not a number",
        ),
        (
            "inf.csv",
            "temp,site\n1.0,a\ninf,b\n",
            "line 3, column `temp`: `inf` is not a finite number",
        ),
        (
            "nan.csv",
            "temp,site\nNaN,a\n",
            "`NaN` is not a finite number",
        ),
        (
            "no_column.csv",
            "site\na\n",
            "column `temp`: missing from the current data",
        ),
        ("empty.csv", "", "the current data"),
        ("header_only.csv", "temp,site\n", "no data rows"),
        (
            "bad.json",
            "{\"columns\": {\"temp\": [1, \"x\"], \"site\": [\"a\", \"b\"]}}",
            "row 2, column `temp`",
        ),
        ("not.json", "{\"rows\": []}", "not the expected JSON"),
    ];
    for (name, text, expected) in cases {
        let current = write(name, text);
        let e = fails(&drift_args(&reference, &current, &["--html", p(&html)]));
        assert!(e.contains(expected), "{name}: {e}");
        assert!(!html.exists(), "{name}: a report was written");
    }
    let e = fails(&drift_args(&write("empty_ref.csv", ""), &reference, &[]));
    assert!(
        e.contains("the reference data") && e.contains("empty"),
        "{e}"
    );
    // A reference column without a single value cannot be a reference.
    let e = fails(&drift_args(
        &write("blank_ref.csv", "temp,site\n,a\n,b\n"),
        &reference,
        &[],
    ));
    assert!(
        e.contains("column `temp`: the reference has no value"),
        "{e}"
    );
    // A current column with no value at all is a data-quality finding, not an error.
    let out = ok(&drift_args(
        &reference,
        &write("blank_cur.csv", "temp,site\n,a\n,b\n"),
        &["--json"],
    ));
    assert!(out.contains("FEATURE_TYPE_NOT_PRESENT"), "{out}");
}

/// Issue 21.1: `build --training-data` signs the training data's profile
/// into the claims — features checked against numpy, the model's outputs on
/// the training rows against onnxruntime (`scripts/make_drift_fixtures.py`).
#[test]
fn build_signs_the_training_profile_checked_against_numpy_and_onnxruntime() {
    let dir = scratch().join("profile");
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("iris.wasm");
    let model = fixtures().join("scaler_logreg/model.onnx");
    let training = drift_fixtures().join("iris_training.csv");
    let built = wasmops(&[
        "build",
        p(&model),
        "--out",
        p(&wasm),
        "--name",
        "iris",
        "--training-data",
        p(&training),
        "--label-column",
        "species",
    ]);
    let stderr = String::from_utf8_lossy(&built.stderr);
    assert!(built.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "profile: 150 training rows, 4 feature columns, label `species`, 4 output columns"
        ),
        "{stderr}"
    );
    let inspected: Value = serde_json::from_str(&ok(&["inspect", p(&wasm), "--json"])).unwrap();
    let got = &inspected["claims"]["profile"];
    let want = read_json(&drift_fixtures().join("iris_profile.json"));
    assert_eq!(got["rows"], 150);
    assert_eq!(got["input"], "X");
    let close = |a: &Value, b: &Value, tol: f64, what: &str| {
        let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}: {a} vs {b}"
        );
    };
    let numbers = |g: &Value, w: &Value, tol: f64| {
        let what = w["name"].as_str().unwrap();
        assert_eq!(g["name"], w["name"]);
        assert_eq!(g["kind"], w["kind"], "{what}");
        assert_eq!(g["rows"], w["rows"], "{what}");
        assert_eq!(g["missing"], w["missing"], "{what}");
        for k in ["min", "max", "mean", "std"] {
            close(&g[k], &w[k], tol, &format!("{what} {k}"));
        }
        for k in ["quantiles", "edges"] {
            let (ga, wa) = (g[k].as_array().unwrap(), w[k].as_array().unwrap());
            assert_eq!(ga.len(), wa.len(), "{what} {k}: {g}");
            for (a, b) in ga.iter().zip(wa) {
                close(a, b, tol, &format!("{what} {k}"));
            }
        }
    };
    let (gc, wc) = (
        got["columns"].as_array().unwrap(),
        want["columns"].as_array().unwrap(),
    );
    assert_eq!(gc.len(), 4);
    for (g, w) in gc.iter().zip(wc) {
        numbers(g, w, 1e-9);
        assert_eq!(g["counts"], w["counts"], "{}", w["name"]);
    }
    assert_eq!(got["label"]["kind"], want["label"]["kind"]);
    assert_eq!(got["label"]["domain"], want["label"]["domain"]);
    // Outputs: float32 in the component and in onnxruntime alike.
    let outputs = got["outputs"].as_array().unwrap();
    for w in want["outputs"].as_array().unwrap() {
        let g = outputs
            .iter()
            .find(|g| g["name"] == w["name"])
            .unwrap_or_else(|| panic!("no output column {}: {got}", w["name"]));
        if w["kind"] == "numeric" {
            numbers(g, w, 1e-4);
        } else {
            assert_eq!(g["domain"], w["domain"], "predicted classes");
        }
    }
    let text = ok(&["inspect", p(&wasm)]);
    assert!(
        text.contains("profile of 150 training rows (features of input `X`)"),
        "{text}"
    );
    assert!(text.contains("label  species"), "{text}");

    // Training data the model cannot take is refused, naming the problem.
    let csv = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let build = |data: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "build",
            p(&model),
            "--out",
            p(&wasm),
            "--training-data",
            p(data),
        ];
        args.extend(extra);
        fails(&args)
    };
    let e = build(&csv("text.csv", "a,b,c,d\n1,2,3,x\n"), &[]);
    assert!(e.contains("column `d` holds text (`x`)"), "{e}");
    let e = build(&csv("three.csv", "a,b,c\n1,2,3\n"), &[]);
    assert!(
        e.contains("has 4 features, the training data 3 columns"),
        "{e}"
    );
    let e = build(&training, &["--label-column", "nope"]);
    assert!(e.contains("no column `nope`"), "{e}");
    let e = build(
        &training,
        &["--label-column", "species", "--feature-names", "a,b"],
    );
    assert!(e.contains("2 --feature-names for 4 feature columns"), "{e}");
    let e = build(&csv("ragged.csv", "a,b,c,d\n1,2,3,4\n1,2\n"), &[]);
    assert!(e.contains("line 3 has 2 cells"), "{e}");
}
