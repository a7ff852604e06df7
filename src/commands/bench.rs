//! In-wasm vs native tract on the same model, inputs and process.
//!
//! Reported: p50/p90 latency of both and their ratio, compile time (Cranelift,
//! no cache), cached start (compiled component on disk → first prediction),
//! instantiation time, per-call overhead (an empty guest call) and size.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use wasmops_runtime::bindings::{ModelInfo, Tensor};
use wasmops_runtime::synthetic::{self, Fill};
use wasmops_runtime::{Host, HostConfig, SignaturePolicy};

/// In-wasm vs native tract latency, compile and start times, size. Last line is JSON.
///
/// With `--against B.wasm`: this component against another build of the same
/// model (a guest or kernel change), both in wasm, in one process.
#[derive(Parser)]
pub struct BenchCommand {
    pub wasm: PathBuf,
    /// The ONNX model the component was built from (the native baseline).
    #[arg(long, required_unless_present = "against")]
    pub model: Option<PathBuf>,
    /// A second component taking the same inputs: time the two head to head
    /// (alternating rounds) and report their outputs' largest difference.
    #[arg(long, conflicts_with_all = ["model", "pipeline"])]
    pub against: Option<PathBuf>,
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// Inputs to use instead of synthetic ones.
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// Measuring time per side.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Also time native tract's plan node by node and print where the time
    /// goes, per operator kind (`native_profile` in the JSON).
    #[arg(long, conflicts_with = "against")]
    pub profile: bool,
}

impl BenchCommand {
    pub fn execute(self) -> Result<()> {
        let component = crate::files::read(&self.wasm)?;
        let mut opts = BenchOptions {
            batch: self.batch,
            budget: Duration::from_secs_f64(self.seconds),
            pipeline: read_pipeline(self.pipeline.as_deref())?,
            profile: self.profile,
            ..Default::default()
        };
        if let Some(input) = &self.input {
            opts.inputs = Some(
                std::fs::read_to_string(input)
                    .with_context(|| format!("cannot read {}", input.display()))?,
            );
        }
        match (&self.against, &self.model) {
            (Some(against), _) => {
                print_comparison(&compare(&component, &crate::files::read(against)?, &opts)?)
            }
            (None, Some(model)) => {
                let name = model
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                print(&run(&component, &crate::files::read(model)?, &name, &opts)?)
            }
            (None, None) => {
                bail!("pass --model MODEL.onnx (the native baseline) or --against OTHER.wasm")
            }
        }
        Ok(())
    }
}

