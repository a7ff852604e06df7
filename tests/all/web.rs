//! `wasmops web` in a real browser (Debian's chromium, driven by
//! playwright-core): the page verifies the signed component before it runs
//! anything, answers as `run` does (API and form), refuses a flipped byte and
//! an untrusted key with the reason, runs an image model from a canvas, and
//! fetches nothing from outside the bundle.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::*;

/// `wasmops web COMPONENT --out scratch/NAME --trust release.pub`; the bundle
/// and what the command said.
fn bundle(component: &Path, name: &str) -> (PathBuf, String) {
    browser_deps();
    let dir = scratch().join(name);
    let said = ok(&[
        "web",
        p(component),
        "--out",
        p(&dir),
        "--trust",
        p(&keys().1),
    ]);
    (dir, said)
}

/// The bundle's page in Chromium, served by `wasmops serve --web`.
fn open(dir: &Path, args: &[&str]) -> Value {
    let server = serve(&["serve", "--web", p(dir), "--addr", "127.0.0.1:0"]);
    let mut all = vec![server.url.as_str()];
    all.extend_from_slice(args);
    let url = format!("{}/", server.url);
    all[0] = &url;
    let seen = node_json("run_bundle.mjs", &all);
    assert_eq!(seen["errors"], json!([]), "page errors: {seen}");
    assert_eq!(
        seen["external"],
        json!([]),
        "requests beyond the bundle: {seen}"
    );
    seen
}

fn run(component: &Path, input: &Path) -> Value {
    serde_json::from_str(&ok(&[
        "run",
        p(component),
        "--input",
        p(input),
        "--trust",
        p(&keys().1),
    ]))
    .unwrap()
}

