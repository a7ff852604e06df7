//! `wasmops web-bench`: a `wasmops web` bundle against onnxruntime-web (wasm
//! execution provider, one thread, SIMD) on the same ONNX file, in one page
//! of headless Chromium (Debian's, driven by playwright-core from
//! `benches/web`). Per side: load, first prediction, p50/p90 over `--runs`
//! predictions, and the bytes the browser downloaded (the Worker's fetches
//! included). Rounds alternate which side goes first.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};

use crate::args::KeyArgs;
use crate::files;

/// Benchmark a model in the browser: wasmops vs onnxruntime-web. Prints a
/// table with the ratios, then the report as one JSON line.
#[derive(Parser)]
pub struct WebBenchCommand {
    /// The signed component (built without a pipeline: onnxruntime-web
    /// gets the same tensors).
    pub wasm: PathBuf,
    /// The ONNX file it was built from (onnxruntime-web's model).
    #[arg(long)]
    pub model: PathBuf,
    /// One request: the `run` input JSON.
    #[arg(long)]
    pub input: PathBuf,
    /// Timed predictions per side after the first.
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Page loads, alternating which side goes first.
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    #[command(flatten)]
    pub keys: KeyArgs,
}

/// The harness: package.json (playwright-core, onnxruntime-web), bench.html, bench.mjs.
fn harness() -> PathBuf {
    std::env::var_os("WASMOPS_WEB_BENCH")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/web"))
}

const ORT_FILES: &[&str] = &[
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
];

impl WebBenchCommand {
    pub fn execute(self) -> Result<()> {
        if self.runs < 1 || self.rounds < 1 {
            bail!("--runs and --rounds must be at least 1");
        }
        let harness = harness();
        let ort = harness.join("node_modules/onnxruntime-web/dist");
        if !ort.join(ORT_FILES[0]).is_file() {
            wasmops_web::npm_ci(Path::new("npm"), &harness)?;
        }
        let input: Value = serde_json::from_slice(&files::read(&self.input)?)
            .with_context(|| format!("{} is not JSON", self.input.display()))?;
        let dir = tempfile::tempdir()?;
        let bundled = super::web::write_bundle(&self.wasm, &self.keys, dir.path(), None)?;
        let trust = &bundled.trust;
        let (onnx, lowered_from) = for_onnxruntime_web(&files::read(&self.model)?)
            .with_context(|| format!("{} is not an ONNX model", self.model.display()))?;
        std::fs::write(dir.path().join("model.onnx"), onnx)?;
        if let Some(ir) = lowered_from {
            eprintln!(
                "note: onnxruntime-web reads ONNX IR versions up to {ORT_WEB_MAX_IR}: its copy of the model says {ORT_WEB_MAX_IR} instead of {ir} (graph and opsets unchanged)"
            );
        }
        std::fs::create_dir_all(dir.path().join("ort"))?;
        for f in ORT_FILES {
            std::fs::copy(ort.join(f), dir.path().join("ort").join(f))
                .with_context(|| format!("cannot copy {f} from {}", ort.display()))?;
        }
        std::fs::copy(harness.join("bench.html"), dir.path().join("bench.html"))?;

        let settings = wasmops_serve::Settings {
            web: Some(dir.path().to_path_buf()),
            ..wasmops_serve::Settings::for_this_machine()
        };
        let server = wasmops_serve::Server::new(vec![], settings)?;
        let rt = tokio::runtime::Runtime::new()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        rt.spawn(async move { axum::serve(listener, server.router()).await });

        let mut rounds = vec![];
        for round in 0..self.rounds {
            let config = json!({"trust": trust, "input": input, "runs": self.runs, "ort_first": round % 2 == 1});
            std::fs::write(dir.path().join("bench.json"), config.to_string())?;
            let out = Command::new("node")
                .arg(harness.join("bench.mjs"))
                .arg(format!("http://{addr}/bench.html"))
                .output()
                .context("cannot run node")?;
            if !out.status.success() {
                bail!(
                    "the browser run failed:\n{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let result: Value = serde_json::from_slice(&out.stdout).with_context(|| {
                format!(
                    "bench.mjs printed no JSON: {}",
                    String::from_utf8_lossy(&out.stdout)
                )
            })?;
            if let Some(e) = result.get("error") {
                bail!("the benchmark page failed: {e}");
            }
            rounds.push(result);
        }
        let mut report = report(&rounds, bundled.written.files.len())?;
        report["onnx_ir_lowered_from"] = json!(lowered_from);
        print_table(&report);
        println!("{}", report);
        Ok(())
    }
}

/// The newest ONNX IR version onnxruntime-web 1.31 loads.
const ORT_WEB_MAX_IR: i64 = 13;

