//! `wasmops serve`, the serverless endpoint: answers as `run` and
//! onnxruntime do, refuses hostile requests with the right status while it
//! keeps serving everyone else, checks trust at start; and `serve-bench`
//! drives it with a real load generator.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use crate::common::*;

fn post(url: &str, body: impl Into<reqwest::blocking::Body>) -> (u16, Value, String) {
    let r = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = r.text().unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, retry)
}

/// Sends only the headers of a POST announcing `length` body bytes (and a
/// few of them), and reads what the server answers before the rest.
fn announce(base: &str, path: &str, length: usize) -> (u16, String) {
    use std::io::{Read, Write};
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n{{\"inputs\":"
    )
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn get(url: &str) -> Value {
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

fn fixture(name: &str, file: &str) -> PathBuf {
    fixtures().join(name).join(file)
}

fn tolerance(name: &str) -> f64 {
    std::fs::read_to_string(fixture(name, "tolerance.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// The misbehaving test component, signed with the test key.
fn hostile() -> PathBuf {
    let out = scratch().join("hostile.wasm");
    if !out.exists() {
        std::fs::copy(wasmops_guest_artifacts::test_programs::HOSTILE, &out).unwrap();
        ok(&["sign", p(&out), "--key", p(&keys().0)]);
    }
    out
}

#[test]
fn serve_answers_as_run_and_onnxruntime_do_for_each_model() {
    let (logreg, mobilenet) = (component("scaler_logreg"), component("mobilenet_v2_style"));
    let server = serve(&[
        "serve",
        p(&logreg),
        p(&mobilenet),
        "--trust",
        p(&keys().1),
        "--addr",
        "127.0.0.1:0",
    ]);
    let url = &server.url;

    let list = get(&format!("{url}/v1/models"));
    let names: Vec<&str> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mobilenet_v2_style", "scaler_logreg"], "{list}");

    for (name, batch) in [("scaler_logreg", "b5"), ("mobilenet_v2_style", "b2")] {
        let input = fixture(name, &format!("input_{batch}.json"));
        let (status, got, _) = post(
            &format!("{url}/v1/models/{name}/predict"),
            std::fs::read(&input).unwrap(),
        );
        assert_eq!(status, 200, "{name}: {got}");
        let expected = read_json(&fixture(name, &format!("expected_{batch}.json")));
        assert_outputs_match(&got, &expected, tolerance(name), &format!("serve {name}"));
        // The same component through `run` gives the very same numbers.
        let component = if name == "scaler_logreg" {
            &logreg
        } else {
            &mobilenet
        };
        let run: Value = serde_json::from_str(&ok(&[
            "run",
            p(component),
            "--input",
            p(&input),
            "--trust",
            p(&keys().1),
        ]))
        .unwrap();
        assert_eq!(got, run, "{name}: serve and run differ");
    }

    let about = get(&format!("{url}/v1/models/scaler_logreg"));
    assert_eq!(about["runtime"], "wasm");
    assert_eq!(about["version"], "1.2.3");
    // Its rows were found independent at start, so waiting requests share calls.
    assert_eq!(about["batch_rows"], 32, "{about}");
    assert_eq!(
        get(&format!("{url}/v1/models/mobilenet_v2_style"))["batch_rows"],
        32
    );
    assert_eq!(about["inputs"][0]["name"], "X", "{about}");
    assert_eq!(about["inputs"][0]["shape"][1], "4", "{about}");
    assert!(
        about["signed_by"].as_str().is_some_and(|k| !k.is_empty()),
        "{about}"
    );
    let sha = about["sha256"].as_str().unwrap();
    assert_eq!(sha.len(), 64);
    assert_eq!(get(&format!("{url}/v1/health"))["status"], "ok");

    let metrics = reqwest::blocking::get(format!("{url}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    for line in [
        "wasmops_serve_requests_total{model=\"scaler_logreg\",code=\"200\"} 1",
        "wasmops_serve_requests_total{model=\"mobilenet_v2_style\",code=\"200\"} 1",
        "wasmops_serve_instantiate_seconds_count{model=\"scaler_logreg\"} 1",
    ] {
        assert!(metrics.contains(line), "no `{line}` in\n{metrics}");
    }
}

/// Requests that wait together run as one call on one instance, and each
/// still gets its own rows: single rows sent at once by many clients to a
/// one-slot server come back as onnxruntime computes them, while requests
/// that cannot share a call (another shape, not JSON) fail alone.
#[test]
fn requests_waiting_together_share_one_call_and_get_their_own_rows() {
    let logreg = component("scaler_logreg");
    let server = serve(&[
        "serve",
        p(&logreg),
        "--trust",
        p(&keys().1),
        "--addr",
        "127.0.0.1:0",
        "--concurrency",
        "1",
    ]);
    let base = server.url.clone();
    assert_eq!(
        get(&format!("{base}/v1/models/scaler_logreg"))["batch_rows"],
        32
    );
    let input = read_json(&fixture("scaler_logreg", "input_b5.json"));
    let expected = read_json(&fixture("scaler_logreg", "expected_b5.json"));
    let x = input["inputs"][0]["data"].as_array().unwrap().clone();
    // Row `i` of the fixture as a request of its own, and what onnxruntime
    // gives for it.
    let request = |i: usize| {
        serde_json::json!({"inputs": [{"name": "X", "shape": [1, 4], "data": x[4 * i..4 * i + 4]}]})
            .to_string()
    };
    let answer = |i: usize| {
        let outputs: Vec<Value> = expected["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                let shape = o["shape"].as_array().unwrap();
                let width: usize = shape[1..]
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .product();
                let mut one = shape.clone();
                one[0] = 1.into();
                serde_json::json!({"name": o["name"], "shape": one,
                    "data": o["data"].as_array().unwrap()[width * i..width * (i + 1)]})
            })
            .collect();
        serde_json::json!({ "outputs": outputs })
    };
    let url = format!("{base}/v1/models/scaler_logreg/predict");
    let clients: Vec<_> = (0..12)
        .map(|c| {
            let (url, bodies): (String, Vec<(usize, String)>) = (
                url.clone(),
                (0..40)
                    .map(|k| ((c + k) % 5, request((c + k) % 5)))
                    .collect(),
            );
            std::thread::spawn(move || {
                let mut got = vec![];
                for (k, (row, body)) in bodies.into_iter().enumerate() {
                    got.push((row, post(&url, body)));
                    // Now and then a request that cannot join a batch.
                    if c == 0 && k % 8 == 0 {
                        let short = r#"{"inputs":[{"name":"X","shape":[1,3],"data":[1,2,3]}]}"#;
                        let (status, refusal, _) = post(&url, short);
                        assert_eq!(status, 422, "{refusal}");
                        let (status, refusal, _) = post(&url, "not json");
                        assert_eq!(status, 400, "{refusal}");
                    }
                }
                got
            })
        })
        .collect();
    let mut answered = 0;
    for client in clients {
        for (row, (status, got, _)) in client.join().unwrap() {
            assert_eq!(status, 200, "{got}");
            assert_outputs_match(
                &got,
                &answer(row),
                tolerance("scaler_logreg"),
                &format!("row {row}"),
            );
            answered += 1;
        }
    }
    let metrics = reqwest::blocking::get(format!("{base}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let value = |name: &str| -> f64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let (requests, calls) = (
        value("wasmops_serve_batch_requests_sum{model=\"scaler_logreg\"}"),
        value("wasmops_serve_batch_requests_count{model=\"scaler_logreg\"}"),
    );
    eprintln!("{answered} good requests in {calls} calls");
    assert_eq!(
        requests, answered as f64,
        "each good request answered by one call"
    );
    assert!(
        calls < requests,
        "no call answered more than one request:\n{metrics}"
    );
    assert_eq!(
        value("wasmops_serve_instantiate_seconds_count{model=\"scaler_logreg\"}"),
        calls,
        "one instance per call"
    );
}

#[test]
fn native_baseline_answers_as_onnxruntime_does() {
    let model = fixture("scaler_logreg", "model.onnx");
    let native = format!("iris={}", p(&model));
    let server = serve(&["serve", "--native", &native, "--addr", "127.0.0.1:0"]);
    let (status, got, _) = post(
        &format!("{}/v1/models/iris/predict", server.url),
        std::fs::read(fixture("scaler_logreg", "input_b5.json")).unwrap(),
    );
    assert_eq!(status, 200, "{got}");
    let expected = read_json(&fixture("scaler_logreg", "expected_b5.json"));
    assert_outputs_match(&got, &expected, tolerance("scaler_logreg"), "native");
    assert_eq!(
        get(&format!("{}/v1/models/iris", server.url))["runtime"],
        "native"
    );
}

/// `serve` with the logistic regression beside the hostile component on two
/// slots, under `limits`.
fn logreg_beside_hostile(limits: &[&str]) -> Served {
    let (logreg, hostile) = (component("scaler_logreg"), hostile());
    let mut args = vec![
        "serve",
        p(&logreg),
        p(&hostile),
        "--trust",
        p(&keys().1),
        "--addr",
        "127.0.0.1:0",
        "--concurrency",
        "2",
    ];
    args.extend_from_slice(limits);
    serve(&args)
}

/// A request that has the hostile component `behaviour` (spin, trap, hog, echo).
fn behaving(behaviour: &str) -> Vec<u8> {
    format!(r#"{{"inputs":[{{"name":"{behaviour}","shape":[1],"data":[1]}}]}}"#).into_bytes()
}

#[test]
fn hostile_requests_get_clear_answers_while_everyone_else_is_served() {
    let server = logreg_beside_hostile(&[
        "--max-body-mb",
        "1",
        "--deadline-ms",
        "500",
        "--memory-limit-mb",
        "256",
    ]);
    let url = server.url.clone();
    let predict = |model: &str| format!("{url}/v1/models/{model}/predict");

    // Good requests all along, on another thread: every one is answered
    // right while the hostile ones below are refused or contained.
    let input = std::fs::read(fixture("scaler_logreg", "input_b5.json")).unwrap();
    let expected = read_json(&fixture("scaler_logreg", "expected_b5.json"));
    let stop = Arc::new(AtomicBool::new(false));
    let steady = {
        let (stop, url, input) = (stop.clone(), predict("scaler_logreg"), input.clone());
        std::thread::spawn(move || {
            let mut answers = vec![];
            while !stop.load(Ordering::Relaxed) {
                answers.push(post(&url, input.clone()));
            }
            answers
        })
    };

    let expect = |url: &str, body: Vec<u8>, status: u16, says: &str| {
        let (got, json, _) = post(url, body);
        let error = json["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(got, status, "{url}: {json}");
        assert!(
            error.contains(says),
            "{url}: `{error}` does not say `{says}`"
        );
        error
    };
    let logreg_url = predict("scaler_logreg");
    expect(
        &logreg_url,
        b"not json".to_vec(),
        400,
        "malformed input JSON",
    );
    expect(&logreg_url, vec![0xff, 0xfe, b'{'], 400, "not UTF-8");
    // Refused on its announced length, before its bytes are read.
    let (status, head) = announce(&url, "/v1/models/scaler_logreg/predict", 2 << 20);
    assert_eq!(status, 413, "{head}");
    assert!(head.contains("limit of 1048576 bytes"), "{head}");
    let wrong_shape = br#"{"inputs":[{"name":"X","shape":[1,3],"data":[1,2,3]}]}"#;
    expect(&logreg_url, wrong_shape.to_vec(), 422, "shape");
    let short = br#"{"inputs":[{"name":"X","shape":[2,4],"data":[1,2,3]}]}"#;
    expect(
        &logreg_url,
        short.to_vec(),
        422,
        "8 elements but 3 were given",
    );
    let unknown_input = br#"{"inputs":[{"name":"Y","shape":[1,4],"data":[1,2,3,4]}]}"#;
    expect(
        &logreg_url,
        unknown_input.to_vec(),
        422,
        "unknown input `Y`",
    );
    let text = br#"{"inputs":[{"name":"X","shape":[1,4],"data":["a","b","c","d"]}]}"#;
    expect(&logreg_url, text.to_vec(), 400, "expected a number");
    expect(&predict("nope"), input.clone(), 404, "no model `nope`");

    // The component's own failures: named, with nothing of its insides.
    let trap = expect(
        &predict("hostile"),
        behaving("trap"),
        500,
        "the model trapped",
    );
    assert!(trap.contains("incident"), "{trap}");
    assert!(
        !trap.contains("wasm") && !trap.contains("unreachable"),
        "{trap}"
    );
    expect(
        &predict("hostile"),
        behaving("spin"),
        504,
        "deadline of 500ms",
    );
    expect(
        &predict("hostile"),
        behaving("hog"),
        500,
        "memory limit of 268435456 bytes",
    );
    // After each, the same component answers the next request normally.
    let (status, echoed, _) = post(&predict("hostile"), behaving("echo"));
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed["outputs"][0]["name"], "echo");

    // Both slots spinning: a third request waits its second, then is told to retry.
    let spinners: Vec<_> = (0..2)
        .map(|_| {
            let url = predict("hostile");
            let body = behaving("spin");
            std::thread::spawn(move || post(&url, body).0)
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let (status, busy, retry) = post(&predict("hostile"), behaving("echo"));
    // Both slots may come free before the wait ends (500 ms deadline, 1 s wait):
    // then it is served.
    assert!(status == 503 || status == 200, "{status} {busy}");
    if status == 503 {
        assert_eq!(retry, "1");
        assert!(busy["error"].as_str().unwrap().contains("busy"), "{busy}");
    }
    for s in spinners {
        assert_eq!(s.join().unwrap(), 504);
    }

    stop.store(true, Ordering::Relaxed);
    let answers = steady.join().unwrap();
    assert!(answers.len() >= 5, "only {} steady requests", answers.len());
    for (status, got, _) in &answers {
        assert_eq!(*status, 200, "a good request failed: {got}");
        assert_outputs_match(got, &expected, tolerance("scaler_logreg"), "steady");
    }
    eprintln!(
        "{} good requests served beside the hostile ones",
        answers.len()
    );
    let metrics = reqwest::blocking::get(format!("{url}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("wasmops_serve_requests_total{model=\"hostile\",code=\"504\"}"),
        "{metrics}"
    );
}

/// A component that spins until its deadline on every request must not hold
/// every core for the length of a deadline: after one overrun it runs on
/// one slot until a call of its ends in time, and the other model is served
/// on the other.
#[test]
fn a_model_that_runs_into_its_deadline_holds_one_slot_until_it_ends_in_time() {
    let server = logreg_beside_hostile(&["--deadline-ms", "3000", "--queue-ms", "1000"]);
    let url = server.url.clone();
    let predict = |model: &str| format!("{url}/v1/models/{model}/predict");
    let probation = || {
        let metrics = reqwest::blocking::get(format!("{url}/metrics"))
            .unwrap()
            .text()
            .unwrap();
        let line = metrics
            .lines()
            .find(|l| l.starts_with("wasmops_serve_probation{model=\"hostile\"}"))
            .unwrap_or_else(|| panic!("no probation gauge in {metrics}"))
            .to_string();
        line.ends_with(" 1")
    };
    let spinner = || {
        let (url, body) = (predict("hostile"), behaving("spin"));
        std::thread::spawn(move || post(&url, body).0)
    };
    assert!(!probation());
    assert_eq!(post(&predict("hostile"), behaving("spin")).0, 504);
    assert!(probation(), "one overrun puts it on probation");

    // Two spinners: the first takes a slot, the second may not take the
    // other one, which stays free for the other model.
    let first = spinner();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let second = spinner();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let input = std::fs::read(fixture("scaler_logreg", "input_b5.json")).unwrap();
    let expected = read_json(&fixture("scaler_logreg", "expected_b5.json"));
    let (status, got, _) = post(&predict("scaler_logreg"), input);
    assert_eq!(
        status, 200,
        "the other model is served beside the spinner: {got}"
    );
    assert_outputs_match(&got, &expected, tolerance("scaler_logreg"), "beside");
    assert_eq!(first.join().unwrap(), 504);
    assert_eq!(
        second.join().unwrap(),
        503,
        "the second spinner waited its second for the model's one slot"
    );

    // A call in time ends the probation.
    let (status, echoed, _) = post(&predict("hostile"), behaving("echo"));
    assert_eq!(status, 200, "{echoed}");
    assert!(!probation(), "a call in time lifts the probation");
}

#[test]
fn busy_servers_say_so_and_when_to_retry() {
    let server = serve(&[
        "serve",
        p(&hostile()),
        "--trust",
        p(&keys().1),
        "--addr",
        "127.0.0.1:0",
        "--deadline-ms",
        "2000",
        "--concurrency",
        "1",
        "--queue-ms",
        "200",
    ]);
    let url = format!("{}/v1/models/hostile/predict", server.url);
    let spin = br#"{"inputs":[{"name":"spin","shape":[1],"data":[1]}]}"#;
    let spinner = {
        let url = url.clone();
        std::thread::spawn(move || post(&url, spin.to_vec()).0)
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (status, busy, retry) = post(&url, br#"{"inputs":[]}"#.to_vec());
    assert_eq!(status, 503, "{busy}");
    assert_eq!(retry, "1");
    assert!(
        busy["error"]
            .as_str()
            .unwrap()
            .contains("all 1 slots are taken"),
        "{busy}"
    );
    assert_eq!(spinner.join().unwrap(), 504);
}

#[test]
fn components_the_trust_policy_refuses_are_not_served() {
    let logreg = component("scaler_logreg");
    let (_, other_pub) = keygen("stranger");
    let refused = |wasm: &Path, trust: &Path| {
        let out = wasmops(&[
            "serve",
            p(wasm),
            "--trust",
            p(trust),
            "--addr",
            "127.0.0.1:0",
        ]);
        assert!(!out.status.success(), "served {}", wasm.display());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&logreg, &other_pub);
    assert!(
        err.contains("cannot load") && err.contains("signature"),
        "{err}"
    );
    let mut bytes = std::fs::read(&logreg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let flipped = scratch().join("flipped.wasm");
    std::fs::write(&flipped, bytes).unwrap();
    let err = refused(&flipped, &keys().1);
    assert!(err.contains("signature"), "{err}");
    let err = fails(&["serve", p(&logreg)]);
    assert!(err.contains("no trusted key"), "{err}");
}

#[test]
fn serve_bench_measures_wasm_against_native_and_wasmtime_serve_with_hey() {
    let status = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/bench-deps.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "could not install hey");
    let out = ok(&[
        "serve-bench",
        p(&component("scaler_logreg")),
        "--model",
        p(&fixture("scaler_logreg", "model.onnx")),
        "--input",
        p(&fixture("scaler_logreg", "input_b1.json")),
        "--seconds",
        "1",
        "--rounds",
        "1",
        "--http-wasm",
        p(&http_component("scaler_logreg", "bench-http.wasm")),
        "--wasmtime",
        &wasmtime_cli(),
    ]);
    eprintln!("{out}");
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    for side in ["wasm", "native", "wasmtime_serve"] {
        for load in ["saturated", "at_80_percent"] {
            let l = &report[side][load];
            assert!(l["requests_per_s"].as_f64().unwrap() > 0.0, "{report}");
            assert!(l["p50_ms"].as_f64().unwrap() > 0.0, "{report}");
            assert!(l["p99_ms"].as_f64().unwrap() >= l["p50_ms"].as_f64().unwrap());
            assert_eq!(l["failed"], 0, "{side} {load}: {report}");
        }
    }
    assert!(report["throughput_ratio"].as_f64().unwrap() > 0.0);
    assert!(report["instantiate_us"].as_f64().unwrap() > 0.0, "{report}");
    assert!(
        report["requests_per_call"].as_f64().unwrap() >= 1.0,
        "{report}"
    );
}

/// wasmtime-cli at the host's wasmtime version (`scripts/wasmtime-cli.sh`
/// installs it when missing): the path of its binary.
fn wasmtime_cli() -> String {
    let out = std::process::Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/wasmtime-cli.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "installing wasmtime-cli failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Fixture `name` built with `--http` as `name` 1.2.3 (its pipeline
/// included), signed with the test key, at scratch/`out`.
fn http_component(name: &str, out: &str) -> PathBuf {
    let wasm = scratch().join(out);
    let model = fixture(name, "model.onnx");
    let mut args = vec![
        "build",
        p(&model),
        "--out",
        p(&wasm),
        "--name",
        name,
        "--version",
        "1.2.3",
        "--http",
    ];
    let pipeline = fixture(name, "pipeline.toml");
    if pipeline.exists() {
        args.extend(["--pipeline", p(&pipeline)]);
    }
    ok(&args);
    ok(&["sign", p(&wasm), "--key", p(&keys().0)]);
    wasm
}

/// `wasmtime serve` on `component`, on a free port; killed on drop.
fn wasmtime_serve(component: &Path) -> wasmops_cli::commands::serve_bench::ServerProcess {
    let wasmtime = std::process::Command::new(wasmtime_cli());
    wasmops_cli::commands::serve_bench::start_wasmtime(wasmtime, component).unwrap()
}

/// `build --http`: the model behind serve's routes as a wasi:http component,
/// run by the real `wasmtime serve` and called by a real HTTP client. It
/// answers as `run` does on the plain component (and onnxruntime), with
/// serve's refusals for bad requests, and keeps answering after them.
#[test]
fn an_http_component_answers_under_wasmtime_serve_as_run_does() {
    for (name, batch) in [("scaler_logreg", "b5"), ("mobilenet_v2_style", "b2")] {
        let wasm = http_component(name, &format!("{name}-http.wasm"));
        // Its claims name what it imports: wasi:http among the rest.
        let inspected: Value = serde_json::from_str(&ok(&["inspect", p(&wasm), "--json"])).unwrap();
        let caps = &inspected["claims"]["capabilities"];
        assert!(
            caps.as_array().unwrap().iter().any(|c| c == "http"),
            "{caps}"
        );
        // A wasmops host grants what a model needs (random, clocks, stdio),
        // not the front's wasi:http: it refuses the component unless told.
        let mut verify = vec!["verify", p(&wasm), "--trust", p(&keys().1)];
        for c in caps.as_array().unwrap().iter().filter(|c| *c != "http") {
            verify.extend(["--grant", c.as_str().unwrap()]);
        }
        let refused = wasmops(&verify);
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && why.contains("capability `http`"),
            "{why}"
        );
        verify.extend(["--grant", "http"]);
        ok(&verify);

        let server = wasmtime_serve(&wasm);
        let url = &server.url;
        assert_eq!(get(&format!("{url}/v1/health"))["status"], "ok");
        let about = get(&format!("{url}/v1/models/{name}"));
        assert_eq!(about["version"], "1.2.3", "{about}");
        assert_eq!(get(&format!("{url}/v1/models"))["models"][0]["name"], name);

        let input = fixture(name, &format!("input_{batch}.json"));
        let predict = format!("{url}/v1/models/{name}/predict");
        let (status, got, _) = post(&predict, std::fs::read(&input).unwrap());
        assert_eq!(status, 200, "{name}: {got}");
        let expected = read_json(&fixture(name, &format!("expected_{batch}.json")));
        assert_outputs_match(
            &got,
            &expected,
            tolerance(name),
            &format!("wasmtime serve {name}"),
        );
        let run: Value = serde_json::from_str(&ok(&[
            "run",
            p(&component(name)),
            "--input",
            p(&input),
            "--trust",
            p(&keys().1),
        ]))
        .unwrap();
        assert_eq!(got, run, "{name}: wasmtime serve and run differ");

        // Bad requests: serve's answers, worded by the same parser.
        let (status, said, _) = post(&predict, "{not json");
        assert_eq!(status, 400, "{said}");
        assert!(
            said["error"]
                .as_str()
                .unwrap()
                .contains("malformed input JSON"),
            "{said}"
        );
        let (status, said, _) = post(
            &predict,
            r#"{"inputs":[{"name":"nope","shape":[1],"data":[1]}]}"#,
        );
        assert_eq!(status, 422, "{said}");
        let (status, said, _) = post(
            &format!("{url}/v1/models/other/predict"),
            std::fs::read(&input).unwrap(),
        );
        assert_eq!(status, 404, "{said}");
        assert!(said["error"].as_str().unwrap().contains(name), "{said}");
        let (status, text) = announce(url, &format!("/v1/models/{name}/predict"), 64 << 20);
        assert_eq!(status, 413, "{text}");
        let wrong = reqwest::blocking::get(&predict).unwrap();
        assert_eq!(wrong.status(), 405);
        let (status, again, _) = post(&predict, std::fs::read(&input).unwrap());
        assert_eq!((status, &again), (200, &got), "after the bad requests");
    }
}
