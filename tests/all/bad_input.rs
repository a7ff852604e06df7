//! Bad input gets a clear error naming the problem, a non-zero exit, no panic
//! and no partial output file.

use crate::common::*;

fn build_fails(model: &std::path::Path, extra: &[&str]) -> String {
    let out = scratch().join(format!(
        "bad-{}.wasm",
        model.file_stem().unwrap().to_str().unwrap()
    ));
    let mut args = vec!["build", p(model), "--out", p(&out)];
    args.extend(extra);
    let err = fails(&args);
    assert!(!out.exists(), "a failed build left {}", out.display());
    err
}

#[test]
fn malformed_and_truncated_onnx() {
    let err = build_fails(&fixtures().join("bad/truncated.onnx"), &[]);
    assert!(err.contains("malformed ONNX"), "{err}");
    let err = build_fails(&fixtures().join("bad/garbage.onnx"), &[]);
    assert!(err.contains("malformed ONNX"), "{err}");
}

#[test]
fn unsupported_op_is_named_with_its_node() {
    let err = build_fails(&fixtures().join("bad/unsupported_op.onnx"), &[]);
    assert!(err.contains("FancyFutureOp"), "{err}");
    assert!(err.contains("node"), "{err}");
}

/// Quantised models (scripts/make_quant_fixtures.py): an operator of
/// onnxruntime's QOperator format that nothing here runs is named; scales and
/// zero points that cannot mean anything are refused naming the node.
#[test]
fn bad_quantised_models_name_the_problem() {
    let err = build_fails(&fixtures().join("bad/int8_unsupported_op.onnx"), &[]);
    assert!(err.contains("QLinearAdd"), "{err}");
    let err = build_fails(&fixtures().join("bad/int8_zero_scale.onnx"), &[]);
    assert!(
        err.contains("QuantizeLinear") && err.contains("finite and positive"),
        "{err}"
    );
    let err = build_fails(&fixtures().join("bad/int8_zero_points_mismatch.onnx"), &[]);
    assert!(
        err.contains("DequantizeLinear") && err.contains("3 zero points for 4 scales"),
        "{err}"
    );
    let err = build_fails(&fixtures().join("bad/f16_truncated.onnx"), &[]);
    assert!(
        err.contains("float16 tensor `w`") && err.contains("3 bytes of raw data"),
        "{err}"
    );
}

/// tract 0.23 panics expanding an ONNX LSTM over a symbolic batch; `build`
/// reports it as an error instead of crashing.
#[test]
fn a_model_tract_panics_on_is_an_error() {
    let err = build_fails(
        &fixtures().join("lstm_sequence/model.onnx"),
        &["--input-shape", "x=N,12,3"],
    );
    assert!(
        err.contains("tract failed while converting the ONNX model")
            && err.contains("UndeterminedSymbol"),
        "{err}"
    );
}

#[test]
fn broken_pipeline_toml() {
    let bad = scratch().join("broken.toml");
    std::fs::write(
        &bad,
        "[[step]]\nop = \"standard-scale\"\nmean = [1.0, 2.0]\nstd = [1.0]\n",
    )
    .unwrap();
    let err = build_fails(
        &fixtures().join("scaler_logreg/model.onnx"),
        &["--pipeline", p(&bad)],
    );
    assert!(
        err.contains("standard-scale") && err.contains("same non-zero length"),
        "{err}"
    );
    std::fs::write(&bad, "[[step]\nop = ").unwrap();
    let err = build_fails(
        &fixtures().join("scaler_logreg/model.onnx"),
        &["--pipeline", p(&bad)],
    );
    assert!(err.contains("invalid pipeline TOML"), "{err}");
}

#[test]
fn input_shape_naming_an_unknown_input() {
    let err = build_fails(
        &fixtures().join("small_cnn/model.onnx"),
        &["--input-shape", "pixels=1,1,8,8"],
    );
    assert!(err.contains("pixels"), "{err}");
}

fn run_with(input: &str) -> String {
    let wasm = component("scaler_logreg");
    let file = scratch().join(format!(
        "in-{:x}.json",
        input.len() * 31 + input.bytes().map(|b| b as usize).sum::<usize>()
    ));
    std::fs::write(&file, input).unwrap();
    fails(&[
        "run",
        p(&wasm),
        "--trust",
        p(&keys().1),
        "--input",
        p(&file),
    ])
}

#[test]
fn bad_prediction_inputs_are_named() {
    let err = run_with(r#"{"inputs":[{"name":"pixels","shape":[1,4],"data":[1,2,3,4]}]}"#);
    assert!(err.contains("unknown input `pixels`"), "{err}");
    let err = run_with(r#"{"inputs":[{"name":"X","shape":[1,5],"data":[1,2,3,4,5]}]}"#);
    assert!(
        err.contains("expected shape") && err.contains("`X`"),
        "{err}"
    );
    let err = run_with(r#"{"inputs":[{"name":"X","shape":[1,4],"data":[1,2,3]}]}"#);
    assert!(err.contains("holds 4 elements but 3 were given"), "{err}");
    let err = run_with(r#"{"inputs":[{"name":"X","shape":[1,4],"data":[1,"two",3,4]}]}"#);
    assert!(err.contains("element 1: expected a number"), "{err}");
    let err = run_with(r#"{"inputs":[{"name":"X","shape":[1,4],"data":[1,null,3,4]}]}"#);
    assert!(err.contains("NaN") && err.contains("impute"), "{err}");
    let err = run_with(r#"{"inputs":[{"name":"X","shape":[1,4],"data":[1,2,3,4]}"#);
    assert!(err.contains("malformed input JSON"), "{err}");
    let err = run_with(r#"{"inputs":[]}"#);
    assert!(err.contains("input `X` is missing"), "{err}");
}

#[test]
fn truncated_or_foreign_wasm_is_refused() {
    let wasm = std::fs::read(component("small_cnn")).unwrap();
    let truncated = scratch().join("truncated.wasm");
    std::fs::write(&truncated, &wasm[..wasm.len() / 3]).unwrap();
    let err = fails(&[
        "run",
        p(&truncated),
        "--allow-unsigned",
        "--input",
        "/dev/null",
    ]);
    assert!(err.contains("truncated"), "{err}");
    // A core module (not a component) is refused with a clear message.
    let core = scratch().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let err = fails(&["run", p(&core), "--allow-unsigned", "--input", "/dev/null"]);
    assert!(err.contains("not a valid model component"), "{err}");
    let text = scratch().join("text.wasm");
    std::fs::write(&text, b"hello").unwrap();
    let err = fails(&["run", p(&text), "--allow-unsigned", "--input", "/dev/null"]);
    assert!(err.contains("not a WebAssembly"), "{err}");
}
