//! Every fixture model, built into a signed component and run by the real
//! binary, matches onnxruntime's outputs for batch 1 and a batch > 1.

use crate::common::*;

/// `flavour`: the generic guest `build` must pick (the slim one whenever the
/// model's ops allow, so components stay small).
fn check(name: &str, flavour: &str) {
    let wasm = component(name);
    assert_eq!(
        guest_flavour(name),
        flavour,
        "{name}: baked from the wrong generic guest"
    );
    let dir = fixtures().join(name);
    let tol: f64 = std::fs::read_to_string(dir.join("tolerance.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Quantised fixtures (scripts/make_quant_fixtures.py) use the inputs of
    // the f32 fixture they were made from.
    let inputs = match std::fs::read_to_string(dir.join("inputs_from.txt")) {
        Ok(from) => fixtures().join(from.trim()),
        Err(_) => dir.clone(),
    };
    let mut cases = 0;
    for entry in std::fs::read_dir(&inputs).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let Some(batch) = file
            .strip_prefix("input_")
            .and_then(|s| s.strip_suffix(".json"))
        else {
            continue;
        };
        let out = ok(&[
            "run",
            p(&wasm),
            "--trust",
            p(&keys().1),
            "--input",
            p(&path),
        ]);
        let got: serde_json::Value = serde_json::from_str(&out).expect("run prints JSON");
        let expected = read_json(&dir.join(format!("expected_{batch}.json")));
        assert_outputs_match(&got, &expected, tol, &format!("{name} {batch}"));
        if dir != inputs {
            assert_same_argmax(&got, &expected, &format!("{name} {batch}"));
        }
        cases += 1;
    }
    assert!(cases >= 1, "{name}: no input files");
}

/// Every row of every float `[N, classes]` output picks the class onnxruntime
/// picks (one of them, where its quantised scores tie).
fn assert_same_argmax(got: &serde_json::Value, expected: &serde_json::Value, what: &str) {
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let mut rows = 0;
    for e in expected["outputs"].as_array().unwrap() {
        let shape = e["shape"].as_array().unwrap();
        if shape.len() != 2 || !e["data"][0].is_f64() {
            continue;
        }
        let g = got["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == e["name"])
            .unwrap();
        let classes = shape[1].as_u64().unwrap() as usize;
        let (gd, ed) = (floats(&g["data"]), floats(&e["data"]));
        for (row, (ours, theirs)) in gd.chunks(classes).zip(ed.chunks(classes)).enumerate() {
            let best = ours.iter().cloned().fold(f64::MIN, f64::max);
            let picked = ours.iter().position(|v| *v == best).unwrap();
            let top = theirs.iter().cloned().fold(f64::MIN, f64::max);
            assert_eq!(
                theirs[picked], top,
                "{what}: `{}` row {row}: wasmops picks class {picked}, onnxruntime's top score is {top}",
                e["name"]
            );
            rows += 1;
        }
    }
    assert!(rows > 0, "{what}: no [N, classes] output to compare");
}

#[test]
fn scaler_logistic_regression() {
    check("scaler_logreg", "slim");
}

/// 300 input columns: the model whose probe and telemetry the fleet tests
/// push past the MQTT client's default packet size (issue 24.1).
#[test]
fn wide_logistic_regression() {
    check("wide_logreg", "slim");
}

#[test]
fn scaler_mlp() {
    check("scaler_mlp", "slim");
}

#[test]
fn random_forest_classifier() {
    check("random_forest_classifier", "slim");
}

#[test]
fn random_forest_multiclass_exported_with_zipmap() {
    check("random_forest_iris_zipmap", "slim");
}

#[test]
fn gradient_boosting_regressor() {
    check("gradient_boosting_regressor", "slim");
}

#[test]
fn random_forest_regressor() {
    check("random_forest_regressor", "slim");
}

#[test]
fn scaler_linear_regression() {
    check("scaler_linear_regression", "slim");
}

#[test]
fn tabular_pipeline_impute_onehot_categories_scale() {
    check("tabular_pipeline", "slim");
}

#[test]
fn small_cnn() {
    check("small_cnn", "slim");
}

#[test]
fn mobilenet_v2_style_224() {
    check("mobilenet_v2_style", "slim");
}

/// onnxruntime's static quantiser, QDQ format, int8 weights per output
/// channel and uint8 activations: the convolutions (`QLinearConv`) and the
/// classifier (`MatMulInteger`) run on tract's integer kernels, which the
/// slim guest keeps.
#[test]
fn mobilenet_v2_style_int8_qdq_per_channel() {
    check("mobilenet_v2_style_int8", "slim");
    let log = build_log("mobilenet_v2_style_int8");
    assert!(
        log.contains("note: int8 model: 28 quantize/dequantize convolutions and matrix products"),
        "{log}"
    );
}

#[test]
fn mobilenet_v2_style_int8_qdq_per_tensor() {
    check("mobilenet_v2_style_int8_per_tensor", "slim");
}

/// onnxconverter-common's float16 CNN (half-float inputs and outputs): it
/// runs in f32 on the slim guest, within the final float16 rounding of
/// onnxruntime's outputs.
#[test]
fn mobilenet_v2_style_float16() {
    check("mobilenet_v2_style_f16", "slim");
    let log = build_log("mobilenet_v2_style_f16");
    assert!(
        log.contains("note: float16 model: computed in f32")
            && log.contains("it takes and returns f32 tensors"),
        "{log}"
    );
}

/// The converter's usual call (`keep_io_types`): f32 inputs and outputs,
/// casts to and from float16 inside, an exporter's node named as a tensor.
#[test]
fn small_cnn_float16_with_f32_inputs_and_outputs() {
    check("small_cnn_f16_keep_io", "slim");
}

/// The int8 CNN behind the image pipeline (resize, normalise, HWC → CHW).
#[test]
fn image_pipeline_int8() {
    check("image_pipeline_int8", "slim");
}

/// onnxruntime's dynamic quantiser: `DynamicQuantizeLinear` + `MatMulInteger`.
#[test]
fn scaler_mlp_int8_dynamic() {
    check("scaler_mlp_int8_dynamic", "slim");
}

#[test]
fn image_pipeline_resize_normalize_chw() {
    check("image_pipeline", "slim");
}

#[test]
fn lstm_sequence_falls_back_to_the_full_guest() {
    check("lstm_sequence", "full");
}

/// The slim guest runs every comparison through one shared kernel per type.
#[test]
fn comparisons() {
    check("comparisons", "slim");
}

/// The slim guest leaves f64 out of tract's kernels (guest/vendor/README.md): a
/// model that computes in double precision must land on the full guest, and right.
#[test]
fn a_float64_model_falls_back_to_the_full_guest() {
    check("double_precision", "full");
}

#[test]
fn input_from_stdin() {
    use std::io::Write;
    let wasm = component("scaler_logreg");
    let input = std::fs::read(fixtures().join("scaler_logreg/input_b1.json")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmops"))
        .args(["run", p(&wasm), "--trust", p(&keys().1), "--input", "-"])
        .env("WASMOPS_CACHE_DIR", cache_dir())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_outputs_match(
        &got,
        &read_json(&fixtures().join("scaler_logreg/expected_b1.json")),
        1e-4,
        "stdin",
    );
}

#[test]
fn metadata_describes_inputs_outputs_and_pipeline() {
    let wasm = component("tabular_pipeline");
    let out = ok(&["inspect", p(&wasm), "--trust", p(&keys().1), "--json"]);
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(info["name"], "tabular_pipeline");
    assert_eq!(info["version"], "1.2.3");
    assert_eq!(info["inputs"][0]["name"], "X");
    assert_eq!(
        info["inputs"][0]["shape"][0], "N",
        "the batch dimension stays symbolic: {info}"
    );
    assert_eq!(info["inputs"][1]["name"], "color");
    assert_eq!(info["inputs"][1]["type"], "text");
    let outputs: Vec<&str> = info["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(outputs, ["label", "probabilities"]);
    assert_eq!(info["preprocessing"].as_array().unwrap().len(), 4);
    assert!(
        info["preprocessing"][2].as_str().unwrap().contains("color"),
        "{info}"
    );
}

/// Same model, pipeline, name, version and `SOURCE_DATE_EPOCH` → byte-identical
/// component, with or without the compile cache: what a content-addressed
/// registry needs. Without `SOURCE_DATE_EPOCH` only the claims (created-at and
/// the default sequence) differ.
#[test]
fn builds_are_reproducible() {
    let dir = fixtures().join("tabular_pipeline");
    let (model, pipeline) = (dir.join("model.onnx"), dir.join("pipeline.toml"));
    let build = |out: &str, extra: &[&str], epoch: Option<&str>| {
        let out = scratch().join(out);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wasmops"));
        cmd.args([
            "build",
            p(&model),
            "--pipeline",
            p(&pipeline),
            "--out",
            p(&out),
        ])
        .args(extra)
        .env("WASMOPS_CACHE_DIR", cache_dir());
        match epoch {
            Some(e) => cmd.env("SOURCE_DATE_EPOCH", e),
            None => cmd.env_remove("SOURCE_DATE_EPOCH"),
        };
        let status = cmd.status().unwrap();
        assert!(status.success());
        std::fs::read(out).unwrap()
    };
    let first = build("repro-1.wasm", &[], Some("1790000000"));
    // Archive timestamps have one-second resolution: make sure the clock moves.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = build("repro-2.wasm", &["--no-cache"], Some("1790000000"));
    assert!(first == second, "two builds of the same inputs differ");
    let claims = wasmops_trust::Claims::read(&first).unwrap().unwrap();
    assert_eq!(claims.created_at.to_string(), "2026-09-21T14:13:20Z");

    let third = build("repro-3.wasm", &[], None);
    assert!(third != first);
    let strip = |w: &[u8]| {
        wasmops_sign::set_custom_section(w, wasmops_trust::CLAIMS_SECTION, None).unwrap()
    };
    assert!(
        strip(&first) == strip(&third),
        "builds differ outside the claims"
    );
}

/// Softmax over the batch axis and a batch mean: each output depends on every
/// sample, so the per-sample plan that convolutional models get (guest/batching)
/// must not be used for it.
#[test]
fn a_model_mixing_samples_across_the_batch() {
    check("batch_mixing", "slim");
}
