//! One run, step by step (the crate docs list the steps). Every step that
//! fails ends the run with a reason naming the step; nothing is registered
//! unless the gate passed.

use std::time::{Duration, Instant};

use sha2::Digest;
use wasmops_api::{LabelSummary, Run, RunDataset, Trainer, Validation};
use wasmops_trainer::{Algorithm, Frame, Settings, Target, external};

use crate::report::Reporter;
use crate::{Worker, gate, release};

pub struct Done {
    pub metrics: serde_json::Value,
    pub candidate: Option<String>,
    pub code: Option<String>,
    pub validation: Option<Validation>,
}

/// Why a run failed, with what it had measured by then (boxed: it travels
/// through every step's `Result`).
pub type Failed = Box<FailedRun>;

pub struct FailedRun {
    pub error: String,
    pub metrics: serde_json::Value,
    pub code: Option<String>,
    pub validation: Option<Validation>,
}

impl From<String> for Box<FailedRun> {
    fn from(error: String) -> Failed {
        Box::new(FailedRun {
            error,
            metrics: serde_json::json!({}),
            code: None,
            validation: None,
        })
    }
}

fn fail<T>(error: impl Into<String>) -> Result<T, Failed> {
    Err(Failed::from(error.into()))
}

/// A dataset version's bytes, checked against the sha256 the run recorded.
fn fetch(w: &Worker, d: &RunDataset) -> Result<Vec<u8>, Failed> {
    let bytes = w
        .client
        .dataset_data(&d.name, d.version)
        .map_err(|e| format!("cannot fetch dataset {}@{}: {e}", d.name, d.version))?;
    let got = hex::encode(sha2::Sha256::digest(&bytes));
    if got != d.sha256 {
        return fail(format!(
            "dataset {}@{} arrived with sha256 {got}, not the {} the run recorded",
            d.name, d.version, d.sha256
        ));
    }
    Ok(bytes)
}

