//! Telemetry: what a device measures about the models it runs, and how a
//! report reaches the coordinator exactly once.
//!
//! The agent folds every prediction into a [`Window`] (per model version:
//! count, errors, latency histogram, input feature summaries, prediction
//! distribution, and for a shadow candidate its agreement with the live
//! model). Every interval the window becomes a numbered [`Report`] written to
//! an on-disk [`Outbox`] first, then published with QoS 1. A report leaves
//! the outbox only when the coordinator acknowledges its sequence number on
//! the device's ack topic — a broker restart or a lost session cannot lose
//! it, and the coordinator drops duplicates by (device, seq). The outbox is
//! bounded: when full the oldest report is dropped and counted, and the
//! count travels in the next report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use wasmops_profile::{ColumnProfile, Profile, code_key, output_column};
use wasmops_protocol::telemetry::{
    MAX_CLASSES, MAX_COLUMNS, MAX_RECORD_CLASSES, MAX_RECORDS, MAX_REPORT_BYTES, MAX_SAMPLE_ROWS,
    MAX_SAMPLE_VALUES, PredictionRecord, Report, Summary, VersionStats, split_versions,
};
use wasmops_runtime::bindings::{Tensor, TensorData};

/// What one prediction was, for [`Window::record`].
pub struct Observation<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub shadow: bool,
    pub latency_ms: f64,
    pub inputs: &'a [Tensor],
    /// `None` when the prediction failed.
    pub outputs: Option<&'a [Tensor]>,
    /// Shadow only: whether the outputs matched the live model's.
    pub agreed: bool,
    /// How this version's columns are counted (its reference profile).
    pub counting: &'a Counting,
    /// Live only: the prediction ids handed to the application, one per row.
    pub ids: &'a [String],
    /// Raw input rows to keep in the window's sample (0: none, the default).
    pub sample_rows: usize,
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
            record_predictions(s, o.ids, out, wasmops_protocol::now_ms());
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