/// The ONNX file for onnxruntime-web: as it is, or with its IR version field
/// lowered to [`ORT_WEB_MAX_IR`] (the previous value returned) when newer; the
/// graph, weights and opset imports stay as they are, so both sides run the
/// same graph.
fn for_onnxruntime_web(onnx: &[u8]) -> Result<(Vec<u8>, Option<i64>)> {
    use prost::Message;
    let mut model = tract_onnx::pb::ModelProto::decode(onnx)?;
    if model.ir_version <= ORT_WEB_MAX_IR {
        return Ok((onnx.to_vec(), None));
    }
    let was = std::mem::replace(&mut model.ir_version, ORT_WEB_MAX_IR);
    Ok((model.encode_to_vec(), Some(was)))
}

/// Bytes per side: the ORT files and the ONNX file for onnxruntime-web;
/// everything of the bundle for wasmops (the demo page's files aside).
fn bytes_of(bytes: &serde_json::Map<String, Value>) -> (u64, u64) {
    let (mut wasmops, mut ort) = (0, 0);
    for (path, n) in bytes {
        let n = n.as_u64().unwrap_or(0);
        match path.as_str() {
            "/bench.html" | "/bench.json" | "/favicon.ico" => {}
            p if p.starts_with("/ort/") || p == "/model.onnx" => ort += n,
            _ => wasmops += n,
        }
    }
    (wasmops, ort)
}

fn largest_difference(a: &Value, b: &Value) -> f64 {
    let mut worst = 0.0f64;
    for x in a.as_array().into_iter().flatten() {
        let Some(y) = b
            .as_array()
            .into_iter()
            .flatten()
            .find(|y| y["name"] == x["name"])
        else {
            continue;
        };
        for (u, v) in x["data"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(y["data"].as_array().into_iter().flatten())
        {
            if let (Some(u), Some(v)) = (u.as_f64(), v.as_f64()) {
                worst = worst.max((u - v).abs() / v.abs().max(1.0));
            }
        }
    }
    worst
}

fn report(rounds: &[Value], bundle_files: usize) -> Result<Value> {
    let median = |side: &str, field: &str| -> f64 {
        let mut xs: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r[side][field].as_f64())
            .collect();
        xs.sort_by(f64::total_cmp);
        xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let first = rounds.first().context("no rounds")?;
    let bytes = first["bytes"].as_object().cloned().unwrap_or_default();
    let (wasmops_bytes, ort_bytes) = bytes_of(&bytes);
    let side = |name: &str| {
        json!({
            "load_ms": median(name, "load_ms"),
            "first_ms": median(name, "first_ms"),
            "p50_ms": median(name, "p50"),
            "p90_ms": median(name, "p90"),
            "mean_ms": median(name, "mean"),
        })
    };
    let inside: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r["wasmops"]["inside"]["p50"].as_f64())
        .collect();
    Ok(json!({
        "rounds": rounds.len(),
        // Whether timers were precise (5 µs; 100 µs otherwise).
        "cross_origin_isolated": first["isolated"],
        "runs": first["wasmops"]["runs"],
        "wasmops": side("wasmops"),
        "wasmops_in_worker_p50_ms": inside,
        // The same engine on the page's thread, as onnxruntime-web runs here.
        "wasmops_inline": side("wasmops_inline"),
        "onnxruntime_web": side("onnxruntime"),
        "bytes": {"wasmops": wasmops_bytes, "onnxruntime_web": ort_bytes, "per_file": bytes},
        "bundle_files": bundle_files,
        "p50_speedup": median("onnxruntime", "p50") / median("wasmops", "p50"),
        "inline_p50_speedup": median("onnxruntime", "p50") / median("wasmops_inline", "p50"),
        "bytes_ratio": wasmops_bytes as f64 / ort_bytes.max(1) as f64,
        // Both wasmops sides against onnxruntime-web.
        "largest_output_difference": largest_difference(&first["wasmops"]["outputs"], &first["onnxruntime"]["outputs"])
            .max(largest_difference(&first["wasmops_inline"]["outputs"], &first["onnxruntime"]["outputs"])),
    }))
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<16} {:>10} {:>10} {:>9} {:>9} {:>12}",
        "", "load ms", "first ms", "p50 ms", "p90 ms", "bytes"
    );
    for (label, key, bytes) in [
        ("wasmops", "wasmops", "wasmops"),
        ("wasmops inline", "wasmops_inline", "wasmops"),
        ("onnxruntime-web", "onnxruntime_web", "onnxruntime_web"),
    ] {
        let s = &r[key];
        println!(
            "{label:<16} {:>10.1} {:>10.2} {:>9.3} {:>9.3} {:>12}",
            f(&s["load_ms"]),
            f(&s["first_ms"]),
            f(&s["p50_ms"]),
            f(&s["p90_ms"]),
            r["bytes"][bytes]
        );
    }
    println!(
        "p50: wasmops is {:.2}x onnxruntime-web's speed in its Worker, {:.2}x on the page's thread (as ORT runs); bytes: wasmops downloads {:.2}x as many; outputs differ by at most {:.1e} (relative)",
        f(&r["p50_speedup"]),
        f(&r["inline_p50_speedup"]),
        f(&r["bytes_ratio"]),
        f(&r["largest_output_difference"])
    );
}
