//! `wasmops demo`: the whole path on embedded defaults, in one command.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;
use wasmops_api::{Client, Deployment, RolloutView};

use super::build::BuildCommand;
use super::inspect::inspect;
use super::keygen::keygen;
use super::run::RunCommand;
use super::sign::SignCommand;
use super::verify::VerifyCommand;
use crate::args::{ClaimsArgs, HostArgs, KeyArgs, TrustArgs};
use crate::files;

/// Build, sign, verify and run the bundled example model; then start a
/// coordinator with a simulated fleet and canary a new version across it.
#[derive(Parser)]
pub struct DemoCommand {
    /// Where to leave the demo's keys, components and coordinator data (a temporary directory by default).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Simulated devices.
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// Stop after the rollout instead of serving until Ctrl-C (the default when not run from a terminal).
    #[arg(long)]
    pub exit: bool,
    /// `rollout`: build, sign, run, deploy, canary, a drift moment;
    /// `drift`: the closed loop — concept drift, retraining, validation,
    /// canary, promotion.
    #[arg(long, default_value = "rollout", value_parser = ["rollout", "drift"])]
    pub scenario: String,
}

impl DemoCommand {
    pub fn execute(self) -> Result<()> {
        match self.scenario.as_str() {
            "drift" => demo_loop(self.dir, self.devices),
            _ => demo(self.dir, self.devices, self.exit),
        }
    }
}

/// `wasmops demo --scenario drift`: the closed loop on embedded defaults.
fn demo_loop(dir: Option<PathBuf>, devices: usize) -> Result<()> {
    let (dir, _tmp) = work_dir(dir)?;
    eprintln!("wasmops keygen --out release   (the loop's worker signs with it; devices trust it)");
    let (secret, public) = keygen(&dir.join("release"))?;
    let scenario = wasmops_fleet::demo_loop::LoopScenario::demo(dir.clone(), devices, public);
    let cache = dir.join("worker-cache");
    let worker = wasmops_coordinator::config::WorkerSettings {
        key: Some(secret),
        ..Default::default()
    };
    let outcome = wasmops_fleet::demo_loop::run(&scenario, &ProgressBars, move |ready| {
        super::coordinator::start_worker(ready, worker, cache)
    })?;
    eprintln!(
        "done: {} {} serves the fleet, {:.0} s after the change",
        wasmops_fleet::demo_loop::MODEL,
        outcome.version,
        outcome.total.as_secs_f64()
    );
    Ok(())
}

/// The CLI's progress bars for the fleet scenario.
pub struct ProgressBars;

impl wasmops_fleet::demo::Progress for ProgressBars {
    fn deployment(&self, api: &Client, dep: &Deployment) -> Result<Deployment> {
        super::deploy::follow(api, dep, 600)
    }

    fn rollout(&self, api: &Client, id: &str) -> Result<RolloutView> {
        super::rollout::follow(api, id, 900)
    }
}

/// Builds and signs `versions` (version, sequence) of the bundled demo model into `dir`.
/// Rows of the demo's training data: `X` = (age, income, plan) and `color`,
/// a deterministic spread (no randomness, no download).
fn demo_training() -> (Vec<Vec<f64>>, Vec<String>) {
    const COLORS: [&str; 3] = ["red", "blue", "green"];
    let frac = |i: usize, k: f64| ((i as f64 + 1.0) * k) % 1.0;
    (0..DEMO_TRAINING_ROWS)
        .map(|i| {
            let age = (20.0 + 50.0 * frac(i, 0.618_033_988_7)).round();
            let income = (20.0 + 80.0 * frac(i, 0.754_877_666_2) * 2.0).round() / 2.0;
            let plan = (i % 3) as f64;
            (vec![age, income, plan], COLORS[(i / 3) % 3].to_string())
        })
        .unzip()
}

const DEMO_TRAINING_ROWS: usize = 600;

/// The demo fleet's traffic: training rows, three a request; its change
/// moves age (feature 0) by half its std.
fn demo_traffic() -> wasmops_fleet::scenario::Scenario {
    let (rows, colors) = demo_training();
    wasmops_fleet::scenario::Scenario {
        kind: wasmops_fleet::scenario::Kind::CovariateShift,
        input: "X".into(),
        rows,
        text: vec![("color".into(), colors)],
        outcomes: vec![],
        features: vec![0],
        change_after: std::time::Duration::from_secs(365 * 86_400),
        rows_per_request: 3,
        label_delay: std::time::Duration::ZERO,
    }
}

pub fn build_versions(dir: &Path, key: &Path, versions: &[(&str, u64)]) -> Result<Vec<PathBuf>> {
    let model = dir.join("churn.onnx");
    let pipeline = dir.join("churn.pipeline.toml");
    let training = dir.join("churn.training.json");
    files::write_atomic(&model, DEMO_MODEL)?;
    files::write_atomic(&pipeline, DEMO_PIPELINE.as_bytes())?;
    let (rows, colors) = demo_training();
    let body = serde_json::json!({"inputs": [
        {"name": "X", "shape": [rows.len(), 3], "data": rows.concat()},
        {"name": "color", "shape": [colors.len()], "data": colors},
    ]});
    files::write_atomic(&training, body.to_string().as_bytes())?;
    let mut out = vec![];
    for (version, sequence) in versions {
        let wasm = dir.join(format!("churn-{version}.wasm"));
        let claims = ClaimsArgs {
            sequence: Some(*sequence),
            ..Default::default()
        };
        BuildCommand {
            pipeline: Some(pipeline.clone()),
            name: Some("churn".into()),
            version: version.to_string(),
            training_data: Some(training.clone()),
            feature_names: ["age", "income", "plan"].map(String::from).to_vec(),
            claims,
            ..BuildCommand::new(model.clone(), wasm.clone())
        }
        .execute()?;
        SignCommand {
            wasm: wasm.clone(),
            key: key.to_path_buf(),
            out: None,
            delegation: None,
        }
        .execute()?;
        out.push(wasm);
    }
    Ok(out)
}

