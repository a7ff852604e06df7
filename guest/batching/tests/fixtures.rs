//! Plans for the committed fixture models, checked against onnxruntime's outputs.

use std::path::{Path, PathBuf};

use tract_core::internal::*;
use wasmops_batching::Plan;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn plan(name: &str) -> Plan {
    let onnx = std::fs::read(fixture(name).join("model.onnx")).unwrap();
    Plan::new(wasmops_compiler::load_model(&onnx, &[]).unwrap()).unwrap()
}

fn tensors(path: &Path, key: &str) -> Vec<Tensor> {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape: Vec<usize> = t["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let data: Vec<f32> = t["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            Tensor::from_shape(&shape, &data).unwrap()
        })
        .collect()
}

/// The fixture's cases: `b1`, `b8`…
fn cases(name: &str) -> Vec<String> {
    let cases: Vec<String> = std::fs::read_dir(fixture(name))
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_prefix("input_")?
                .strip_suffix(".json")
                .map(String::from)
        })
        .collect();
    assert!(
        cases.len() >= 2,
        "{name}: expected batch 1 and a larger batch"
    );
    cases
}

/// Runs the fixture's `batch` case through the plan and compares every output
/// with onnxruntime's within the fixture's tolerance.
fn matches_onnxruntime(name: &str, plan: &Plan, batch: &str) {
    matches_onnxruntime_on(name, name, plan, batch)
}

/// [`matches_onnxruntime`] with the inputs of fixture `inputs_of`.
fn matches_onnxruntime_on(name: &str, inputs_of: &str, plan: &Plan, batch: &str) {
    let dir = fixture(name);
    let tol: f32 = std::fs::read_to_string(dir.join("tolerance.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let inputs = tensors(
        &fixture(inputs_of).join(format!("input_{batch}.json")),
        "inputs",
    )
    .into_iter()
    .map(|t| t.into_tvalue())
    .collect();
    let got = plan.run(inputs).unwrap();
    let expected = tensors(&dir.join(format!("expected_{batch}.json")), "outputs");
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.shape(), e.shape(), "{name} {batch}");
        let g = g.cast_to::<f32>().unwrap();
        for (a, b) in g
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .zip(e.to_plain_array_view::<f32>().unwrap().iter())
        {
            assert!(
                (a - b).abs() <= tol * b.abs().max(1.0),
                "{name} {batch}: {a} vs onnxruntime {b}"
            );
        }
    }
}

#[test]
fn convolutional_models_run_sample_by_sample() {
    for name in ["small_cnn", "mobilenet_v2_style"] {
        let plan = plan(name);
        assert!(plan.per_sample(), "{name} should get the batch-1 plan");
        // The interface keeps the symbolic batch even though the plan is specialised.
        assert!(
            plan.input_fact(0).unwrap().shape[0].to_i64().is_err(),
            "{name}: batch dimension should stay symbolic"
        );
        for batch in cases(name) {
            matches_onnxruntime(name, &plan, &batch);
        }
    }
}

/// Static int8 CNNs (quantize/dequantize between integer convolutions) are as
/// independent per sample as f32 ones. Their inputs are the f32 fixture's.
#[test]
fn static_int8_convolutional_models_run_sample_by_sample() {
    for name in [
        "mobilenet_v2_style_int8",
        "mobilenet_v2_style_int8_per_tensor",
    ] {
        let plan = plan(name);
        assert!(plan.per_sample(), "{name} should get the batch-1 plan");
        for batch in cases("mobilenet_v2_style") {
            matches_onnxruntime_on(name, "mobilenet_v2_style", &plan, &batch);
        }
    }
}

#[test]
fn samples_mixed_across_the_batch_keep_the_whole_batch_plan() {
    let plan = plan("batch_mixing");
    assert!(
        !plan.per_sample(),
        "softmax and mean over the batch axis mix samples"
    );
    for batch in cases("batch_mixing") {
        matches_onnxruntime("batch_mixing", &plan, &batch);
    }
}

#[test]
fn tabular_models_keep_the_whole_batch_plan() {
    let plan = plan("scaler_logreg");
    assert!(!plan.per_sample(), "no convolution: scored as one batch");
}

#[test]
fn an_empty_batch_is_refused() {
    let plan = plan("small_cnn");
    let shape: Vec<usize> = plan
        .input_fact(0)
        .unwrap()
        .shape
        .iter()
        .skip(1)
        .map(|d| d.to_usize().unwrap())
        .collect();
    let empty = Tensor::zero::<f32>(&[&[0usize][..], &shape].concat()).unwrap();
    let err = plan.run(tvec!(empty.into_tvalue())).unwrap_err();
    assert!(format!("{err}").contains("empty"), "{err}");
}
