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
use wasmops_host::bindings::{Tensor, TensorData};

/// Upper bounds (ms) of the latency buckets; one more bucket holds the rest.
pub const LATENCY_BOUNDS_MS: [f64; 16] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0];

/// Distinct class values counted per integer output before the rest are lumped as "other".
const MAX_CLASSES: usize = 64;

/// Summary of one input feature (or output) over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    /// NaN values (missing features).
    pub nulls: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    /// Counts per bin when bin edges are known (training-data quantiles): `edges.len() + 1` bins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bins: Vec<u64>,
}

impl Summary {
    fn add(&mut self, x: f64, edges: &[f64]) {
        self.count += 1;
        if x.is_nan() {
            self.nulls += 1;
            return;
        }
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        self.sum += x;
        if !edges.is_empty() {
            self.bins.resize(edges.len() + 1, 0);
            self.bins[edges.partition_point(|e| *e <= x)] += 1;
        }
    }

    pub fn mean(&self) -> Option<f64> {
        let n = self.count - self.nulls;
        (n > 0).then(|| self.sum / n as f64)
    }

    fn merge(&mut self, o: &Summary) {
        self.count += o.count;
        self.nulls += o.nulls;
        self.sum += o.sum;
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        merge_counts(&mut self.bins, &o.bins);
    }
}

fn merge_counts(into: &mut Vec<u64>, from: &[u64]) {
    if into.len() < from.len() {
        into.resize(from.len(), 0);
    }
    for (a, b) in into.iter_mut().zip(from) {
        *a += b;
    }
}

/// Latency histogram over [`LATENCY_BOUNDS_MS`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub sum_ms: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; LATENCY_BOUNDS_MS.len() + 1], sum_ms: 0.0 }
    }
}

impl Histogram {
    pub fn record(&mut self, ms: f64) {
        self.counts[LATENCY_BOUNDS_MS.partition_point(|b| *b < ms)] += 1;
        self.sum_ms += ms;
    }

    pub fn merge(&mut self, o: &Histogram) {
        merge_counts(&mut self.counts, &o.counts);
        self.sum_ms += o.sum_ms;
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The upper bound of the bucket holding quantile `q` (a conservative
    /// estimate); `None` when empty, infinity when it is in the overflow bucket.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(LATENCY_BOUNDS_MS.get(i).copied().unwrap_or(f64::INFINITY));
            }
        }
        Some(f64::INFINITY)
    }
}

/// How one model version did over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionStats {
    pub model: String,
    pub version: String,
    /// `live` (answers the application) or `shadow` (runs beside it, answers nobody).
    pub role: String,
    pub predictions: u64,
    pub errors: u64,
    pub latency: Histogram,
    /// Per input feature: `X[0]`, `X[1]`, … for `[batch, features]` inputs; the
    /// whole tensor for other shapes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, Summary>,
    /// Per output: value summary (floats) …
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, Summary>,
    /// … and class counts (integer and text outputs).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, BTreeMap<String, u64>>,
    /// Shadow only: predictions whose outputs matched the live model's.
    #[serde(default)]
    pub agreed: u64,
}

