//! Counting: what a device measures about the predictions it makes.
//!
//! Data path: every prediction (inputs, outputs or the failure, latency,
//! its row ids) becomes an [`Observation`] over plain tensor views
//! ([`TensorRef`]); [`Window::record`] folds it into per-version
//! [`VersionStats`] (count, errors, latency histogram, input feature
//! summaries binned by the signed reference profile via [`Counting`],
//! output bins and class counts, prediction records for later labels, a
//! reservoir sample of rows). [`Window::take`] closes the window; the caller
//! numbers it into a `Report` (`wasmops_protocol::telemetry`).
//!
//! Two callers, one implementation: the device agent (native) and the
//! browser bundle, where this crate is compiled into the page's wasm module
//! (`host/web/verifier`). Nothing here reads a clock or randomness: times
//! and ids come in with each observation.

use std::collections::BTreeMap;

pub use wasmops_predict_json::{TensorRef, Values};
use wasmops_profile::{ColumnProfile, Profile, code_key, output_column};
use wasmops_protocol::telemetry::{
    MAX_CLASSES, MAX_COLUMNS, MAX_RECORD_CLASSES, MAX_RECORDS, MAX_SAMPLE_ROWS, MAX_SAMPLE_VALUES,
    PredictionRecord, Summary, VersionStats,
};

/// What one prediction was, for [`Window::record`].
pub struct Observation<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub shadow: bool,
    pub latency_ms: f64,
    pub inputs: &'a [TensorRef<'a>],
    /// `None` when the prediction failed.
    pub outputs: Option<&'a [TensorRef<'a>]>,
    /// Shadow only: whether the outputs matched the live model's.
    pub agreed: bool,
    /// How this version's columns are counted (its reference profile).
    pub counting: &'a Counting,
    /// Live only: the prediction ids handed to the application, one per row.
    pub ids: &'a [String],
    /// Raw input rows to keep in the window's sample (0: none, the default).
    pub sample_rows: usize,
    /// When the prediction was made (ms since the epoch), for its records.
    pub at_ms: i64,
}

/// Everything measured since the last report.
#[derive(Debug, Default)]
pub struct Window {
    pub started_ms: i64,
    stats: BTreeMap<(String, String, bool), VersionStats>,
    /// State of the reservoir sampler's generator (xorshift64).
    rng: u64,
}

impl Window {
    pub fn new(started_ms: i64) -> Window {
        Window {
            started_ms,
            ..Default::default()
        }
    }

    pub fn record(&mut self, o: Observation<'_>) {
        let key = (o.model.to_string(), o.version.to_string(), o.shadow);
        let s = self.stats.entry(key).or_insert_with(|| VersionStats {
            model: o.model.into(),
            version: o.version.into(),
            role: if o.shadow { "shadow" } else { "live" }.into(),
            ..Default::default()
        });
        s.predictions += 1;
        s.latency.record(o.latency_ms);
        if !o.shadow {
            record_inputs(s, o.inputs, o.counting);
            if o.sample_rows > 0 {
                if self.rng == 0 {
                    self.rng = (self.started_ms as u64 | 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                }
                sample_rows(s, o.inputs, o.ids, o.counting, o.sample_rows, &mut self.rng);
            }
        }
        if let Some(out) = o.outputs
            && !o.ids.is_empty()
        {
            record_predictions(s, o.ids, out, o.at_ms);
        }
        match o.outputs {
            Some(out) => record_outputs(s, out, o.counting),
            None => s.errors += 1,
        }
        if o.agreed {
            s.agreed += 1;
        }
    }

    /// Live predictions recorded since the window opened (what a crash now
    /// would lose: the window is in memory until it becomes a report).
    pub fn live_predictions(&self) -> u64 {
        self.stats
            .values()
            .filter(|s| s.role == "live")
            .map(|s| s.predictions)
            .sum()
    }

    /// Closes the window: its stats, and a fresh window starting at `now_ms`.
    pub fn take(&mut self, now_ms: i64) -> (i64, Vec<VersionStats>) {
        let started = std::mem::replace(&mut self.started_ms, now_ms);
        (
            started,
            std::mem::take(&mut self.stats).into_values().collect(),
        )
    }
}

/// How a model version's columns are counted: named and binned by its
/// signed reference profile (`wasmops_profile`), or plainly (`X[0]`, …)
/// without one. Built once per installed version.
#[derive(Debug, Default)]
pub struct Counting {
    /// The profiled input, and its feature columns in order.
    input: Option<String>,
    inputs: Vec<Column>,
    /// Output columns by name (`probabilities[1]`, `label`).
    outputs: BTreeMap<String, Column>,
}

#[derive(Debug)]
struct Column {
    name: String,
    how: How,
}

#[derive(Debug)]
enum How {
    Bins {
        edges: Vec<f64>,
        min: Option<f64>,
        max: Option<f64>,
    },
    Categories(std::collections::HashSet<String>),
}

impl Column {
    fn of(p: &ColumnProfile) -> Column {
        let how = if p.is_categorical() {
            How::Categories(p.domain.keys().cloned().collect())
        } else {
            How::Bins {
                edges: p.edges.clone(),
                min: p.min,
                max: p.max,
            }
        };
        Column {
            name: p.name.clone(),
            how,
        }
    }

