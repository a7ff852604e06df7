//! The validation gate, run before anything reaches a device: the candidate
//! component and the champion's, each in the wasmtime host devices use, on
//! the same holdout rows.
//!
//! Checks (each recorded with its numbers, a failed one names them):
//! - `metric`: the candidate reaches the champion's value minus the margin
//!   (or beats it by the margin with `must_beat`);
//! - `latency`: p95 of a one-row prediction in the host within the budget;
//! - `size`: the component within the size budget;
//! - `schema`: the candidate takes the champion's inputs (names, element
//!   types, feature count): the devices' applications can call it;
//! - `packaging`: the component answers what its own ONNX file answers run
//!   natively in tract (a build or packaging bug shows here).

use std::time::Instant;

use wasmops_api::{Check, Gate, Validation, Version};
use wasmops_runtime::bindings::{Dim, ElementType, ModelInfo, Tensor, TensorData};
use wasmops_runtime::{Host, HostConfig, LoadedModel, SignaturePolicy};
use wasmops_trainer::native::{self, Answers};
use wasmops_trainer::{Frame, Target};

/// Rows per call when scoring.
const BATCH: usize = 64;
/// One-row calls timed for the latency check.
const LATENCY_SAMPLES: usize = 100;
/// Without a champion, the latency budget (ms) and size budget (bytes).
const DEFAULT_LATENCY_MS: f64 = 1000.0;
const MAX_SIZE_BYTES: f64 = 256e6;

pub struct Inputs<'a> {
    pub settings: &'a Gate,
    pub candidate: &'a [u8],
    pub onnx: &'a [u8],
    pub champion: Option<&'a (Version, Vec<u8>)>,
    pub holdout: &'a Frame,
    /// A classifier's class codes, sorted (its probability columns' order).
    pub classes: &'a [i64],
    pub cache_dir: Option<std::path::PathBuf>,
}

pub struct Verdict {
    pub validation: Validation,
    pub candidate_metrics: serde_json::Value,
    pub champion_metrics: Option<serde_json::Value>,
}

/// A model in the host, with its metadata.
struct Loaded {
    model: LoadedModel,
    info: ModelInfo,
}

fn load(host: &Host, wasm: &[u8], what: &str) -> Result<Loaded, String> {
    let model = host
        .load(wasm)
        .map_err(|e| format!("the {what} component does not load: {e}"))?;
    let info = model
        .instantiate()
        .and_then(|mut i| i.metadata())
        .map_err(|e| format!("the {what} component does not answer its metadata: {e}"))?;
    Ok(Loaded { model, info })
}

/// Rows `range` of `frame` as the model's first input.
fn input(info: &ModelInfo, frame: &Frame, range: std::ops::Range<usize>) -> Vec<Tensor> {
    let f = frame.features.len();
    let mut data = Vec::with_capacity(range.len() * f);
    for i in range.clone() {
        data.extend(frame.row(i).iter().map(|x| *x as f32));
    }
    vec![Tensor {
        name: info.inputs.first().map_or("X".into(), |s| s.name.clone()),
        shape: vec![range.len() as u32, f as u32],
        data: TensorData::Float32(data),
    }]
}

/// Per row: the int64 output (a class code) and the first float output.
fn answers(outputs: &[Tensor], rows: usize) -> Result<Answers, String> {
    let labels = outputs.iter().find_map(|t| match &t.data {
        TensorData::Int64(v) if v.len() == rows => Some(v.clone()),
        _ => None,
    });
    let Some((floats, width)) = outputs.iter().find_map(|t| match &t.data {
        TensorData::Float32(v) if rows > 0 && v.len() % rows == 0 => Some((v, v.len() / rows)),
        _ => None,
    }) else {
        return Err("no float output with one row per input row".into());
    };
    Ok((0..rows)
        .map(|i| {
            (
                labels.as_ref().map(|l| l[i]),
                floats[i * width..(i + 1) * width].to_vec(),
            )
        })
        .collect())
}