impl VersionStats {
    pub fn merge(&mut self, o: &VersionStats) {
        self.predictions += o.predictions;
        self.errors += o.errors;
        self.agreed += o.agreed;
        self.latency.merge(&o.latency);
        for (k, v) in &o.features {
            self.features.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.outputs {
            self.outputs.entry(k.clone()).or_default().merge(v);
        }
        for (k, v) in &o.classes {
            let into = self.classes.entry(k.clone()).or_default();
            for (class, n) in v {
                *into.entry(class.clone()).or_default() += n;
            }
        }
    }

    fn record_inputs(&mut self, inputs: &[Tensor], edges: &BTreeMap<String, Vec<f64>>) {
        for t in inputs {
            let TensorData::Float32(v) = &t.data else { continue };
            if t.shape.len() == 2 && t.shape[1] > 0 && t.shape[1] <= 256 {
                let width = t.shape[1] as usize;
                for (i, x) in v.iter().enumerate() {
                    let name = format!("{}[{}]", t.name, i % width);
                    let e = edges.get(&name).map(Vec::as_slice).unwrap_or(&[]);
                    self.features.entry(name).or_default().add(*x as f64, e);
                }
            } else {
                let s = self.features.entry(t.name.clone()).or_default();
                v.iter().for_each(|x| s.add(*x as f64, &[]));
            }
        }
    }

    fn record_outputs(&mut self, outputs: &[Tensor]) {
        for t in outputs {
            match &t.data {
                TensorData::Float32(v) => {
                    let s = self.outputs.entry(t.name.clone()).or_default();
                    v.iter().for_each(|x| s.add(*x as f64, &[]));
                }
                TensorData::Int64(v) => self.count_classes(&t.name, v.iter().map(|x| x.to_string())),
                TensorData::Text(v) => self.count_classes(&t.name, v.iter().cloned()),
            }
        }
    }

    fn count_classes(&mut self, output: &str, values: impl Iterator<Item = String>) {
        let counts = self.classes.entry(output.to_string()).or_default();
        for v in values {
            let key = if counts.contains_key(&v) || counts.len() < MAX_CLASSES { v } else { "other".to_string() };
            *counts.entry(key).or_default() += 1;
        }
    }
}

/// Bin edges at the `bins`-quantiles of each feature of `inputs` (NaN
/// skipped, repeated edges merged): how live inputs are binned later.
/// Features are named as telemetry names them: `X[0]`, `X[1]`, … for
/// `[rows, features]` float inputs.
pub fn quantile_edges(inputs: &[Tensor], bins: usize) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    for t in inputs {
        let TensorData::Float32(v) = &t.data else { continue };
        if t.shape.len() != 2 || t.shape[1] == 0 || t.shape[1] > 256 {
            continue;
        }
        let width = t.shape[1] as usize;
        for col in 0..width {
            let mut xs: Vec<f64> = v.iter().skip(col).step_by(width).map(|x| *x as f64).filter(|x| x.is_finite()).collect();
            if xs.len() < 2 {
                continue;
            }
            xs.sort_by(f64::total_cmp);
            let mut edges: Vec<f64> = (1..bins).map(|i| xs[(i * (xs.len() - 1)) / bins]).collect();
            edges.dedup();
            if !edges.is_empty() {
                out.insert(format!("{}[{col}]", t.name), edges);
            }
        }
    }
    out
}

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
}

/// Everything measured since the last report.
#[derive(Debug, Default)]
pub struct Window {
    pub started_ms: i64,
    stats: BTreeMap<(String, String, bool), VersionStats>,
    /// Bin edges per feature name (from the model's signed claims).
    pub edges: BTreeMap<String, Vec<f64>>,
}

impl Window {
    pub fn new(started_ms: i64) -> Window {
        Window { started_ms, ..Default::default() }
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
            s.record_inputs(o.inputs, &self.edges);
        }
        match o.outputs {
            Some(out) => s.record_outputs(out),
            None => s.errors += 1,
        }
        if o.agreed {
            s.agreed += 1;
        }
    }

    /// Closes the window: its stats, and a fresh window starting at `now_ms`.
    pub fn take(&mut self, now_ms: i64) -> (i64, Vec<VersionStats>) {
        let started = std::mem::replace(&mut self.started_ms, now_ms);
        (started, std::mem::take(&mut self.stats).into_values().collect())
    }
}

/// One telemetry message (`wasmops/v1/devices/{id}/telemetry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub device: String,
    /// Random per outbox: a device whose state was wiped starts a new stream,
    /// so its restarted sequence numbers are not taken for duplicates.
    pub stream: String,
    /// Per device, strictly increasing, never reused (persisted across restarts).
    pub seq: u64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub versions: Vec<VersionStats>,
    /// Reports dropped because the outbox was full, and the predictions they held
    /// (cumulative since the device's state directory was created).
    pub dropped_reports: u64,
    pub dropped_predictions: u64,
}