fn record_inputs(s: &mut VersionStats, inputs: &[Tensor], counting: &Counting) {
    for t in inputs {
        let TensorData::Float32(v) = &t.data else {
            continue;
        };
        if t.shape.len() == 2 && t.shape[1] > 0 && t.shape[1] as usize <= MAX_COLUMNS {
            let width = t.shape[1] as usize;
            let profiled = counting.input.as_deref() == Some(t.name.as_str())
                && counting.inputs.len() == width;
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
            let s = s.features.entry(t.name.clone()).or_default();
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
    inputs: &[Tensor],
    ids: &[String],
    counting: &Counting,
    wanted: usize,
    rng: &mut u64,
) {
    let input = inputs.iter().find(|t| match &counting.input {
        Some(name) => &t.name == name,
        None => t.shape.len() == 2,
    });
    let Some(t) = input else { return };
    let TensorData::Float32(v) = &t.data else {
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
fn record_outputs(s: &mut VersionStats, outputs: &[Tensor], counting: &Counting) {
    for t in outputs {
        match &t.data {
            TensorData::Float32(v) => {
                let rows = t.shape.first().copied().unwrap_or(1).max(1) as usize;
                let width = if v.len() % rows == 0 {
                    v.len() / rows
                } else {
                    0
                };
                if width == 0 || width > MAX_CLASSES {
                    let s = s.outputs.entry(t.name.clone()).or_default();
                    v.iter().for_each(|x| {
                        s.add(*x as f64);
                    });
                    continue;
                }
                for (i, x) in v.iter().enumerate() {
                    let name = output_column(&t.name, i % width, width);
                    let x = *x as f64;
                    match counting.outputs.get(&name) {
                        Some(c) => c.add(s.outputs.entry(name).or_default(), x),
                        None => {
                            s.outputs.entry(name).or_default().add(x);
                        }
                    }
                }
            }
            TensorData::Int64(v) => count_classes(s, &t.name, v.iter().map(|x| x.to_string())),
            TensorData::Text(v) => count_classes(s, &t.name, v.iter().cloned()),
        }
    }
}

/// Rows of a prediction: the first output's first axis (1 for a scalar).
pub fn rows_of(outputs: &[Tensor]) -> usize {
    outputs
        .first()
        .and_then(|t| t.shape.first())
        .map_or(1, |r| *r as usize)
}

/// `n` fresh prediction ids: `p` and 24 hex digits (96 random bits).
pub fn prediction_ids(n: usize) -> Vec<String> {
    let mut raw = vec![0u8; 12 * n];
    if getrandom::fill(&mut raw).is_err() {
        return vec![];
    }
    raw.chunks(12)
        .map(|c| format!("p{}", hex::encode(c)))
        .collect()
}

/// A record per row (up to [`MAX_RECORDS`] a window): the predicted class
/// (the first integer or text output), the class probabilities (the first
/// `[rows, 2..=16]` float output) and their top one for the confidence
/// estimate, or the predicted value (a `[rows]`/`[rows, 1]` float output).
fn record_predictions(s: &mut VersionStats, ids: &[String], outputs: &[Tensor], at_ms: i64) {
    let rows = ids.len();
    let per_row = |t: &Tensor| -> usize {
        let len = match &t.data {
            TensorData::Float32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Text(v) => v.len(),
        };
        if rows > 0 && len % rows == 0 && t.shape.first() == Some(&(rows as u32)) {
            len / rows
        } else {
            0
        }
    };
    let class = outputs
        .iter()
        .find(|t| per_row(t) == 1 && matches!(t.data, TensorData::Int64(_) | TensorData::Text(_)));
    let probabilities = outputs.iter().find(|t| {
        matches!(t.data, TensorData::Float32(_)) && (2..=MAX_RECORD_CLASSES).contains(&per_row(t))
    });
    let value = outputs
        .iter()
        .find(|t| matches!(t.data, TensorData::Float32(_)) && per_row(t) == 1)
        .filter(|_| class.is_none());
    for (r, id) in ids.iter().enumerate() {
        let probs: Vec<f64> = match probabilities.map(|t| (&t.data, per_row(t))) {
            Some((TensorData::Float32(v), k)) => v[r * k..(r + 1) * k]
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
                TensorData::Int64(v) => v.get(r).map(|x| x.to_string()),
                TensorData::Text(v) => v.get(r).cloned(),
                TensorData::Float32(_) => None,
            }),
            probabilities: probs,
            value: value.and_then(|t| match &t.data {
                TensorData::Float32(v) => v.get(r).map(|x| *x as f64).filter(|x| x.is_finite()),
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

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counters {
    stream: String,
    next_seq: u64,
    dropped_reports: u64,
    dropped_predictions: u64,
}

/// Reports not yet acknowledged, one file per report, bounded.
pub struct Outbox {
    dir: PathBuf,
    capacity: usize,
    counters: Counters,
}

impl Outbox {
    pub fn open(dir: &Path, capacity: usize) -> Result<Outbox> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let counters = match std::fs::read(dir.join("counters.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is corrupt", dir.join("counters.json").display()))?,
            Err(_) => {
                let mut raw = [0u8; 8];
                getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                Counters {
                    stream: hex::encode(raw),
                    ..Counters::default()
                }
            }
        };
        let mut o = Outbox {
            dir: dir.to_path_buf(),
            capacity: capacity.max(1),
            counters,
        };
        // Never reuse a sequence number, even if the counters file is older than the reports.
        if let Some(last) = o.pending()?.last() {
            o.counters.next_seq = o.counters.next_seq.max(last + 1);
        }
        Ok(o)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Sequence numbers waiting for an ack, oldest first.
    pub fn pending(&self) -> Result<Vec<u64>> {
        let mut seqs: Vec<u64> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Numbers and stores the report(s) for one window's `versions`: one,
    /// or several consecutive ones when it would not fit in an MQTT message
    /// ([`split_versions`]). Drops (and counts) the oldest pending reports
    /// when full.
    pub fn push(
        &mut self,
        device: &str,
        window_start_ms: i64,
        window_end_ms: i64,
        versions: Vec<VersionStats>,
    ) -> Result<Vec<Report>> {
        let parts = split_versions(versions, MAX_REPORT_BYTES);
        let pending = self.pending()?;
        for seq in pending
            .iter()
            .take((pending.len() + parts.len()).saturating_sub(self.capacity))
        {
            if let Ok(old) = self.read(*seq) {
                self.counters.dropped_reports += 1;
                self.counters.dropped_predictions += old
                    .versions
                    .iter()
                    .filter(|v| v.role == "live")
                    .map(|v| v.predictions)
                    .sum::<u64>();
            }
            let _ = std::fs::remove_file(self.path(*seq));
        }
        let first = self.counters.next_seq;
        self.counters.next_seq += parts.len() as u64;
        // Counters first: a crash between the writes skips numbers, never repeats one.
        wasmops_trust::write_atomic(
            &self.dir.join("counters.json"),
            &serde_json::to_vec(&self.counters)?,
        )?;
        let mut reports = vec![];
        for (i, versions) in parts.into_iter().enumerate() {
            let report = Report {
                device: device.to_string(),
                stream: self.counters.stream.clone(),
                seq: first + i as u64,
                window_start_ms,
                window_end_ms,
                versions,
                dropped_reports: self.counters.dropped_reports,
                dropped_predictions: self.counters.dropped_predictions,
            };
            wasmops_trust::write_atomic(&self.path(report.seq), &serde_json::to_vec(&report)?)?;
            reports.push(report);
        }
        Ok(reports)
    }

    pub fn read(&self, seq: u64) -> Result<Report> {
        let path = self.path(seq);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
    }

    /// The raw bytes of a pending report, as published.
    pub fn payload(&self, seq: u64) -> Option<Vec<u8>> {
        std::fs::read(self.path(seq)).ok()
    }

    pub fn ack(&mut self, seqs: &[u64]) {
        for s in seqs {
            let _ = std::fs::remove_file(self.path(*s));
        }
    }

    pub fn dropped(&self) -> (u64, u64) {
        (
            self.counters.dropped_reports,
            self.counters.dropped_predictions,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_numbers_bounds_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let stats = |n| {
            vec![VersionStats {
                model: "m".into(),
                version: "1".into(),
                role: "live".into(),
                predictions: n,
                ..Default::default()
            }]
        };
        let mut o = Outbox::open(dir.path(), 3).unwrap();
        for n in 1..=5 {
            o.push("d", 0, 1, stats(n)).unwrap();
        }
        // Capacity 3: reports 0 and 1 (1 + 2 predictions) were dropped and counted.
        assert_eq!(o.pending().unwrap(), vec![2, 3, 4]);
        assert_eq!(o.dropped(), (2, 3));
        o.ack(&[3]);
        let mut o = Outbox::open(dir.path(), 3).unwrap();
        assert_eq!(o.pending().unwrap(), vec![2, 4]);
        let r = o.push("d", 0, 1, stats(9)).unwrap().remove(0);
        assert_eq!((r.seq, r.dropped_reports, r.dropped_predictions), (5, 2, 3));
    }
}
