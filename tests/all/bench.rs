//! `wasmops bench`: the report against native tract, and `--against` for two
//! builds of one model head to head.

use crate::common::*;
use serde_json::Value;

/// The bench's last stdout line, which must be one JSON object.
fn report(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("bench prints")).expect("last line is JSON")
}

fn num(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("`{key}` missing in {v}"))
}

#[test]
fn bench_reports_wasm_against_native_tract() {
    let wasm = component("scaler_linear_regression");
    let dir = fixtures().join("scaler_linear_regression");
    let out = ok(&[
        "bench",
        p(&wasm),
        "--model",
        p(&dir.join("model.onnx")),
        "--input",
        p(&dir.join("input_b1.json")),
        "--seconds",
        "0.2",
    ]);
    let r = report(&out);
    for key in [
        "native_p50_ms",
        "native_p90_ms",
        "wasm_p50_ms",
        "wasm_p90_ms",
        "compile_ms",
        "cached_start_ms",
        "instantiate_us",
        "call_overhead_us",
        "fresh_predict_us",
    ] {
        assert!(num(&r, key) > 0.0, "{key} in {r}");
    }
    let ratio = num(&r, "wasm_p50_ms") / num(&r, "native_p50_ms");
    assert!((num(&r, "ratio_p50") - ratio).abs() <= 1e-9 * ratio, "{r}");
    assert!(
        num(&r, "size_bytes") >= std::fs::metadata(&wasm).unwrap().len() as f64,
        "{r}"
    );
    assert_eq!(r["wasm_round_p50_ms"].as_array().unwrap().len(), 5, "{r}");
}

/// `--profile`: native tract's plan timed node by node, per operator kind.
/// On the int8 CNN the quantised products and the quantise/dequantise steps
/// around the float depthwise convolutions are there (the int8 plan, not a
/// float one; the requantisation is done in the products' store), shares add
/// up, largest first.
#[test]
fn profile_says_where_native_time_goes() {
    let name = "mobilenet_v2_style_int8";
    let dir = fixtures().join(name);
    // The int8 fixture takes its f32 twin's inputs (`inputs_from.txt`).
    let input = fixtures().join("mobilenet_v2_style/input_b1.json");
    let (wasm, model) = (component(name), dir.join("model.onnx"));
    let bench = |extra: &[&str]| {
        let base = [
            "bench",
            p(&wasm),
            "--model",
            p(&model),
            "--input",
            p(&input),
        ];
        report(&ok(&[&base[..], extra].concat()))
    };
    let r = bench(&["--seconds", "0.5", "--profile"]);
    let profile = r["native_profile"].as_array().expect("native_profile");
    let ops: Vec<&str> = profile.iter().map(|t| t["op"].as_str().unwrap()).collect();
    for op in ["OptMatMul", "QuantizeLinearU8", "DequantizeLinearF32"] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    let mut unique = ops.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ops.len(), "an operator listed twice: {ops:?}");
    let shares: f64 = profile.iter().map(|t| num(t, "share")).sum();
    assert!((shares - 1.0).abs() < 1e-9, "shares add up to {shares}");
    let ms: Vec<f64> = profile.iter().map(|t| num(t, "ms_per_run")).collect();
    assert!(
        ms.windows(2).all(|w| w[0] >= w[1]),
        "not largest first: {ms:?}"
    );
    assert!(profile.iter().all(|t| num(t, "nodes") >= 1.0), "{r}");
    // Without the flag the report has no profile.
    let r = bench(&["--seconds", "0.2"]);
    assert!(r.get("native_profile").is_none(), "{r}");
}

/// Largest |a - b| / max(|a|, 1) between two `run` outputs, computed here from their JSON.
fn json_difference(a: &Value, b: &Value) -> f64 {
    let values = |v: &Value| -> Vec<f64> {
        v["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs() / x.abs().max(1.0))
        .fold(0.0, f64::max)
}

#[test]
fn against_compares_two_components_of_one_model() {
    let dir = fixtures().join("scaler_linear_regression");
    let input = dir.join("input_b1.json");
    let plain = component("scaler_linear_regression");

    // The same component against itself: identical outputs.
    let r = report(&ok(&[
        "bench",
        p(&plain),
        "--against",
        p(&plain),
        "--input",
        p(&input),
        "--seconds",
        "0.2",
    ]));
    assert_eq!(num(&r, "max_output_difference"), 0.0, "{r}");
    assert!(
        num(&r, "p50_ms") > 0.0 && num(&r, "against_p50_ms") > 0.0,
        "{r}"
    );
    assert!(
        (num(&r, "ratio_p50") - num(&r, "p50_ms") / num(&r, "against_p50_ms")).abs() < 1e-9,
        "{r}"
    );

    // A build that clips its inputs first answers differently; the reported
    // difference is the one between the two components' `run` outputs.
    let pipeline = scratch().join("clip.toml");
    std::fs::write(
        &pipeline,
        "[[step]]\nop = \"clip\"\nmin = -0.01\nmax = 0.01\n",
    )
    .unwrap();
    let clipped = scratch().join("clipped.wasm");
    ok(&[
        "build",
        p(&dir.join("model.onnx")),
        "--out",
        p(&clipped),
        "--pipeline",
        p(&pipeline),
    ]);
    ok(&["sign", p(&clipped), "--key", p(&keys().0)]);
    let r = report(&ok(&[
        "bench",
        p(&plain),
        "--against",
        p(&clipped),
        "--input",
        p(&input),
        "--seconds",
        "0.2",
    ]));
    let run = |wasm: &std::path::Path| {
        serde_json::from_str::<Value>(&ok(&[
            "run",
            p(wasm),
            "--trust",
            p(&keys().1),
            "--input",
            p(&input),
        ]))
        .unwrap()
    };
    let expected = json_difference(&run(&plain), &run(&clipped));
    assert!(
        expected > 1e-3,
        "clipping should change the prediction ({expected})"
    );
    assert!(
        (num(&r, "max_output_difference") - expected).abs() <= 1e-6 * expected.max(1.0),
        "reported {r}, computed {expected}"
    );
}

#[test]
fn against_refuses_components_with_different_inputs() {
    let err = fails(&[
        "bench",
        p(&component("scaler_linear_regression")),
        "--against",
        p(&component("small_cnn")),
        "--seconds",
        "0.1",
    ]);
    assert!(err.contains("take different inputs"), "{err}");
    let err = fails(&["bench", p(&component("small_cnn"))]);
    assert!(
        err.contains("--model") || err.contains("--against"),
        "{err}"
    );
}
