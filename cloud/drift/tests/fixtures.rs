//! The statistics against scipy's values, following Evidently's default rules
//! (`scripts/make_drift_fixtures.py` wrote the JSON): 1e-6 relative for the
//! distances, 1e-3 relative for p-values (p-values below 1e-12 may differ
//! absolutely by that much: scipy's z-test rounds them to 0).

use std::path::PathBuf;

use serde_json::Value;
use wasmops_drift::rule::{Method, Samples, default_method, scores};
use wasmops_drift::table::Kind;
use wasmops_drift::{Options, Table, compare};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/drift")
}

fn close(got: f64, want: f64, rel: f64, abs: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(got.abs()) + abs
}

fn tolerance(method: Method) -> (f64, f64) {
    if method.is_p_value() {
        (1e-3, 1e-12)
    } else {
        (1e-6, 1e-15)
    }
}

#[test]
fn every_statistic_matches_scipy() {
    let file: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("cases.json")).unwrap()).unwrap();
    let cases = file["cases"].as_array().unwrap();
    assert!(cases.len() >= 14);
    let mut failures = vec![];
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let e = &case["expected"];
        let numeric = case["kind"] == "numeric";
        let (r_num, c_num): (Vec<f64>, Vec<f64>);
        let (r_str, c_str): (Vec<&str>, Vec<&str>);
        let samples = if numeric {
            r_num = case["reference"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            c_num = case["current"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            Samples::Numeric(&r_num, &c_num)
        } else {
            r_str = case["reference"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            c_str = case["current"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            Samples::Categorical(&r_str, &c_str)
        };
        let n_ref = case["reference"].as_array().unwrap().len();
        let s = scores(samples);
        let kind = if numeric {
            Kind::Numeric
        } else {
            Kind::Categorical
        };
        let method = default_method(kind, n_ref, s.distinct);
        if method.name() != e["method"] {
            failures.push(format!(
                "{name}: method {method}, scipy's rule {}",
                e["method"]
            ));
        }
        for m in Method::ALL {
            let Some(want) = e.get(m.name()) else {
                continue;
            };
            let got = s.get(m);
            let (rel, abs) = tolerance(m);
            let ok = match (got, want.as_f64()) {
                (Some(g), Some(w)) => close(g, w, rel, abs),
                (None, None) => true,
                (Some(g), None) => g.is_nan(),
                (None, Some(_)) => false,
            };
            if !ok {
                failures.push(format!("{name}: {m} = {got:?}, scipy {want}"));
            }
        }
        let score = s.get(method).unwrap();
        let threshold = e["threshold"].as_f64().unwrap();
        if method.drifted(score, threshold) != e["drifted"].as_bool().unwrap() {
            failures.push(format!("{name}: verdict differs at {score}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_dataset_report_matches_scipy_field_for_field() {
    let reference = Table::read(&fixtures().join("reference.csv"), "reference", None).unwrap();
    let current =
        Table::read(&fixtures().join("current.csv"), "current", Some(&reference)).unwrap();
    let report = compare(&reference, &current, &Options::default()).unwrap();
    let got = serde_json::to_value(&report).unwrap();
    let want: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("report.json")).unwrap()).unwrap();
    assert_eq!(got["dataset_drift"], want["dataset_drift"]);
    assert_eq!(got["drift_share"], want["drift_share"]);
    // The JSON shape is the contract, in the order.
    let text = serde_json::to_string(&report).unwrap();
    let order = [
        "dataset_drift",
        "drift_share",
        "columns",
        "name",
        "kind",
        "method",
        "score",
        "threshold",
        "drifted",
        "ks_p_value",
        "psi",
        "data_quality",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{text}");
    let (g, w) = (
        got["columns"].as_array().unwrap(),
        want["columns"].as_array().unwrap(),
    );
    assert_eq!(g.len(), w.len());
    for (g, w) in g.iter().zip(w) {
        assert_eq!(g.as_object().unwrap().len(), 8, "{g}");
        for k in ["name", "kind", "method", "threshold", "drifted"] {
            assert_eq!(g[k], w[k], "{k} of {}", w["name"]);
        }
        let method: Method = w["method"].as_str().unwrap().parse().unwrap();
        let (rel, abs) = tolerance(method);
        assert!(
            close(
                g["score"].as_f64().unwrap(),
                w["score"].as_f64().unwrap(),
                rel,
                abs
            ),
            "score of {}: {g} vs {w}",
            w["name"]
        );
        assert!(
            close(
                g["psi"].as_f64().unwrap(),
                w["psi"].as_f64().unwrap(),
                1e-6,
                1e-15
            ),
            "psi of {}",
            w["name"]
        );
        match (g["ks_p_value"].as_f64(), w["ks_p_value"].as_f64()) {
            (Some(a), Some(b)) => {
                assert!(close(a, b, 1e-3, 1e-12), "ks of {}: {a} vs {b}", w["name"])
            }
            (a, b) => assert_eq!(a, b, "ks of {}", w["name"]),
        }
    }
    // The planted problems, and nothing else: a vibration sensor far out of
    // its range on 5 % of rows, a site the training data never had, and the
    // shifted temperature's 1.9 % above the training maximum (more than the
    // 1 % allowed, where a draw from the reference lands 1/(n+1) ≈ 0.13 %).
    let anomalies: Vec<(String, String)> = report
        .data_quality
        .iter()
        .map(|a| (a.column.clone(), a.anomaly.clone()))
        .collect();
    assert_eq!(
        anomalies,
        [
            ("temp".to_string(), "FLOAT_TYPE_BIG_FLOAT".to_string()),
            ("vibration".to_string(), "FLOAT_TYPE_BIG_FLOAT".to_string()),
            (
                "site".to_string(),
                "ENUM_TYPE_UNEXPECTED_STRING_VALUES".to_string()
            ),
        ],
        "{:#?}",
        report.data_quality
    );
    let html = wasmops_drift::html::render(&report, "fixture");
    assert_eq!(html.matches("<svg class=\"plot\"").count(), 4);
}

#[test]
fn a_reference_sample_against_itself_raises_nothing() {
    let reference = Table::read(&fixtures().join("reference.csv"), "reference", None).unwrap();
    let report = compare(&reference, &reference, &Options::default()).unwrap();
    assert!(
        !report.dataset_drift && report.drift_share == 0.0,
        "{report:?}"
    );
    assert!(report.data_quality.is_empty(), "{:?}", report.data_quality);
}

/// Drift from fleet counts (`binned`): PSI and Jensen–Shannon on the shares as
/// scipy computes them, and the binned W1 against a numerical integration of
/// the same piecewise-linear CDFs.
#[test]
fn drift_from_counts_matches_scipy_and_numerical_integration() {
    use wasmops_drift::binned::{BinCounts, Current, judge};
    use wasmops_profile::{ColumnKind, ColumnProfile};
    let file: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("binned.json")).unwrap()).unwrap();
    let numbers = |v: &Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let counts = |v: &Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    for case in file["cases"].as_array().unwrap() {
        let (r, c, e) = (&case["reference"], &case["current"], &case["expected"]);
        let reference = ColumnProfile {
            name: "x".into(),
            kind: ColumnKind::Numeric,
            rows: counts(&r["counts"]).iter().sum(),
            missing: 0,
            min: r["min"].as_f64(),
            max: r["max"].as_f64(),
            mean: None,
            std: r["std"].as_f64(),
            quantiles: vec![],
            integer: false,
            edges: numbers(&r["edges"]),
            counts: counts(&r["counts"]),
            domain: Default::default(),
            distinct: 0,
            top_share: 0.0,
            singletons: 0,
        };
        let current = Current::Bins(BinCounts {
            counts: counts(&c["counts"]),
            min: c["min"].as_f64(),
            max: c["max"].as_f64(),
        });
        let got = judge(&reference, &current, None, None).unwrap();
        let name = case["name"].as_str().unwrap();
        for (what, value) in [
            ("psi", got.psi),
            ("jensenshannon", got.jensenshannon),
            ("wasserstein_norm", got.wasserstein_norm.unwrap()),
        ] {
            let want = e[what].as_f64().unwrap();
            assert!(
                close(value, want, 1e-6, 1e-12),
                "{name}: {what} {value}, reference {want}"
            );
        }
    }
}

/// Realised performance against scikit-learn's metrics (1e-9 relative).
#[test]
fn performance_matches_sklearn() {
    use wasmops_drift::performance::{Scored, classification, regression};
    let file: Value =
        serde_json::from_slice(&std::fs::read(fixtures().join("performance.json")).unwrap())
            .unwrap();
    let index = |v: &Value| v.as_u64().unwrap() as usize;
    for case in file["classification"].as_array().unwrap() {
        let rows: Vec<Scored> = (0..case["actual"].as_array().unwrap().len())
            .map(|i| Scored {
                predicted: index(&case["predicted"][i]),
                actual: index(&case["actual"][i]),
                probabilities: case["probabilities"][i]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_f64().unwrap())
                    .collect(),
            })
            .collect();
        let got = classification(&rows).unwrap();
        let e = &case["expected"];
        for (what, value) in [
            ("accuracy", got.accuracy),
            ("auc", got.auc.unwrap()),
            ("log_loss", got.log_loss.unwrap()),
        ] {
            let want = e[what].as_f64().unwrap();
            assert!(
                close(value, want, 1e-9, 0.0),
                "{}: {what} {value}, sklearn {want}",
                case["name"]
            );
        }
    }
    let r = &file["regression"];
    let pairs: Vec<(f64, f64)> = r["predicted"]
        .as_array()
        .unwrap()
        .iter()
        .zip(r["actual"].as_array().unwrap())
        .map(|(p, a)| (p.as_f64().unwrap(), a.as_f64().unwrap()))
        .collect();
    let got = regression(&pairs).unwrap();
    assert!(close(
        got.mae,
        r["expected"]["mae"].as_f64().unwrap(),
        1e-9,
        0.0
    ));
    assert!(close(
        got.rmse,
        r["expected"]["rmse"].as_f64().unwrap(),
        1e-9,
        0.0
    ));
}