/// The coordinator's acknowledgement (`wasmops/v1/devices/{id}/telemetry/ack`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub seqs: Vec<u64>,
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
            Ok(b) => serde_json::from_slice(&b).with_context(|| format!("{} is corrupt", dir.join("counters.json").display()))?,
            Err(_) => {
                let mut raw = [0u8; 8];
                getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                Counters { stream: hex::encode(raw), ..Counters::default() }
            }
        };
        let mut o = Outbox { dir: dir.to_path_buf(), capacity: capacity.max(1), counters };
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

    /// Numbers and stores a report for `stats`; returns it. Drops (and counts)
    /// the oldest pending report when full.
    pub fn push(&mut self, device: &str, window_start_ms: i64, window_end_ms: i64, versions: Vec<VersionStats>) -> Result<Report> {
        let pending = self.pending()?;
        for seq in pending.iter().take((pending.len() + 1).saturating_sub(self.capacity)) {
            if let Ok(old) = self.read(*seq) {
                self.counters.dropped_reports += 1;
                self.counters.dropped_predictions += old.versions.iter().filter(|v| v.role == "live").map(|v| v.predictions).sum::<u64>();
            }
            let _ = std::fs::remove_file(self.path(*seq));
        }
        let report = Report {
            device: device.to_string(),
            stream: self.counters.stream.clone(),
            seq: self.counters.next_seq,
            window_start_ms,
            window_end_ms,
            versions,
            dropped_reports: self.counters.dropped_reports,
            dropped_predictions: self.counters.dropped_predictions,
        };
        self.counters.next_seq += 1;
        // Counters first: a crash between the two writes skips a number, never repeats one.
        wasmops_trust::write_atomic(&self.dir.join("counters.json"), &serde_json::to_vec(&self.counters)?)?;
        wasmops_trust::write_atomic(&self.path(report.seq), &serde_json::to_vec(&report)?)?;
        Ok(report)
    }

    pub fn read(&self, seq: u64) -> Result<Report> {
        let path = self.path(seq);
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
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
        (self.counters.dropped_reports, self.counters.dropped_predictions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_bucket_upper_bounds() {
        let mut h = Histogram::default();
        for ms in [0.2, 0.2, 0.3, 0.4, 7.0, 7.0, 7.0, 7.0, 7.0, 300.0] {
            h.record(ms);
        }
        assert_eq!(h.total(), 10);
        assert_eq!(h.quantile_ms(0.2), Some(0.25));
        assert_eq!(h.quantile_ms(0.5), Some(10.0));
        assert_eq!(h.quantile_ms(0.95), Some(500.0));
        h.record(1e9);
        assert_eq!(h.quantile_ms(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn summaries_count_nulls_and_bin_by_edges() {
        let mut s = Summary::default();
        for x in [1.0, f64::NAN, 3.0, 5.0, 10.0] {
            s.add(x, &[2.0, 4.0]);
        }
        assert_eq!((s.count, s.nulls, s.min, s.max), (5, 1, Some(1.0), Some(10.0)));
        assert_eq!(s.mean(), Some(19.0 / 4.0));
        assert_eq!(s.bins, vec![1, 1, 2]);
    }

    #[test]
    fn quantile_edges_split_training_data_evenly() {
        let data: Vec<f32> = (0..100).flat_map(|i| [i as f32, 7.0]).collect();
        let t = Tensor { name: "X".into(), shape: vec![100, 2], data: TensorData::Float32(data) };
        let e = quantile_edges(&[t], 4);
        assert_eq!(e["X[0]"], vec![24.0, 49.0, 74.0]);
        assert_eq!(e["X[1]"], vec![7.0], "a constant feature has one edge");
    }

    #[test]
    fn outbox_numbers_bounds_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let stats = |n| vec![VersionStats { model: "m".into(), version: "1".into(), role: "live".into(), predictions: n, ..Default::default() }];
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
        let r = o.push("d", 0, 1, stats(9)).unwrap();
        assert_eq!((r.seq, r.dropped_reports, r.dropped_predictions), (5, 2, 3));
    }
}