    fn add(&self, s: &mut Summary, x: f64) {
        if !s.add(x) {
            return;
        }
        match &self.how {
            How::Bins { edges, min, max } => {
                let (below, above) = wasmops_profile::beyond(*min, *max, x);
                s.add_bin(
                    wasmops_profile::bin_of(edges, x),
                    edges.len() + 1,
                    below,
                    above,
                )
            }
            How::Categories(known) => {
                let key = code_key(x);
                let is_known = known.contains(&key);
                s.add_category(key, is_known);
            }
        }
    }
}

impl Counting {
    pub fn of(profile: Option<&Profile>) -> Counting {
        let Some(p) = profile else {
            return Counting::default();
        };
        Counting {
            input: p.input.clone(),
            inputs: p.columns.iter().map(Column::of).collect(),
            outputs: p
                .outputs
                .iter()
                .map(|c| (c.name.clone(), Column::of(c)))
                .collect(),
        }
    }
}

fn record_inputs(s: &mut VersionStats, inputs: &[TensorRef<'_>], counting: &Counting) {
    for t in inputs {
        let Values::Float32(v) = &t.data else {
            continue;
        };
        if t.shape.len() == 2 && t.shape[1] > 0 && t.shape[1] as usize <= MAX_COLUMNS {
            let width = t.shape[1] as usize;
            let profiled =
                counting.input.as_deref() == Some(t.name) && counting.inputs.len() == width;
            for (i, x) in v.iter().enumerate() {
                let j = i % width;
                let x = *x as f64;
                if profiled {
                    let c = &counting.inputs[j];
                    c.add(s.features.entry(c.name.clone()).or_default(), x);
                } else {
                    let name = format!("{}[{j}]", t.name);
                    s.features.entry(name).or_default().add(x);
                }
            }
        } else {
            let s = s.features.entry(t.name.to_string()).or_default();
            v.iter().for_each(|x| {
                s.add(*x as f64);
            });
        }
    }
}

/// Keeps a uniform sample of the profiled input's rows (Algorithm R: the
/// n-th row offered replaces a random kept one with probability k/n), at
/// most `wanted`, [`MAX_SAMPLE_ROWS`] and [`MAX_SAMPLE_VALUES`] values; each
/// kept row keeps its prediction id (`ids`, one per row; none when the
/// prediction failed) in `sample_ids`.
fn sample_rows(
    s: &mut VersionStats,
    inputs: &[TensorRef<'_>],
    ids: &[String],
    counting: &Counting,
    wanted: usize,
    rng: &mut u64,
) {
    let input = inputs.iter().find(|t| match &counting.input {
        Some(name) => t.name == name,
        None => t.shape.len() == 2,
    });
    let Some(t) = input else { return };
    let Values::Float32(v) = &t.data else {
        return;
    };
    if t.shape.len() != 2 || t.shape[1] == 0 || t.shape[1] as usize > MAX_COLUMNS {
        return;
    }
    let width = t.shape[1] as usize;
    let k = wanted.min(MAX_SAMPLE_ROWS).min(MAX_SAMPLE_VALUES / width);
    for (i, row) in v.chunks_exact(width).enumerate() {
        s.sample_seen += 1;
        let kept: Vec<Option<f64>> = row
            .iter()
            .map(|x| Some(*x as f64).filter(|x| x.is_finite()))
            .collect();
        let id = ids.get(i).cloned().unwrap_or_default();
        if s.sample.len() < k {
            s.sample.push(kept);
            s.sample_ids.push(id);
        } else {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            let j = (*rng % s.sample_seen) as usize;
            if j < k {
                s.sample[j] = kept;
                s.sample_ids[j] = id;
            }
        }
    }
}

/// Float outputs per column (`name[j]` for `[rows, k]`, as the profile names
/// them), binned by the profile when it has the column; integer and text
/// outputs as class counts.
fn record_outputs(s: &mut VersionStats, outputs: &[TensorRef<'_>], counting: &Counting) {
    for t in outputs {
        match &t.data {
            Values::Float32(v) => {
                let rows = t.shape.first().copied().unwrap_or(1).max(1) as usize;
                let width = if v.len().is_multiple_of(rows) {
                    v.len() / rows
                } else {
                    0
                };
                if width == 0 || width > MAX_CLASSES {
                    let s = s.outputs.entry(t.name.to_string()).or_default();
                    v.iter().for_each(|x| {
                        s.add(*x as f64);
                    });
                    continue;
                }
                for (i, x) in v.iter().enumerate() {
                    let name = output_column(t.name, i % width, width);
                    let x = *x as f64;
                    match counting.outputs.get(&name) {
                        Some(c) => c.add(s.outputs.entry(name).or_default(), x),
                        None => {
                            s.outputs.entry(name).or_default().add(x);
                        }
                    }
                }
            }
            Values::Int64(v) => count_classes(s, t.name, v.iter().map(|x| x.to_string())),
            Values::Text(v) => count_classes(s, t.name, v.iter().cloned()),
        }
    }
}

/// Rows of a prediction: the first output's first axis (1 for a scalar).
pub fn rows_of(outputs: &[TensorRef<'_>]) -> usize {
    outputs
        .first()
        .and_then(|t| t.shape.first())
        .map_or(1, |r| *r as usize)
}

/// A record per row (up to [`MAX_RECORDS`] a window): the predicted class
/// (the first integer or text output), the class probabilities (the first
/// `[rows, 2..=16]` float output) and their top one for the confidence
/// estimate, or the predicted value (a `[rows]`/`[rows, 1]` float output).
fn record_predictions(s: &mut VersionStats, ids: &[String], outputs: &[TensorRef<'_>], at_ms: i64) {
    let rows = ids.len();
    let per_row = |t: &TensorRef<'_>| -> usize {
        let len = t.data.len();
        if rows > 0 && len.is_multiple_of(rows) && t.shape.first() == Some(&(rows as u32)) {
            len / rows
        } else {
            0
        }
    };
    let class = outputs
        .iter()
        .find(|t| per_row(t) == 1 && matches!(t.data, Values::Int64(_) | Values::Text(_)));
    let probabilities = outputs.iter().find(|t| {
        matches!(t.data, Values::Float32(_)) && (2..=MAX_RECORD_CLASSES).contains(&per_row(t))
    });
    let value = outputs
        .iter()
        .find(|t| matches!(t.data, Values::Float32(_)) && per_row(t) == 1)
        .filter(|_| class.is_none());
    for (r, id) in ids.iter().enumerate() {
        let probs: Vec<f64> = match probabilities.map(|t| (&t.data, per_row(t))) {
            Some((Values::Float32(v), k)) => v[r * k..(r + 1) * k]
                .iter()
                .map(|p| (*p as f64).clamp(0.0, 1.0))
                .collect(),
            _ => vec![],
        };
        if let Some(top) = probs.iter().copied().reduce(f64::max) {
            s.confidence_sum += top;
            s.confidence_rows += 1;
        }
        if s.records.len() >= MAX_RECORDS {
            s.unrecorded += 1;
            continue;
        }
        s.records.push(PredictionRecord {
            id: id.clone(),
            at_ms,
            class: class.and_then(|t| match &t.data {
                Values::Int64(v) => v.get(r).map(|x| x.to_string()),
                Values::Text(v) => v.get(r).cloned(),
                Values::Float32(_) => None,
            }),
            probabilities: probs,
            value: value.and_then(|t| match &t.data {
                Values::Float32(v) => v.get(r).map(|x| *x as f64).filter(|x| x.is_finite()),
                _ => None,
            }),
        });
    }
}

fn count_classes(s: &mut VersionStats, output: &str, values: impl Iterator<Item = String>) {
    let counts = s.classes.entry(output.to_string()).or_default();
    for v in values {
        let key = if counts.contains_key(&v) || counts.len() < MAX_CLASSES {
            v
        } else {
            "other".to_string()
        };
        *counts.entry(key).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_profile::ColumnKind;

    fn numeric(name: &str, edges: Vec<f64>, min: f64, max: f64) -> ColumnProfile {
        ColumnProfile {
            name: name.into(),
            kind: ColumnKind::Numeric,
            rows: 10,
            missing: 0,
            min: Some(min),
            max: Some(max),
            mean: None,
            std: None,
            quantiles: vec![],
            integer: false,
            counts: vec![0; edges.len() + 1],
            edges,
            domain: Default::default(),
            distinct: 10,
            top_share: 0.1,
            singletons: 0,
        }
    }

    /// Rows of the profiled input land in the profile's bins by its own
    /// edges, under its column names; values past its range are counted as
    /// such; a failure counts as an error with no outputs.
    #[test]
    fn profiled_columns_are_binned_and_failures_counted() {
        let profile = Profile {
            rows: 10,
            input: Some("X".into()),
            columns: vec![
                numeric("a", vec![1.0, 2.0], 0.0, 3.0),
                numeric("b", vec![10.0], 5.0, 15.0),
            ],
            ..Default::default()
        };
        let counting = Counting::of(Some(&profile));
        let x = [0.5f32, 7.0, 1.5, 12.0, 2.5, 99.0];
        let shape = [3u32, 2];
        let inputs = [TensorRef {
            name: "X",
            shape: &shape,
            data: Values::Float32(&x),
        }];
        let label = ["yes".to_string(), "no".into(), "yes".into()];
        let outputs = [TensorRef {
            name: "label",
            shape: &shape[..1],
            data: Values::Text(&label),
        }];
        let ids: Vec<String> = (0..3).map(|i| format!("p{i}")).collect();
        let mut w = Window::new(0);
        let observe = |w: &mut Window, outputs: Option<&[TensorRef<'_>]>, ids: &[String]| {
            w.record(Observation {
                model: "m",
                version: "1",
                shadow: false,
                latency_ms: 1.0,
                inputs: &inputs,
                outputs,
                agreed: false,
                counting: &counting,
                ids,
                sample_rows: 0,
                at_ms: 42,
            })
        };
        observe(&mut w, Some(&outputs), &ids);
        observe(&mut w, None, &[]);
        assert_eq!(w.live_predictions(), 2);
        let (started, stats) = w.take(100);
        assert_eq!((started, w.started_ms), (0, 100));
        let s = &stats[0];
        assert_eq!((s.predictions, s.errors), (2, 1));
        // Each observation counted its three rows.
        assert_eq!(s.features["a"].bins, vec![2, 2, 2]);
        assert_eq!(s.features["b"].bins, vec![2, 4]);
        assert_eq!(s.features["b"].above, 2);
        assert_eq!(s.classes["label"]["yes"], 2);
        assert_eq!(s.records.len(), 3);
        assert_eq!((s.records[1].id.as_str(), s.records[1].at_ms), ("p1", 42));
        assert_eq!(s.records[1].class.as_deref(), Some("no"));
        assert_eq!(rows_of(&outputs), 3);
    }
}