pub const DEMO_MODEL: &[u8] = include_bytes!("../../tests/fixtures/tabular_pipeline/model.onnx");
pub const DEMO_PIPELINE: &str = include_str!("../../tests/fixtures/tabular_pipeline/pipeline.toml");
pub const DEMO_INPUT: &str = r#"{"inputs":[
  {"name":"X","shape":[3,3],"data":[52.0, 61.5, 2, 33.0, null, 0, 47.5, 38.0, 1]},
  {"name":"color","shape":[3],"data":["red","blue","green"]}
]}"#;

/// `dir` (created), or a temporary directory removed with the guard.
fn work_dir(dir: Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    Ok(match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            (d, None)
        }
        None => {
            let tmp = tempfile::tempdir()?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    })
}

fn demo(dir: Option<PathBuf>, devices: usize, exit: bool) -> Result<()> {
    let keep = dir.is_some();
    let (dir, _tmp) = work_dir(dir)?;
    let step = |n: u32, what: &str| eprintln!("[{n}/7] {what}");
    step(
        1,
        "writing the bundled churn model (scikit-learn LogisticRegression) and its pipeline",
    );
    let model = dir.join("churn.onnx");
    let pipeline = dir.join("churn.pipeline.toml");
    let input = dir.join("customers.json");
    files::write_atomic(&model, DEMO_MODEL)?;
    files::write_atomic(&pipeline, DEMO_PIPELINE.as_bytes())?;
    files::write_atomic(&input, DEMO_INPUT.as_bytes())?;

    step(2, "wasmops keygen --out release");
    let (secret, public) = keygen(&dir.join("release"))?;
    step(
        3,
        "wasmops build churn.onnx --pipeline churn.pipeline.toml --out churn.wasm",
    );
    let wasm = dir.join("churn.wasm");
    BuildCommand {
        pipeline: Some(pipeline.clone()),
        name: Some("churn".into()),
        version: "1.0.0".into(),
        ..BuildCommand::new(model.clone(), wasm.clone())
    }
    .execute()?;
    step(
        4,
        "wasmops sign churn.wasm --key release.key && wasmops verify churn.wasm --trust release.pub",
    );
    SignCommand {
        wasm: wasm.clone(),
        key: secret.clone(),
        out: None,
        delegation: None,
    }
    .execute()?;
    let trust = TrustArgs {
        keys: KeyArgs {
            trust: vec![public],
            ..Default::default()
        },
        ..Default::default()
    };
    VerifyCommand {
        wasm: wasm.clone(),
        trust: trust.clone(),
    }
    .execute()?;
    step(
        5,
        "wasmops run churn.wasm --trust release.pub --input customers.json",
    );
    let host = HostArgs::trusting(trust);
    inspect(&wasm, false, &host)?;
    println!(
        "input:  {}",
        DEMO_INPUT.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    println!(
        "output: {}",
        RunCommand {
            wasm: wasm.clone(),
            input,
            host: host.clone()
        }
        .predict()?
    );

    step(
        6,
        "two signed releases for the fleet: churn 1.0.0 (sequence 1) and 1.1.0 (sequence 2)",
    );
    let versions = build_versions(&dir, &secret, &[("1.0.0", 1), ("1.1.0", 2)])?;
    step(
        7,
        &format!(
            "wasmops coordinator (SQLite, local artifacts, embedded MQTT) + {devices} simulated devices; deploy 1.0.0, canary 1.1.0, then a drift moment"
        ),
    );
    let trust_key = host.trust.keys.trust[0].clone();
    let scenario = wasmops_fleet::demo::Scenario {
        dir: dir.clone(),
        devices,
        mqtt: None,
        v1: versions[0].clone(),
        v2: versions[1].clone(),
        trust_key,
        sample: DEMO_INPUT.to_string(),
        rate: 5.0,
        telemetry_interval_ms: 1000,
        bake_s: 3,
        traffic: Some(demo_traffic()),
        change:
            "the customers the devices see grow 7 years older (age moves by half its training std)"
                .into(),
    };
    // Interactive users get a coordinator to look around in; scripts get an exit.
    let keep_serving = !exit && std::io::IsTerminal::is_terminal(&std::io::stdin());
    wasmops_fleet::demo::run(&scenario, keep_serving, false, &ProgressBars)?;
    if keep {
        eprintln!(
            "done; the key pair, model and component are in {}",
            dir.display()
        );
    } else {
        eprintln!("done (pass --dir DIR to keep the key pair, model and component)");
    }
    Ok(())
}