/// Every holdout row through `m`, in batches.
fn predict_all(m: &Loaded, frame: &Frame, what: &str) -> Result<Answers, String> {
    let mut instance = m
        .model
        .instantiate()
        .map_err(|e| format!("the {what}: {e}"))?;
    let mut all = Vec::with_capacity(frame.rows());
    for start in (0..frame.rows()).step_by(BATCH) {
        let end = (start + BATCH).min(frame.rows());
        let out = instance
            .predict(&input(&m.info, frame, start..end))
            .map_err(|e| format!("the {what} failed on holdout rows {start}..{end}: {e}"))?;
        all.extend(answers(&out, end - start).map_err(|e| format!("the {what}: {e}"))?);
    }
    Ok(all)
}

/// p95 of one-row predictions, in ms.
fn latency_p95(m: &Loaded, frame: &Frame) -> Result<f64, String> {
    let mut instance = m.model.instantiate().map_err(|e| e.to_string())?;
    let mut times = vec![];
    for i in 0..LATENCY_SAMPLES.min(frame.rows()) {
        let x = input(&m.info, frame, i..i + 1);
        let t = Instant::now();
        instance.predict(&x).map_err(|e| e.to_string())?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times
        .get(((times.len() as f64 * 0.95).ceil() as usize).saturating_sub(1))
        .copied()
        .unwrap_or(0.0))
}

/// The ONNX file's answers run natively (with wasmops' extra ONNX-ML ops).
fn native_answers(onnx: &[u8], info: &ModelInfo, frame: &Frame) -> Result<Answers, String> {
    let name = info.inputs.first().map_or("X".into(), |s| s.name.clone());
    let shape = wasmops_compiler::InputShape {
        name,
        dims: vec![Some(frame.rows()), Some(frame.features.len())],
    };
    let model = wasmops_compiler::load_model(onnx, &[shape]).map_err(|e| e.to_string())?;
    native::run_model(model, frame).map_err(|e| e.to_string())
}

fn higher_is_better(metric: &str) -> bool {
    matches!(metric, "accuracy" | "auc")
}