#[test]
fn a_browser_verifies_the_component_and_answers_as_run_does() {
    let logreg = component("scaler_logreg");
    let (dir, said) = bundle(&logreg, "web-logreg");
    // The page compiles the component's own core modules, SIMD and all: no
    // core module ships beside it, and model.wasm is the signed file.
    let simd: usize = said
        .split("SIMD instructions in its main core module: ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no SIMD count in {said:?}"));
    assert!(simd > 1000, "only {simd} SIMD instructions: {said}");
    assert_eq!(
        std::fs::read(dir.join("model.wasm")).unwrap(),
        std::fs::read(&logreg).unwrap()
    );
    let cores: Vec<_> = std::fs::read_dir(dir.join("model"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wasm"))
        .collect();
    assert!(
        cores.is_empty(),
        "core modules shipped beside the component: {cores:?}"
    );

    let input = fixtures().join("scaler_logreg/input_b5.json");
    // Hostile requests from the page's side: each refused with the reason,
    // and the model answers the good request after them.
    let bad = scratch().join("web-bad-requests.json");
    let requests = json!([
        {"inputs": [{"name": "X", "shape": [1, 4], "data": ["a", 1, 2, 3]}]},
        {"inputs": [{"name": "X", "shape": [1, 4], "data": [1, 2, 3]}]},
        {"inputs": [{"name": "nope", "shape": [1, 4], "data": [1, 2, 3, 4]}]},
        {"inputs": [{"name": "X", "shape": [-1, 4], "data": [1, 2, 3, 4]}]},
        {"inputs": "X"},
        {},
    ]);
    std::fs::write(&bad, requests.to_string()).unwrap();
    let seen = open(&dir, &["--input", p(&input), "--bad", p(&bad)]);
    let said: Vec<String> = seen["bad"]
        .as_array()
        .unwrap_or_else(|| panic!("{seen}"))
        .iter()
        .map(|e| {
            e.as_str()
                .unwrap_or_else(|| panic!("a bad request was answered: {seen}"))
                .to_string()
        })
        .collect();
    for (said, wanted) in said.iter().zip([
        "element 0: expected a number",
        "bad-shape",
        "unknown-input",
        "whole numbers",
        "expected {\"inputs\"",
        "expected {\"inputs\"",
    ]) {
        assert!(said.contains(wanted), "{said:?} should say {wanted:?}");
    }
    assert_eq!(seen["status"], "accepted", "{seen}");
    let key_id = ok(&["verify", p(&logreg), "--trust", p(&keys().1)]);
    let signer = seen["text"]
        .as_str()
        .unwrap()
        .split("signed by ")
        .nth(1)
        .unwrap()
        .split([',', ' '])
        .next()
        .unwrap()
        .to_string();
    assert!(
        key_id.contains(&signer),
        "the page names signer {signer}; verify says {key_id}"
    );
    assert_eq!(seen["info"]["name"], "scaler_logreg", "{seen}");
    assert_eq!(
        seen["info"]["inputs"][0]["shape"],
        json!(["N", "4"]),
        "{seen}"
    );

    let expected = run(&logreg, &input);
    assert_outputs_match(
        &json!({"outputs": seen["api"]}),
        &expected,
        1e-5,
        "browser API vs run",
    );
    assert_outputs_match(
        &json!({"outputs": seen["form"]}),
        &expected,
        1e-5,
        "browser form vs run",
    );
    assert_outputs_match(
        &json!({"outputs": seen["after_bad"]}),
        &expected,
        1e-5,
        "browser after bad requests vs run",
    );
}

#[test]
fn a_browser_refuses_a_flipped_byte_and_an_untrusted_key() {
    let logreg = component("scaler_logreg");
    let (dir, _) = bundle(&logreg, "web-refusals");

    // One byte of the model's code flipped after signing.
    let tampered = scratch().join("web-tampered");
    copy_dir(&dir, &tampered);
    let mut bytes = std::fs::read(tampered.join("model.wasm")).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(tampered.join("model.wasm"), bytes).unwrap();
    let seen = open(&tampered, &[]);
    assert_eq!(seen["status"], "refused", "{seen}");
    assert!(
        seen["text"]
            .as_str()
            .unwrap()
            .contains("modified after signing"),
        "{seen}"
    );

    // The same file, but the page trusts another key.
    let untrusted = scratch().join("web-untrusted");
    copy_dir(&dir, &untrusted);
    let (_, other) = keygen("web-other");
    let hex: String = std::fs::read(&other)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    std::fs::write(
        untrusted.join("trust.json"),
        json!({"keys": [hex]}).to_string(),
    )
    .unwrap();
    let seen = open(&untrusted, &[]);
    assert_eq!(seen["status"], "refused", "{seen}");
    assert!(
        seen["text"]
            .as_str()
            .unwrap()
            .contains("no signature by a trusted key"),
        "{seen}"
    );

    // `wasmops web` itself will not bundle what its keys refuse.
    let err = fails(&[
        "web",
        p(&logreg),
        "--out",
        p(&scratch().join("web-no")),
        "--trust",
        p(&other),
    ]);
    assert!(err.contains("not trusted"), "{err}");
}

#[test]
fn a_browser_runs_the_image_model_from_a_canvas() {
    // The MobileNetV2-style model with its resize/normalise pipeline.
    let cnn = component("image_pipeline");
    let (dir, _) = bundle(&cnn, "web-image");
    let seen = open(&dir, &["--canvas", "x", "160", "120"]);
    assert_eq!(seen["status"], "accepted", "{seen}");
    assert!(
        !seen["info"]["preprocessing"].as_array().unwrap().is_empty(),
        "{seen}"
    );
    let input = scratch().join("web-canvas-input.json");
    std::fs::write(&input, seen["canvas"]["input"].to_string()).unwrap();
    assert_eq!(
        seen["canvas"]["input"]["inputs"][0]["shape"],
        json!([1, 120, 160, 3])
    );
    let expected = run(&cnn, &input);
    assert_outputs_match(
        &json!({"outputs": seen["canvas"]["outputs"]}),
        &expected,
        1e-5,
        "canvas image in the browser vs run",
    );
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

#[test]
fn web_bench_races_the_bundle_against_onnxruntime_web_in_one_page() {
    browser_deps();
    let logreg = component("scaler_logreg");
    let out = ok(&[
        "web-bench",
        p(&logreg),
        "--model",
        p(&fixtures().join("scaler_logreg/model.onnx")),
        "--input",
        p(&fixtures().join("scaler_logreg/input_b5.json")),
        "--trust",
        p(&keys().1),
        "--runs",
        "30",
        "--rounds",
        "1",
    ]);
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    // Both sides ran the same model on the same input and agree.
    let diff = report["largest_output_difference"].as_f64().unwrap();
    assert!(diff <= 1e-5, "outputs differ by {diff}: {report}");
    assert_eq!(report["runs"], 30, "{report}");
    // Served cross-origin isolated, so the page's clock resolves microseconds.
    assert_eq!(report["cross_origin_isolated"], true, "{report}");
    for side in ["wasmops", "onnxruntime_web"] {
        for field in ["load_ms", "first_ms", "p50_ms", "p90_ms", "mean_ms"] {
            let v = report[side][field].as_f64().unwrap_or(-1.0);
            assert!(v > 0.0, "{side} {field} = {v}: {report}");
        }
        // The component, the verifier and the glue; ORT's wasm and the ONNX file.
        assert!(
            report["bytes"][side].as_u64().unwrap() > 1_000_000,
            "{report}"
        );
    }
    let files = report["bytes"]["per_file"].as_object().unwrap();
    for fetched in [
        "/model.wasm",
        "/verifier.wasm",
        "/model/model.js",
        "/ort/ort-wasm-simd-threaded.wasm",
        "/model.onnx",
    ] {
        assert!(
            files.contains_key(fetched),
            "{fetched} not fetched: {report}"
        );
    }
}
