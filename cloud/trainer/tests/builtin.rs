//! The built-in trainers against scikit-learn (`tests/fixtures/trainer/`,
//! written by `scripts/make_trainer_fixtures.py`) and their ONNX files against
//! onnxruntime (run through python3; `scripts/python-deps.sh` installs it
//! when missing).

use std::path::PathBuf;

use wasmops_trainer::{Algorithm, Frame, Settings, Target, native, onnx::Head, train_builtin};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/trainer")
}

fn frame(name: &str, label: &str, classify: bool) -> Frame {
    let bytes = std::fs::read(fixtures().join(name)).unwrap();
    Frame::parse(&bytes, label, classify).unwrap()
}

fn sklearn() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("sklearn.json")).unwrap()).unwrap()
}

/// Installs the Python references once (`scripts/python-deps.sh`).
fn python_deps() {
    static DEPS: std::sync::Once = std::sync::Once::new();
    DEPS.call_once(|| {
        let out = std::process::Command::new("bash")
            .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/python-deps.sh"))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "scripts/python-deps.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// onnxruntime's outputs for `onnx` on `frame`.
fn onnxruntime(onnx: &[u8], frame: &Frame) -> Vec<serde_json::Value> {
    python_deps();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    std::fs::write(&model, onnx).unwrap();
    let rows: Vec<Vec<f64>> = (0..frame.rows()).map(|i| frame.row(i).to_vec()).collect();
    let input = dir.path().join("x.json");
    std::fs::write(&input, serde_json::to_vec(&rows).unwrap()).unwrap();
    let script = r#"
import json, sys
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
x = np.array(json.load(open(sys.argv[2])), dtype=np.float32)
out = s.run(None, {"X": x})
print(json.dumps([o.tolist() for o in out]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&model)
        .arg(&input)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "onnxruntime: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn logistic_on_iris_is_as_good_as_sklearn_and_its_onnx_runs_in_onnxruntime() {
    let train = frame("iris_train.csv", "species", true);
    let holdout = frame("iris_holdout.csv", "species", true);
    let t = train_builtin(Algorithm::Logistic, &Settings::default(), &train, &holdout).unwrap();
    let reference = &sklearn()["iris_logistic"];
    let accuracy = t.metrics["accuracy"].as_f64().unwrap();
    let log_loss = t.metrics["log_loss"].as_f64().unwrap();
    eprintln!(
        "built-in: accuracy {accuracy}, log-loss {log_loss}; sklearn: {} {}",
        reference["accuracy"], reference["log_loss"]
    );
    assert_eq!(t.metrics["rows"], 30);
    assert!(accuracy >= reference["accuracy"].as_f64().unwrap() - 0.05);
    // linfa's L2 (alpha 1) on standardised features is sklearn's C = 1: the
    // same optimum, reached by a different L-BFGS (measured 0.15576 vs 0.15565).
    let reference_loss = reference["log_loss"].as_f64().unwrap();
    assert!(
        (log_loss - reference_loss).abs() < 0.01,
        "{log_loss} vs {reference_loss}"
    );
    assert!(t.code.starts_with("builtin:logistic"));
    // The ONNX file, run by an independent runtime, answers what tract does.
    let ours = native::run(&t.onnx, &holdout).unwrap();
    {
        let out = onnxruntime(&t.onnx, &holdout);
        let labels = out[0].as_array().unwrap();
        let probabilities = out[1].as_array().unwrap();
        for (i, (label, p)) in ours.iter().enumerate() {
            assert_eq!(labels[i].as_i64(), *label, "row {i}");
            for (j, x) in p.iter().enumerate() {
                let theirs = probabilities[i][j].as_f64().unwrap() as f32;
                assert!(
                    (x - theirs).abs() < 1e-5,
                    "row {i}: {p:?} vs {}",
                    probabilities[i]
                );
            }
        }
    }
}

#[test]
fn linear_regression_matches_sklearn_least_squares() {
    let train = frame("linear_train.csv", "y", false);
    let holdout = frame("linear_holdout.csv", "y", false);
    let t = train_builtin(Algorithm::Linear, &Settings::default(), &train, &holdout).unwrap();
    let reference = &sklearn()["linear"];
    for m in ["mae", "rmse"] {
        let (ours, theirs) = (
            t.metrics[m].as_f64().unwrap(),
            reference[m].as_f64().unwrap(),
        );
        assert!(
            (ours - theirs).abs() < 1e-4 * theirs.max(1.0),
            "{m}: {ours} vs {theirs}"
        );
    }
    // The coefficients themselves, read back through the model: f(0) and f(e_j).
    let fit =
        wasmops_trainer::builtin::fit(Algorithm::Linear, &Settings::default(), &train).unwrap();
    assert_eq!(fit.head, Head::Regressor);
    let intercept = reference["intercept"].as_f64().unwrap();
    assert!(
        (fit.bias[0] as f64 - intercept).abs() < 1e-4,
        "{} vs {intercept}",
        fit.bias[0]
    );
    for (j, coef) in reference["coef"].as_array().unwrap().iter().enumerate() {
        let coef = coef.as_f64().unwrap();
        assert!(
            (fit.weights[j] as f64 - coef).abs() < 1e-4,
            "x{j}: {} vs {coef}",
            fit.weights[j]
        );
    }
    {
        let out = onnxruntime(&t.onnx, &holdout);
        let ours = native::run(&t.onnx, &holdout).unwrap();
        for (i, (_, v)) in ours.iter().enumerate() {
            let theirs = out[0][i][0].as_f64().unwrap() as f32;
            assert!(
                (v[0] - theirs).abs() < 1e-4 * theirs.abs().max(1.0),
                "row {i}"
            );
        }
    }
}

#[test]
fn missing_values_are_filled_with_the_training_mean_in_the_onnx_too() {
    let csv = "a,b,y\n1,10,0\n2,,0\n3,30,1\n,40,1\n5,50,1\n0,5,0\n";
    let all = Frame::parse(csv.as_bytes(), "y", true).unwrap();
    let t = train_builtin(Algorithm::Logistic, &Settings::default(), &all, &all).unwrap();
    // A NaN row answers what the mean row answers.
    let probe = Frame::parse(b"a,b,y\n,,0\n2.2,27,0\n", "y", true).unwrap();
    let answers = native::run(&t.onnx, &probe).unwrap();
    native::agree(&answers[..1].to_vec(), &answers[1..].to_vec(), 1e-5).unwrap();
    {
        let out = onnxruntime(&t.onnx, &probe);
        assert_eq!(out[0][0].as_i64(), answers[0].0);
    }
}

#[test]
fn hopeless_data_is_refused_with_a_reason() {
    let one_class = Frame::parse(b"a,y\n1,4\n2,4\n3,4\n", "y", true).unwrap();
    let e = train_builtin(
        Algorithm::Logistic,
        &Settings::default(),
        &one_class,
        &one_class,
    )
    .unwrap_err();
    assert!(e.to_string().contains("one class only"), "{e}");
    let numbers = Frame::parse(b"a,y\n1,0.5\n2,1.5\n", "y", false).unwrap();
    let e = train_builtin(
        Algorithm::Logistic,
        &Settings::default(),
        &numbers,
        &numbers,
    )
    .unwrap_err();
    assert!(e.to_string().contains("needs class labels"), "{e}");
    let other = Frame::parse(b"b,y\n1,0\n2,1\n", "y", true).unwrap();
    let two = Frame::parse(b"a,y\n1,0\n2,1\n", "y", true).unwrap();
    let e = train_builtin(Algorithm::Logistic, &Settings::default(), &two, &other).unwrap_err();
    assert!(e.to_string().contains("columns"), "{e}");
    let e = Settings::from_json(&serde_json::json!({"learning_rate": 1})).unwrap_err();
    assert!(e.to_string().contains("learning_rate"), "{e}");
    assert!(matches!(
        Algorithm::parse("svm"),
        Err(wasmops_trainer::TrainerError::Settings(_))
    ));
    assert!(matches!(two.y, Target::Classes(_)));
}