/// A seed from the run id: the same run splits the same way on any worker.
fn seed(run: &str) -> u64 {
    let h = sha2::Sha256::digest(run.as_bytes());
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// `frame` as CSV: its features, then the label column.
fn to_csv(frame: &Frame, label: &str) -> String {
    let mut out = frame.features.join(",");
    out.push(',');
    out.push_str(label);
    out.push('\n');
    for i in 0..frame.rows() {
        for x in frame.row(i) {
            if !x.is_nan() {
                out.push_str(&x.to_string());
            }
            out.push(',');
        }
        match &frame.y {
            Target::Classes(y) => out.push_str(&y[i].to_string()),
            Target::Values(y) => out.push_str(&y[i].to_string()),
        }
        out.push('\n');
    }
    out
}

pub fn execute(w: &Worker, run: &Run, log: &Reporter) -> Result<Done, Failed> {
    let started = Instant::now();
    let Some(model) = run.model.clone() else {
        return fail("the run names no model");
    };
    let Some(trainer) = run.trainer.clone() else {
        return fail("the run names no trainer");
    };
    let Some(label) = run.params["label"].as_str().map(str::to_string) else {
        return fail("the run names no label column");
    };
    let share = run.params["holdout_share"].as_f64().unwrap_or(0.2);
    let limit = Duration::from_secs(run.params["time_limit_s"].as_u64().unwrap_or(600));
    let stop_if_taken = || -> Result<(), Failed> {
        if log.cancelled() {
            return fail("the run was taken from this worker (cancelled, or its lease ran out)");
        }
        Ok(())
    };

    // Data.
    let Some(train_ref) = run.datasets.iter().find(|d| d.role == "train") else {
        return fail("the run names no training dataset");
    };
    let train_bytes = fetch(w, train_ref)?;
    let about = w
        .client
        .dataset_version(&train_ref.name, &train_ref.version.to_string())
        .map_err(|e| format!("dataset {}@{}: {e}", train_ref.name, train_ref.version))?;
    let classify = match &trainer {
        Trainer::Builtin { algorithm, .. } => Algorithm::parse(algorithm)
            .map_err(|e| e.to_string())?
            .classifies(),
        Trainer::Command { .. } => matches!(about.labels, LabelSummary::Classes { .. }),
    };
    let all = Frame::parse(&train_bytes, &label, classify).map_err(|e| e.to_string())?;
    let (train, holdout) = match run.datasets.iter().find(|d| d.role == "holdout") {
        Some(h) => {
            let bytes = fetch(w, h)?;
            let holdout =
                Frame::parse(&bytes, &label, classify).map_err(|e| format!("holdout {e}"))?;
            if !all.same_columns(&holdout) {
                return fail(format!(
                    "the holdout's columns ({}) differ from the training data's ({})",
                    holdout.features.join(", "),
                    all.features.join(", ")
                ));
            }
            (all, holdout)
        }
        None => all.split(share, seed(&run.id)).map_err(|e| e.to_string())?,
    };
    log.line(format!(
        "data: {}@{} ({} rows with a label, {} without), {} features; training on {} rows, validating on {}",
        train_ref.name,
        train_ref.version,
        train.rows() + holdout.rows(),
        train.unlabelled,
        train.features.len(),
        train.rows(),
        holdout.rows()
    ));
    stop_if_taken()?;
    // Seconds per stage, kept in the run's metrics (`stages_s`): where a
    // loop's time goes (`wasmops fleet bench-loop` prints them).
    let mut stages = serde_json::Map::new();
    let mut stage = |name: &str, t0: Instant| {
        stages.insert(name.into(), t0.elapsed().as_secs_f64().into());
    };
    stage("data", started);

    // Training.
    let t0 = Instant::now();
    let (onnx, trainer_metrics, code) = match &trainer {
        Trainer::Builtin { algorithm, params } => {
            let algorithm = Algorithm::parse(algorithm).map_err(|e| e.to_string())?;
            let settings = Settings::from_json(params).map_err(|e| e.to_string())?;
            log.line(format!(
                "training: built-in {} {settings:?}",
                algorithm.name()
            ));
            let t = wasmops_trainer::train_builtin(algorithm, &settings, &train, &holdout)
                .map_err(|e| e.to_string())?;
            (t.onnx, Some(t.metrics), t.code)
        }
        Trainer::Command { .. } if !w.config.allow_commands => {
            return fail(
                "this worker runs no command trainers (start it with --allow-commands, or [worker] commands = true for the coordinator's): a command runs as the worker's user",
            );
        }
        Trainer::Command { command, workdir } => {
            let dir = tempfile::tempdir().map_err(|e| format!("scratch directory: {e}"))?;
            let (data, hold) = (dir.path().join("train.csv"), dir.path().join("holdout.csv"));
            std::fs::write(&data, to_csv(&train, &label))
                .and_then(|()| std::fs::write(&hold, to_csv(&holdout, &label)))
                .map_err(|e| format!("scratch files: {e}"))?;
            let (out, metrics) = (
                dir.path().join("model.onnx"),
                dir.path().join("metrics.json"),
            );
            let paths = external::Paths {
                data: &data,
                holdout: &hold,
                out: &out,
                metrics: &metrics,
                label: &label,
            };
            let cwd = workdir
                .as_ref()
                .map(|d| w.config.workdir.join(d))
                .unwrap_or_else(|| w.config.workdir.clone());
            log.line(format!("training: `{command}` in {}", cwd.display()));
            let o = external::run(command, &cwd, &paths, limit, &mut |l| log.line(l))
                .map_err(|e| e.to_string())?;
            (o.onnx, o.metrics, o.code)
        }
    };
    stage("train", t0);
    log.line(format!(
        "trained in {:.1} s: {} bytes of ONNX; trainer's metrics {}",
        t0.elapsed().as_secs_f64(),
        onnx.len(),
        trainer_metrics
            .as_ref()
            .map_or("none".into(), |m| m.to_string())
    ));
    let with_code = |mut f: Failed| {
        f.code = Some(code.clone());
        f
    };
    stop_if_taken().map_err(with_code)?;

    // Build the candidate.
    let champion = release::champion(&w.client, &model).map_err(with_code)?;
    let (version, sequence) = release::next_version(&w.client, &model).map_err(with_code)?;
    let classes: Vec<i64> = match &train.y {
        Target::Classes(y) => {
            let set: std::collections::BTreeSet<i64> = y.iter().copied().collect();
            set.into_iter().collect()
        }
        Target::Values(_) => vec![],
    };
    let t0 = Instant::now();
    let built = release::build(
        w,
        release::Candidate {
            model: &model,
            version: &version,
            sequence,
            onnx: &onnx,
            train: &train,
            label: &label,
            dataset: train_ref,
            run: &run.id,
            code: &code,
            metrics: trainer_metrics.as_ref(),
        },
    )
    .map_err(|e| with_code(Failed::from(e)))?;
    stage("build", t0);
    log.line(format!(
        "built {model} {version} (sequence {sequence}): {:.2} MB in {:.1} s",
        built.len() as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    ));
    stop_if_taken().map_err(with_code)?;

    // The gate.
    let t0 = Instant::now();
    let verdict = gate::validate(
        &gate::Inputs {
            settings: &run.gate,
            candidate: &built,
            onnx: &onnx,
            champion: champion.as_ref(),
            holdout: &holdout,
            classes: &classes,
            cache_dir: w.config.cache_dir.clone(),
        },
        &mut |l| log.line(l),
    )
    .map_err(|e| with_code(Failed::from(e)))?;
    stage("validate", t0);
    log.line(format!(
        "validation {} in {:.1} s",
        if verdict.validation.passed {
            "passed"
        } else {
            "failed"
        },
        t0.elapsed().as_secs_f64()
    ));
    let mut metrics = serde_json::json!({
        "candidate": verdict.candidate_metrics,
        "champion": verdict.champion_metrics,
        "trainer": trainer_metrics,
        "holdout_rows": holdout.rows(),
        "training_rows": train.rows(),
        "stages_s": stages,
    });
    if !verdict.validation.passed {
        let why: Vec<String> = verdict
            .validation
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("{}: {}", c.name, c.detail))
            .collect();
        return Err(Box::new(FailedRun {
            error: format!("validation failed: {}", why.join("; ")),
            metrics,
            code: Some(code),
            validation: Some(verdict.validation),
        }));
    }
    stop_if_taken().map_err(with_code)?;

    // Release.
    let Some(key) = &w.key else {
        return Err(Box::new(FailedRun {
            error: "the candidate passed validation, but this worker holds no release key: nothing registered (start it with --key and --delegation)".into(),
            metrics,
            code: Some(code),
            validation: Some(verdict.validation),
        }));
    };
    let t0 = Instant::now();
    let signed = release::sign(&built, key, w.delegation.as_deref()).map_err(|e| {
        Box::new(FailedRun {
            error: e,
            metrics: metrics.clone(),
            code: Some(code.clone()),
            validation: Some(verdict.validation.clone()),
        })
    })?;
    let registered = w.client.register(signed).map_err(|e| {
        Box::new(FailedRun {
            error: format!("registering {model} {version}: {e}"),
            metrics: metrics.clone(),
            code: Some(code.clone()),
            validation: Some(verdict.validation.clone()),
        })
    })?;
    metrics["stages_s"]["sign_register"] = t0.elapsed().as_secs_f64().into();
    log.line(format!(
        "registered {model} {} (sha256 {}); the run took {:.1} s",
        registered.version.version,
        registered.version.sha256,
        started.elapsed().as_secs_f64()
    ));
    Ok(Done {
        metrics,
        candidate: Some(registered.version.version),
        code: Some(code),
        validation: Some(verdict.validation),
    })
}
