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
    let seen = open(&dir, &["--input", p(&input), "--bad", p(&bad), "--inline"]);
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
        &json!({"outputs": seen["inline"]}),
        &expected,
        1e-5,
        "browser, on the page's thread, vs run",
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
    for side in ["wasmops", "wasmops_inline", "onnxruntime_web"] {
        for field in ["load_ms", "first_ms", "p50_ms", "p90_ms", "mean_ms"] {
            let v = report[side][field].as_f64().unwrap_or(-1.0);
            assert!(v > 0.0, "{side} {field} = {v}: {report}");
        }
        if side == "wasmops_inline" {
            continue;
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

/// Browser telemetry: a page given a coordinator and a device token counts
/// its predictions with the device agent's own code (compiled into the
/// page's wasm) and posts the reports; they show up in the coordinator's
/// telemetry binned by the signed profile exactly as the rows fall, and
/// their prediction ids take labels. The route refuses what a hostile page
/// could send, and the coordinator keeps serving.
#[test]
fn a_browser_reports_telemetry_as_a_device_does() {
    browser_deps();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    // Plain HTTP: headless Chromium does not trust the tests' private CA.
    let args = [
        "--trust",
        p(&keys().1),
        "--mqtt-listen",
        &free_addr(),
        "--insecure-plain",
    ]
    .map(String::from);
    let c = start_coordinator(&data, &args);
    let admin = admin_token(&data);
    let wasm = scratch().join("iris-web-telemetry.wasm");
    profiled_iris(&wasm, "3.0.0");
    cli_ok(&c, &admin, &["model", "register", p(&wasm)]);
    let profile: Value = serde_json::from_str(&ok(&["inspect", p(&wasm), "--json"])).unwrap();
    let profile = profile["claims"]["profile"].clone();
    let token = cli_ok(
        &c,
        &admin,
        &[
            "token",
            "create",
            "--name",
            "device:web-1",
            "--role",
            "device",
        ],
    )
    .trim()
    .to_string();
    let site = scratch().join("web-telemetry");
    // Reports only when flushed: the test decides when.
    let said = ok(&[
        "web",
        p(&wasm),
        "--out",
        p(&site),
        "--trust",
        p(&keys().1),
        "--coordinator",
        &c.url,
        "--device",
        "web-1",
        "--token",
        &token,
        "--report-every-s",
        "3600",
    ]);
    assert!(said.contains("telemetry as device `web-1`"), "{said}");

    // Ten rows, two with a petal width far above the training maximum;
    // predicted three times through the API and once through the form.
    let rows = iris_rows();
    let input = dir.path().join("rows.json");
    std::fs::write(
        &input,
        json!({"inputs": [{"name": "X", "shape": [10, 4], "data": rows}]}).to_string(),
    )
    .unwrap();
    let server = serve(&["serve", "--web", p(&site), "--addr", "127.0.0.1:0"]);
    let url = format!("{}/", server.url);
    let seen = node_json(
        "run_bundle.mjs",
        &[&url, "--input", p(&input), "--repeat", "3", "--flush"],
    );
    assert_eq!(seen["errors"], json!([]), "page errors: {seen}");
    let route = format!("{}/v1/devices/web-1/telemetry", c.url);
    let external = seen["external"].as_array().unwrap();
    assert!(!external.is_empty(), "the page sent nothing: {seen}");
    for u in external {
        assert_eq!(u.as_str(), Some(route.as_str()), "{seen}");
    }
    assert_eq!(seen["flush"]["pending"], 0, "{seen}");
    assert_eq!(seen["flush"]["error"], Value::Null, "{seen}");
    let mut ids = std::collections::BTreeSet::new();
    for call in seen["prediction_ids"].as_array().unwrap() {
        let call = call.as_array().unwrap_or_else(|| panic!("{seen}"));
        assert_eq!(call.len(), 10, "one id per row: {seen}");
        for id in call {
            let id = id.as_str().unwrap();
            assert!(id.len() == 25 && id.starts_with('p'), "{id}");
            assert!(ids.insert(id.to_string()), "{id} twice");
        }
    }
    assert_eq!(ids.len(), 30);

    // Flushed means stored: the coordinator answered after its commit.
    let live = |t: &Value| {
        t["versions"]
            .as_array()
            .and_then(|l| {
                l.iter().find(|v| {
                    v["model"] == "iris" && v["version"] == "3.0.0" && v["role"] == "live"
                })
            })
            .cloned()
            .unwrap_or_else(|| panic!("no iris 3.0.0 telemetry: {t}"))
    };
    let version = live(&api_get(&c, &admin, "/v1/telemetry"));
    let stats = &version["stats"];
    assert_eq!(stats["predictions"], 4, "{version}");
    assert_eq!(stats["errors"], 0, "{version}");
    for (j, column) in profile["columns"].as_array().unwrap().iter().enumerate() {
        let name = column["name"].as_str().unwrap();
        let want = expected_bins(column, &rows, j, 4);
        let got: Vec<u64> = stats["features"][name]["bins"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {stats}"))
            .iter()
            .map(|b| b.as_u64().unwrap())
            .collect();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(stats["features"]["petal_width"]["above"], 8, "{stats}");
    for k in 0..3 {
        let total: u64 = stats["outputs"][format!("probabilities[{k}]")]["bins"]
            .as_array()
            .unwrap_or_else(|| panic!("probabilities[{k}]: {stats}"))
            .iter()
            .map(|b| b.as_u64().unwrap())
            .sum();
        assert_eq!(total, 40, "{stats}");
    }
    // The page's prediction records arrived: an outcome joins one.
    let first = ids.iter().next().unwrap();
    let labelled = http()
        .post(format!("{}/v1/labels", c.url))
        .bearer_auth(&admin)
        .json(&json!({"labels": [{"prediction_id": first, "outcome": 1}]}))
        .send()
        .unwrap();
    assert_eq!(labelled.status(), 200, "{:?}", labelled.text());

    // Hostile posts to the route.
    let post = |path: &str, token: Option<&str>, body: Vec<u8>| {
        let mut r = http()
            .post(format!("{}{path}", c.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().unwrap();
        let cors = r
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string());
        (r.status().as_u16(), cors, r.text().unwrap())
    };
    let report = |device: &str, seq: u64| {
        use wasmops_protocol::telemetry::{Report, VersionStats};
        serde_json::to_vec(&Report {
            device: device.into(),
            stream: "forged".into(),
            seq,
            window_start_ms: 0,
            window_end_ms: 1,
            versions: vec![VersionStats {
                model: "iris".into(),
                version: "3.0.0".into(),
                role: "live".into(),
                predictions: 1000,
                ..Default::default()
            }],
            dropped_reports: 0,
            dropped_predictions: 0,
        })
        .unwrap()
    };
    let path = "/v1/devices/web-1/telemetry";
    for (what, (status, cors, body), want) in [
        ("no token", post(path, None, report("web-1", 0)), 401),
        (
            "an admin is not the device",
            post(path, Some(&admin), report("web-1", 0)),
            403,
        ),
        (
            "another device's route",
            post(
                "/v1/devices/web-2/telemetry",
                Some(&token),
                report("web-2", 0),
            ),
            403,
        ),
        (
            "not JSON",
            post(path, Some(&token), b"{not json".to_vec()),
            400,
        ),
        (
            "another device in the body",
            post(path, Some(&token), report("web-2", 0)),
            422,
        ),
        (
            "oversized",
            post(path, Some(&token), vec![b' '; 2 << 20]),
            413,
        ),
    ] {
        assert_eq!(status, want, "{what}: {body}");
        assert_eq!(
            cors.as_deref(),
            Some("*"),
            "{what}: a page must read the refusal"
        );
        assert!(
            !body.contains("sqlx") && !body.contains("panick"),
            "{what}: {body}"
        );
    }
    // The preflight a page's cross-origin POST needs.
    let pre = http()
        .request(reqwest::Method::OPTIONS, format!("{}{path}", c.url))
        .header("origin", "http://127.0.0.1:1")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .unwrap();
    assert!(pre.status().is_success(), "{:?}", pre.status());
    let allowed = pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("authorization"), "{allowed}");
    // A replayed report is acknowledged and stored once.
    for _ in 0..2 {
        let (status, _, body) = post(path, Some(&token), report("web-1", 7));
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["seqs"],
            json!([7])
        );
    }
    let version = live(&api_get(&c, &admin, "/v1/telemetry"));
    assert_eq!(version["stats"]["predictions"], 1004, "{version}");
    // The token is public: a flood is paced (a burst, then one a second).
    let paced = (8..60)
        .map(|seq| {
            http()
                .post(format!("{}{path}", c.url))
                .bearer_auth(&token)
                .body(report("web-1", seq))
                .send()
                .unwrap()
        })
        .find(|r| r.status() == 429)
        .expect("a flood of reports is never paced");
    let wait = paced.headers()["retry-after"].to_str().unwrap().to_string();
    assert!(wait.parse::<u64>().unwrap() >= 1, "{wait}");
    assert_eq!(paced.headers()["access-control-allow-origin"], "*");
}