fn shape_text(info: &ModelInfo) -> String {
    info.inputs
        .iter()
        .map(|s| {
            let dims = wasmops_runtime::tensors_json::dims(&s.shape);
            format!("{} {:?} [{}]", s.name, s.element_type, dims.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `candidate` takes what `champion` takes.
fn same_inputs(candidate: &ModelInfo, champion: &ModelInfo) -> bool {
    candidate.inputs.len() == champion.inputs.len()
        && candidate.inputs.iter().zip(&champion.inputs).all(|(a, b)| {
            a.name == b.name
                && a.element_type == b.element_type
                && a.shape.len() == b.shape.len()
                && a.shape.iter().zip(&b.shape).all(|(x, y)| match (x, y) {
                    (Dim::Fixed(x), Dim::Fixed(y)) => x == y,
                    _ => true,
                })
        })
}

pub fn validate(inp: &Inputs, log: &mut dyn FnMut(String)) -> Result<Verdict, String> {
    let g = inp.settings;
    let host = Host::new(HostConfig {
        cache_dir: inp.cache_dir.clone(),
        // Evaluation only, never served: the candidate is not signed yet,
        // the champion came from the registry by its sha256.
        ..HostConfig::new(SignaturePolicy::OwnBuild)
    })
    .map_err(|e| format!("cannot start a host: {e}"))?;
    let candidate = load(&host, inp.candidate, "candidate")?;
    if candidate.info.inputs.first().map(|s| s.element_type) != Some(ElementType::Float32) {
        return Err(format!(
            "the candidate takes {}, not one float [rows, features] input",
            shape_text(&candidate.info)
        ));
    }
    let champion = match inp.champion {
        Some((v, wasm)) => Some((v, load(&host, wasm, "champion")?)),
        None => None,
    };
    let mut checks = vec![];

    // Schema.
    if let Some((v, champ)) = &champion {
        let same = same_inputs(&candidate.info, &champ.info);
        checks.push(Check {
            name: "schema".into(),
            passed: same,
            detail: if same {
                format!(
                    "takes the inputs {} {} takes: {}",
                    v.name,
                    v.version,
                    shape_text(&champ.info)
                )
            } else {
                format!(
                    "takes {}, but {} {} (what devices' applications call) takes {}",
                    shape_text(&candidate.info),
                    v.name,
                    v.version,
                    shape_text(&champ.info)
                )
            },
            candidate: None,
            champion: None,
            limit: None,
        });
    }

    // A candidate devices cannot call is not run at all.
    if checks.iter().any(|c: &Check| !c.passed) {
        for c in &checks {
            log(format!("gate {}: FAILED — {}", c.name, c.detail));
        }
        return Ok(Verdict {
            validation: Validation {
                passed: false,
                champion: champion
                    .as_ref()
                    .map(|(v, _)| format!("{}@{}", v.name, v.version)),
                checks,
            },
            candidate_metrics: serde_json::json!({}),
            champion_metrics: None,
        });
    }

    // Packaging: the component against its own ONNX file.
    let ours = predict_all(&candidate, inp.holdout, "candidate")?;
    match native_answers(inp.onnx, &candidate.info, inp.holdout) {
        Ok(theirs) => {
            let agreed = native::agree(&theirs, &ours, g.max_difference as f32);
            checks.push(Check {
                name: "packaging".into(),
                passed: agreed.is_ok(),
                detail: match &agreed {
                    Ok(()) => format!(
                        "the component answers what its ONNX file answers natively on {} rows (within {})",
                        ours.len(),
                        g.max_difference
                    ),
                    Err(e) => format!("the component and its ONNX file disagree: {e}"),
                },
                candidate: None,
                champion: None,
                limit: Some(g.max_difference),
            });
        }
        Err(e) => checks.push(Check {
            name: "packaging".into(),
            passed: false,
            detail: format!("the ONNX file does not run natively: {e}"),
            candidate: None,
            champion: None,
            limit: None,
        }),
    }

    // Metric.
    let candidate_metrics = wasmops_trainer::metrics::score(&ours, &inp.holdout.y, inp.classes)
        .map_err(|e| format!("scoring the candidate: {e}"))?;
    let metric = g.metric.clone().unwrap_or_else(|| {
        match inp.holdout.y {
            Target::Classes(_) => "accuracy",
            Target::Values(_) => "rmse",
        }
        .to_string()
    });
    let value = candidate_metrics[&metric].as_f64();
    let mut champion_metrics = None;
    let comparable = champion
        .as_ref()
        .filter(|_| checks.iter().all(|c| c.name != "schema" || c.passed));
    let metric_check = match (value, comparable) {
        (None, _) => Check {
            name: "metric".into(),
            passed: false,
            detail: format!("the candidate has no {metric} on the holdout rows"),
            candidate: None,
            champion: None,
            limit: None,
        },
        (Some(c), None) => Check {
            name: "metric".into(),
            passed: true,
            detail: format!("{metric} {c:.4}; no comparable champion"),
            candidate: Some(c),
            champion: None,
            limit: None,
        },
        (Some(c), Some((v, champ))) => {
            let theirs = predict_all(champ, inp.holdout, "champion")?;
            let m = wasmops_trainer::metrics::score(&theirs, &inp.holdout.y, inp.classes)
                .map_err(|e| format!("scoring the champion: {e}"))?;
            let h = m[&metric].as_f64();
            champion_metrics = Some(m);
            match h {
                None => Check {
                    name: "metric".into(),
                    passed: true,
                    detail: format!("{metric} {c:.4}; the champion has none on these rows"),
                    candidate: Some(c),
                    champion: None,
                    limit: None,
                },
                Some(h) => {
                    let up = higher_is_better(&metric);
                    let (limit, passed) = match (g.must_beat, up) {
                        (false, true) => (h - g.margin, c >= h - g.margin),
                        (false, false) => (h + g.margin, c <= h + g.margin),
                        (true, true) => (h + g.margin, c > h + g.margin),
                        (true, false) => (h - g.margin, c < h - g.margin),
                    };
                    let relation = match (passed, up) {
                        (true, true) => "≥",
                        (true, false) => "≤",
                        (false, true) => "<",
                        (false, false) => ">",
                    };
                    Check {
                        name: "metric".into(),
                        passed,
                        detail: format!(
                            "{metric} {c:.4} {relation} {limit:.4} (champion {} {}: {h:.4}, margin {}{})",
                            v.name,
                            v.version,
                            g.margin,
                            if g.must_beat { ", must beat" } else { "" }
                        ),
                        candidate: Some(c),
                        champion: Some(h),
                        limit: Some(limit),
                    }
                }
            }
        }
    };
    checks.push(metric_check);

    // Latency.
    let p95 = latency_p95(&candidate, inp.holdout)?;
    let champion_p95 = match &champion {
        Some((_, champ)) => Some(latency_p95(champ, inp.holdout)?),
        None => None,
    };
    let budget = g
        .max_latency_p95_ms
        .or(champion_p95.map(|c| 2.0 * c + 5.0))
        .unwrap_or(DEFAULT_LATENCY_MS);
    checks.push(Check {
        name: "latency".into(),
        passed: p95 <= budget,
        detail: format!(
            "p95 of one row in the host {p95:.3} ms {} {budget:.3} ms{}",
            if p95 <= budget { "≤" } else { ">" },
            champion_p95.map_or(String::new(), |c| format!(" (champion {c:.3} ms)"))
        ),
        candidate: Some(p95),
        champion: champion_p95,
        limit: Some(budget),
    });

    // Size.
    let size = inp.candidate.len() as f64;
    let champion_size = inp.champion.map(|(_, w)| w.len() as f64);
    let limit = g
        .max_size_mb
        .map(|m| m * 1e6)
        .or(champion_size.map(|c| (2.0 * c).min(MAX_SIZE_BYTES)))
        .unwrap_or(MAX_SIZE_BYTES);
    checks.push(Check {
        name: "size".into(),
        passed: size <= limit,
        detail: format!(
            "{:.2} MB {} {:.2} MB",
            size / 1e6,
            if size <= limit { "≤" } else { ">" },
            limit / 1e6
        ),
        candidate: Some(size),
        champion: champion_size,
        limit: Some(limit),
    });

    for c in &checks {
        log(format!(
            "gate {}: {} — {}",
            c.name,
            if c.passed { "passed" } else { "FAILED" },
            c.detail
        ));
    }
    Ok(Verdict {
        validation: Validation {
            passed: checks.iter().all(|c| c.passed),
            champion: champion
                .as_ref()
                .map(|(v, _)| format!("{}@{}", v.name, v.version)),
            checks,
        },
        candidate_metrics,
        champion_metrics,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_runtime::bindings::TensorSpec;

    fn info(inputs: &[(&str, ElementType, Vec<Dim>)]) -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            version: "1.0.0".into(),
            inputs: inputs
                .iter()
                .map(|(name, element_type, shape)| TensorSpec {
                    name: name.to_string(),
                    element_type: *element_type,
                    shape: shape.clone(),
                })
                .collect(),
            outputs: vec![],
            preprocessing: vec![],
        }
    }

    #[test]
    fn schema_compatibility() {
        let n = || Dim::Symbol("N".into());
        let champion = info(&[("X", ElementType::Float32, vec![n(), Dim::Fixed(4)])]);
        let same = info(&[(
            "X",
            ElementType::Float32,
            vec![Dim::Fixed(1), Dim::Fixed(4)],
        )]);
        assert!(
            same_inputs(&same, &champion),
            "a fixed batch still takes the rows"
        );
        for other in [
            info(&[("X", ElementType::Float32, vec![n(), Dim::Fixed(5)])]),
            info(&[("input", ElementType::Float32, vec![n(), Dim::Fixed(4)])]),
            info(&[("X", ElementType::Int64, vec![n(), Dim::Fixed(4)])]),
            info(&[("X", ElementType::Float32, vec![n()])]),
            info(&[
                ("X", ElementType::Float32, vec![n(), Dim::Fixed(4)]),
                ("Y", ElementType::Float32, vec![n()]),
            ]),
        ] {
            assert!(!same_inputs(&other, &champion), "{}", shape_text(&other));
        }
        assert!(higher_is_better("auc") && !higher_is_better("rmse"));
        let a = answers(
            &[
                Tensor {
                    name: "label".into(),
                    shape: vec![2],
                    data: TensorData::Int64(vec![1, 0]),
                },
                Tensor {
                    name: "probabilities".into(),
                    shape: vec![2, 2],
                    data: TensorData::Float32(vec![0.2, 0.8, 0.9, 0.1]),
                },
            ],
            2,
        )
        .unwrap();
        assert_eq!(
            a,
            vec![(Some(1), vec![0.2, 0.8]), (Some(0), vec![0.9, 0.1])]
        );
    }
}
