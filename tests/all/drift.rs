//! `wasmops drift` (issue 21.4): a data scientist's own files in, Evidently's
//! default verdicts out — as JSON (checked against scipy's values), as a
//! table, and as an HTML page checked in headless Chromium; bad files get an
//! error naming the line or column, and nothing half-written.

use serde_json::Value;

use crate::common::*;

fn drift_fixtures() -> std::path::PathBuf {
    fixtures().join("drift")
}

#[test]
fn json_report_matches_scipy_and_the_html_page_renders_one_plot_per_column() {
    let dir = scratch();
    let html = dir.join("report.html");
    let (r, c) = (
        drift_fixtures().join("reference.csv"),
        drift_fixtures().join("current.csv"),
    );
    let out = ok(&[
        "drift",
        "--reference",
        p(&r),
        "--current",
        p(&c),
        "--json",
        "--html",
        p(&html),
    ]);
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
    let table = ok(&["drift", "--reference", p(&r), "--current", p(&c)]);
    assert!(
        table.contains("dataset drift: DETECTED (2 of 4 columns"),
        "{table}"
    );
    assert!(table.contains("vibration  FLOAT_TYPE_BIG_FLOAT"), "{table}");
    let e = fails(&[
        "drift",
        "--reference",
        p(&r),
        "--current",
        p(&c),
        "--fail-on-drift",
    ]);
    assert!(e.contains("dataset drift: 50% of columns drifted"), "{e}");
    // The reference against itself passes the same gate.
    ok(&[
        "drift",
        "--reference",
        p(&r),
        "--current",
        p(&r),
        "--fail-on-drift",
    ]);
}

#[test]
fn methods_and_thresholds_can_be_set_per_column() {
    let (r, c) = (
        drift_fixtures().join("reference.csv"),
        drift_fixtures().join("current.csv"),
    );
    let out = ok(&[
        "drift",
        "--reference",
        p(&r),
        "--current",
        p(&c),
        "--json",
        "--method",
        "psi",
        "--method",
        "temp=wasserstein_norm",
        "--threshold",
        "temp=0.5",
    ]);
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

    let e = fails(&[
        "drift",
        "--reference",
        p(&r),
        "--current",
        p(&c),
        "--method",
        "site=ks",
    ]);
    assert!(e.contains("column `site`: ks needs numbers"), "{e}");
    let e = fails(&[
        "drift",
        "--reference",
        p(&r),
        "--current",
        p(&c),
        "--method",
        "nope=psi",
    ]);
    assert!(
        e.contains("column `nope`, which the reference does not have"),
        "{e}"
    );
    let e = fails(&[
        "drift",
        "--reference",
        p(&r),
        "--current",
        p(&c),
        "--method",
        "kl",
    ]);
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
        let e = fails(&[
            "drift",
            "--reference",
            p(&reference),
            "--current",
            p(&current),
            "--html",
            p(&html),
        ]);
        assert!(e.contains(expected), "{name}: {e}");
        assert!(!html.exists(), "{name}: a report was written");
    }
    let e = fails(&[
        "drift",
        "--reference",
        p(&write("empty_ref.csv", "")),
        "--current",
        p(&reference),
    ]);
    assert!(
        e.contains("the reference data") && e.contains("empty"),
        "{e}"
    );
    // A reference column without a single value cannot be a reference.
    let e = fails(&[
        "drift",
        "--reference",
        p(&write("blank_ref.csv", "temp,site\n,a\n,b\n")),
        "--current",
        p(&reference),
    ]);
    assert!(
        e.contains("column `temp`: the reference has no value"),
        "{e}"
    );
    // A current column with no value at all is a data-quality finding, not an error.
    let out = ok(&[
        "drift",
        "--reference",
        p(&reference),
        "--current",
        p(&write("blank_cur.csv", "temp,site\n,a\n,b\n")),
        "--json",
    ]);
    assert!(out.contains("FEATURE_TYPE_NOT_PRESENT"), "{out}");
}