pub struct BenchOptions {
    pub batch: u32,
    /// Measuring stops after this long per side (at least `min_iters` runs).
    pub budget: Duration,
    pub min_iters: usize,
    pub pipeline: Option<String>,
    /// Input JSON (the `run` format) to use instead of synthetic inputs.
    pub inputs: Option<String>,
    /// Profile native tract per operator kind too.
    pub profile: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            batch: 1,
            budget: Duration::from_secs(3),
            min_iters: 10,
            pipeline: None,
            inputs: None,
            profile: false,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub batch: u32,
    pub iterations_native: usize,
    pub iterations_wasm: usize,
    pub native_p50_ms: f64,
    pub native_p90_ms: f64,
    pub wasm_p50_ms: f64,
    pub wasm_p90_ms: f64,
    pub ratio_p50: f64,
    pub ratio_p90: f64,
    /// Each alternating round's p50: a side that is fast in one round and slow
    /// in the others (a machine or runtime effect after idling) shows here,
    /// where the pooled percentiles would hide it.
    pub wasm_round_p50_ms: Vec<f64>,
    pub native_round_p50_ms: Vec<f64>,
    pub compile_ms: f64,
    /// Compiled component on disk → signature verified, loaded, instantiated.
    pub cached_ready_ms: f64,
    /// ... → first prediction returned (ready + one inference).
    pub cached_start_ms: f64,
    pub instantiate_us: f64,
    pub call_overhead_us: f64,
    /// A prediction on an instance made for it, as `serve` runs each call
    /// (the instance's making not included): against `wasm_p50_ms`, what a
    /// fresh instance's first call costs over a warm one's.
    pub fresh_predict_us: f64,
    pub size_bytes: usize,
    pub guest_target_features: String,
    /// With `--profile`: native tract's time per operator kind, largest first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native_profile: Option<Vec<crate::native::OpTime>>,
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let ix = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[ix]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs `f` for the budget (and at least `min` times) after two warm-up calls.
fn sample(
    budget: Duration,
    min: usize,
    mut f: impl FnMut() -> Result<()>,
) -> Result<Vec<Duration>> {
    f()?;
    f()?;
    let start = Instant::now();
    let mut out = vec![];
    while out.len() < min || (start.elapsed() < budget && out.len() < 10_000) {
        let t = Instant::now();
        f()?;
        out.push(t.elapsed());
    }
    Ok(out)
}

/// Each round's samples.
type Rounds = Vec<Vec<Duration>>;

/// Times `a` and `b` in alternating rounds (five each, each side's budget split
/// evenly, each round after two untimed calls), so both see the same machine: on a shared VM the
/// speed drifts over seconds, and timing one after the other puts that drift into
/// their ratio. Rounds, not single calls, keep each side's working set warm in the
/// caches, as it is when a device serves one model. Returns each side's rounds.
fn sample_alternating(
    budget_each: Duration,
    min: usize,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
) -> Result<(Rounds, Rounds)> {
    const ROUNDS: u32 = 5;
    let (mut out_a, mut out_b) = (vec![], vec![]);
    let (round, min_per_round) = (budget_each / ROUNDS, min.div_ceil(ROUNDS as usize));
    for _ in 0..ROUNDS {
        out_a.push(sample(round, min_per_round, &mut a)?);
        out_b.push(sample(round, min_per_round, &mut b)?);
    }
    Ok((out_a, out_b))
}

/// Every round's p50 in ms, and all samples pooled.
fn rounds_p50(rounds: &mut [Vec<Duration>]) -> (Vec<f64>, Vec<Duration>) {
    let p50s = rounds.iter_mut().map(|r| ms(percentile(r, 0.5))).collect();
    (p50s, rounds.concat())
}

/// Deterministic inputs in [0, 1) following the model's declared inputs; symbolic dims take `batch`.
pub fn synthetic_inputs(info: &ModelInfo, batch: u32) -> Result<Vec<Tensor>> {
    synthetic::synthetic_inputs(info, batch, Fill::Noise)
        .map_err(|e| anyhow::anyhow!("{e}; pass --input"))
}

/// Measure the device path: each component signed with a fresh key that the
/// returned config (compiled-component cache in `cache_dir`, guest code
/// announced to `perf` as `WASMOPS_PROFILER` asks) trusts.
fn signed_for_bench(components: &[&[u8]], cache_dir: &Path) -> Result<(Vec<Vec<u8>>, HostConfig)> {
    let key = wasmops_sign::SecretKey::generate()?;
    let signed = components
        .iter()
        .map(|c| wasmops_sign::sign(c, &key))
        .collect::<Result<_, _>>()?;
    let config = HostConfig {
        cache_dir: Some(cache_dir.to_path_buf()),
        profiler: crate::args::profiler(),
        ..HostConfig::new(SignaturePolicy::Trusted(wasmops_trust::TrustPolicy::keys(
            vec![key.public()],
        )))
    };
    Ok((signed, config))
}

/// The `--input` file's tensors, or synthetic ones at the bench's batch size.
fn bench_inputs(opts: &BenchOptions, info: &ModelInfo) -> Result<Vec<Tensor>> {
    match &opts.inputs {
        Some(json) => crate::tensors::parse_inputs(json, info),
        None => synthetic_inputs(info, opts.batch),
    }
}

/// "name version" from the component's metadata, or `fallback` when it has no name.
fn label(info: &ModelInfo, fallback: &str) -> String {
    if info.name.is_empty() {
        fallback.to_string()
    } else {
        format!("{} {}", info.name, info.version)
    }
}

pub fn run(
    component: &[u8],
    onnx: &[u8],
    model_name: &str,
    opts: &BenchOptions,
) -> Result<BenchReport> {
    let cache_dir = tempfile::tempdir()?;
    let (signed, config) = signed_for_bench(&[component], cache_dir.path())?;
    let component = &signed[0][..];

    // Cold: compile with Cranelift (and fill the cache).
    let host = Host::new(config.clone())?;
    let loaded = host.load(component)?;
    let compile_ms = ms(loaded.compile_time);
    let mut instance = loaded.instantiate()?;
    let info = instance.metadata()?;
    if !info.preprocessing.is_empty() && opts.pipeline.is_none() {
        bail!(
            "this component preprocesses its inputs; pass the same --pipeline file so the native baseline does too"
        );
    }
    let inputs = bench_inputs(opts, &info)?;
    drop(instance);
    drop(loaded);
    drop(host);

    // Cached start: a new host finds the compiled component on disk.
    let started = Instant::now();
    let host = Host::new(config)?;
    let loaded = host.load(component)?;
    anyhow::ensure!(loaded.from_cache(), "the compiled component was not cached");
    let mut instance = loaded.instantiate()?;
    let cached_ready_ms = ms(started.elapsed());
    instance.predict(&inputs)?;
    let cached_start_ms = ms(started.elapsed());

    let mut inst_samples = sample(opts.budget / 4, opts.min_iters, || {
        loaded.instantiate().map(drop).map_err(Into::into)
    })?;
    let instantiate_us = percentile(&mut inst_samples, 0.5).as_secs_f64() * 1e6;
    let mut call_samples = sample(opts.budget / 4, opts.min_iters, || {
        instance.metadata().map(drop).map_err(Into::into)
    })?;
    let call_overhead_us = percentile(&mut call_samples, 0.5).as_secs_f64() * 1e6;
    let mut fresh_samples = vec![];
    sample(opts.budget / 4, opts.min_iters, || {
        let mut fresh = loaded.instantiate()?;
        let started = Instant::now();
        fresh.predict(&inputs)?;
        fresh_samples.push(started.elapsed());
        Ok(())
    })?;
    let fresh_predict_us = percentile(&mut fresh_samples, 0.5).as_secs_f64() * 1e6;

    // Native tract: same ONNX conversion as `build`, same plan (wasmops-batching),
    // same pipeline code, same inputs.
    let model = crate::native::NativeModel::load(onnx, opts.pipeline.as_deref(), model_name, "")?;
    let native_inputs = model.prepare(&inputs)?;
    let (mut wasm_rounds, mut native_rounds) = sample_alternating(
        opts.budget,
        opts.min_iters,
        || instance.predict(&inputs).map(drop).map_err(Into::into),
        || model.run(native_inputs.clone()).map(drop),
    )?;
    let (wasm_round_p50_ms, mut wasm) = rounds_p50(&mut wasm_rounds);
    let (native_round_p50_ms, mut native) = rounds_p50(&mut native_rounds);

    let (n50, n90) = (percentile(&mut native, 0.5), percentile(&mut native, 0.9));
    let (w50, w90) = (percentile(&mut wasm, 0.5), percentile(&mut wasm, 0.9));
    // As many runs as a quarter of the budget holds at the native p50.
    let native_profile = match opts.profile {
        true => {
            let runs = (opts.budget.as_secs_f64() / 4.0 / n50.as_secs_f64().max(1e-6)) as usize;
            Some(model.profile(&native_inputs, runs.clamp(opts.min_iters, 1000))?)
        }
        false => None,
    };
    Ok(BenchReport {
        model: label(&info, model_name),
        batch: opts.batch,
        iterations_native: native.len(),
        iterations_wasm: wasm.len(),
        native_p50_ms: ms(n50),
        native_p90_ms: ms(n90),
        wasm_p50_ms: ms(w50),
        wasm_p90_ms: ms(w90),
        ratio_p50: w50.as_secs_f64() / n50.as_secs_f64(),
        ratio_p90: w90.as_secs_f64() / n90.as_secs_f64(),
        wasm_round_p50_ms,
        native_round_p50_ms,
        compile_ms,
        cached_ready_ms,
        cached_start_ms,
        instantiate_us,
        call_overhead_us,
        fresh_predict_us,
        size_bytes: component.len(),
        guest_target_features: wasmops_guest_artifacts::TARGET_FEATURES.to_string(),
        native_profile,
    })
}

/// The human table, then the report as one JSON line (the last line, for machines).
pub fn print(report: &BenchReport) {
    println!("wasmops bench: {} (batch {})", report.model, report.batch);
    println!("  {:<28} {:>10} {:>10}", "", "p50", "p90");
    println!(
        "  {:<28} {:>8.3}ms {:>8.3}ms   ({} runs)",
        "native tract", report.native_p50_ms, report.native_p90_ms, report.iterations_native
    );
    println!(
        "  {:<28} {:>8.3}ms {:>8.3}ms   ({} runs)",
        "wasm (wasmtime)", report.wasm_p50_ms, report.wasm_p90_ms, report.iterations_wasm
    );
    println!(
        "  {:<28} {:>9.3}x {:>9.3}x",
        "wasm / native", report.ratio_p50, report.ratio_p90
    );
    println!(
        "  {:<28} {}",
        "wasm p50 per round (ms)",
        round_list(&report.wasm_round_p50_ms)
    );
    println!(
        "  {:<28} {}",
        "native p50 per round (ms)",
        round_list(&report.native_round_p50_ms)
    );
    println!(
        "  {:<28} {:>10.1} ms",
        "compile (cranelift)", report.compile_ms
    );
    println!(
        "  {:<28} {:>10.1} ms",
        "cached start → ready", report.cached_ready_ms
    );
    println!(
        "  {:<28} {:>10.1} ms",
        "cached start → 1st predict", report.cached_start_ms
    );
    println!("  {:<28} {:>10.1} us", "instantiate", report.instantiate_us);
    println!(
        "  {:<28} {:>10.1} us",
        "per-call overhead", report.call_overhead_us
    );
    println!(
        "  {:<28} {:>10.1} us   ({:.2}x the warm p50)",
        "predict, fresh instance",
        report.fresh_predict_us,
        report.fresh_predict_us / 1e3 / report.wasm_p50_ms
    );
    println!(
        "  {:<28} {:>10} bytes ({:.2} MB)",
        "component size",
        report.size_bytes,
        report.size_bytes as f64 / 1e6
    );
    if let Some(profile) = &report.native_profile {
        println!("  native tract, time per operator kind (largest first):");
        for t in profile.iter().take(12) {
            println!(
                "    {:<26} {:>9.3} ms {:>6.1} %  ({} nodes)",
                t.op,
                t.ms_per_run,
                t.share * 100.0,
                t.nodes
            );
        }
    }
    println!(
        "{}",
        serde_json::to_string(report).expect("report serialises")
    );
}

/// Two components of the same model head to head (`bench A --against B`).
#[derive(Debug, Serialize)]
pub struct ComparisonReport {
    pub model: String,
    pub against: String,
    pub batch: u32,
    pub iterations: usize,
    pub iterations_against: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub against_p50_ms: f64,
    pub against_p90_ms: f64,
    /// This component's latency over the other's: below 1 means this one is faster.
    pub ratio_p50: f64,
    pub ratio_p90: f64,
    pub round_p50_ms: Vec<f64>,
    pub against_round_p50_ms: Vec<f64>,
    /// Largest `|a - b| / max(|a|, 1)` between the two components' outputs on the bench inputs.
    pub max_output_difference: f64,
    pub size_bytes: usize,
    pub against_size_bytes: usize,
}

/// Times `component` against `other` in one process with alternating rounds, so a
/// machine's speed drift hits both alike; both must take the same inputs, and
/// their outputs must be comparable (same names, shapes and types).
pub fn compare(component: &[u8], other: &[u8], opts: &BenchOptions) -> Result<ComparisonReport> {
    let cache_dir = tempfile::tempdir()?;
    let (signed, config) = signed_for_bench(&[component, other], cache_dir.path())?;
    let host = Host::new(config)?;
    let (loaded, loaded_other) = (
        host.load(&signed[0]).context("this component")?,
        host.load(&signed[1]).context("the --against component")?,
    );
    let (mut a, mut b) = (loaded.instantiate()?, loaded_other.instantiate()?);
    let (info, info_other) = (a.metadata()?, b.metadata()?);
    if info.inputs != info_other.inputs {
        bail!(
            "the components take different inputs: {:?} against {:?}",
            info.inputs,
            info_other.inputs
        );
    }
    let inputs = bench_inputs(opts, &info)?;
    let max_output_difference =
        wasmops_runtime::output_difference(&a.predict(&inputs)?, &b.predict(&inputs)?)
            .map_err(|why| anyhow::anyhow!("the components' outputs are not comparable: {why}"))?;
    let (mut rounds, mut rounds_other) = sample_alternating(
        opts.budget,
        opts.min_iters,
        || a.predict(&inputs).map(drop).map_err(Into::into),
        || b.predict(&inputs).map(drop).map_err(Into::into),
    )?;
    let (round_p50_ms, mut mine) = rounds_p50(&mut rounds);
    let (against_round_p50_ms, mut theirs) = rounds_p50(&mut rounds_other);
    let (a50, a90) = (percentile(&mut mine, 0.5), percentile(&mut mine, 0.9));
    let (b50, b90) = (percentile(&mut theirs, 0.5), percentile(&mut theirs, 0.9));
    Ok(ComparisonReport {
        model: label(&info, "component"),
        against: label(&info_other, "component"),
        batch: opts.batch,
        iterations: mine.len(),
        iterations_against: theirs.len(),
        p50_ms: ms(a50),
        p90_ms: ms(a90),
        against_p50_ms: ms(b50),
        against_p90_ms: ms(b90),
        ratio_p50: a50.as_secs_f64() / b50.as_secs_f64(),
        ratio_p90: a90.as_secs_f64() / b90.as_secs_f64(),
        round_p50_ms,
        against_round_p50_ms,
        max_output_difference,
        size_bytes: component.len(),
        against_size_bytes: other.len(),
    })
}

/// The comparison's table, then the report as one JSON line.
pub fn print_comparison(report: &ComparisonReport) {
    println!(
        "wasmops bench: {} against {} (batch {})",
        report.model, report.against, report.batch
    );
    println!("  {:<28} {:>10} {:>10}", "", "p50", "p90");
    println!(
        "  {:<28} {:>8.3}ms {:>8.3}ms   ({} runs)",
        "this component", report.p50_ms, report.p90_ms, report.iterations
    );
    println!(
        "  {:<28} {:>8.3}ms {:>8.3}ms   ({} runs)",
        "--against component",
        report.against_p50_ms,
        report.against_p90_ms,
        report.iterations_against
    );
    println!(
        "  {:<28} {:>9.3}x {:>9.3}x",
        "this / against", report.ratio_p50, report.ratio_p90
    );
    println!(
        "  {:<28} {}",
        "p50 per round (ms)",
        round_list(&report.round_p50_ms)
    );
    println!(
        "  {:<28} {}",
        "against p50 per round (ms)",
        round_list(&report.against_round_p50_ms)
    );
    println!(
        "  {:<28} {:>10.2e}",
        "max output difference", report.max_output_difference
    );
    println!(
        "  {:<28} {:>10} / {} bytes",
        "sizes", report.size_bytes, report.against_size_bytes
    );
    println!(
        "{}",
        serde_json::to_string(report).expect("report serialises")
    );
}

fn round_list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn read_pipeline(path: Option<&Path>) -> Result<Option<String>> {
    path.map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()
}
