//! Telemetry on the wire: what a device reports about the model versions it
//! runs over one window ([`Report`] on `wasmops/v1/devices/{id}/telemetry`) and
//! the coordinator's acknowledgement ([`Ack`]). The summaries merge, so the
//! coordinator folds windows from many devices into one view.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::device::{BadField, MAX_NAME, check_name};

/// Upper bounds (ms) of the latency buckets; one more bucket holds the rest.
pub const LATENCY_BOUNDS_MS: [f64; 16] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0,
    10000.0,
];

/// Distinct class values counted per integer output before the rest are lumped as "other".
pub const MAX_CLASSES: usize = 64;

/// Bins a column's summary may have: a reference profile's bins, with room.
pub const MAX_BINS: usize = 128;
/// Categories counted per column at most; the rest are counted as [`OTHER`].
pub const MAX_CATEGORIES: usize = 64;
/// Where categories past [`MAX_CATEGORIES`] are counted.
pub const OTHER: &str = "…other";

/// Summary of one input feature (or output column) over a window. Every
/// field adds up across windows and devices ([`VersionStats::merge`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    /// Missing values (NaN).
    pub nulls: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub sum: f64,
    /// Sum of squares of the present values (variance = E[x²] − mean²).
    #[serde(default)]
    pub sum_sq: f64,
    /// Numeric columns with a reference profile: counts per reference bin
    /// (`edges.len() + 1` bins, the profile's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bins: Vec<u64>,
    /// … and values below the reference minimum / above its maximum.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub below: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub above: u64,
    /// Categorical columns with a reference profile: count per value
    /// ([`MAX_CATEGORIES`] at most, the rest as [`OTHER`]) …
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub categories: BTreeMap<String, u64>,
    /// … and values the reference never had.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unknown: u64,
}

fn is_zero(x: &u64) -> bool {
    *x == 0
}

impl Summary {
    /// Counts `x` (NaN or ±inf as missing) into count, range and moments;
    /// whether it was present.
    pub fn add(&mut self, x: f64) -> bool {
        self.count += 1;
        if !x.is_finite() {
            self.nulls += 1;
            return false;
        }
        self.min = Some(self.min.map_or(x, |m| m.min(x)));
        self.max = Some(self.max.map_or(x, |m| m.max(x)));
        self.sum += x;
        self.sum_sq += x * x;
        true
    }

    /// Counts a present value into reference bin `bin` of `bins`, and
    /// whether it lies beyond the reference range.
    pub fn add_bin(&mut self, bin: usize, bins: usize, below: bool, above: bool) {
        if self.bins.len() < bins {
            self.bins.resize(bins, 0);
        }
        if let Some(b) = self.bins.get_mut(bin) {
            *b += 1;
        }
        self.below += u64::from(below);
        self.above += u64::from(above);
    }

    /// Counts a present value as category `key`, `known` to the reference or not.
    pub fn add_category(&mut self, key: String, known: bool) {
        count_capped(&mut self.categories, key, 1);
        self.unknown += u64::from(!known);
    }

    pub fn mean(&self) -> Option<f64> {
        let n = self.count - self.nulls;
        (n > 0).then(|| self.sum / n as f64)
    }

    /// Population variance of the present values.
    pub fn variance(&self) -> Option<f64> {
        let n = (self.count - self.nulls) as f64;
        let mean = self.mean()?;
        Some((self.sum_sq / n - mean * mean).max(0.0))
    }

    fn merge(&mut self, o: &Summary) {
        self.count += o.count;
        self.nulls += o.nulls;
        self.sum += o.sum;
        self.sum_sq += o.sum_sq;
        self.min = match (self.min, o.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, o.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        merge_counts(&mut self.bins, &o.bins);
        self.below += o.below;
        self.above += o.above;
        for (k, n) in &o.categories {
            count_capped(&mut self.categories, k.clone(), *n);
        }
        self.unknown += o.unknown;
    }
}

/// Adds `n` to `key`, or to [`OTHER`] once [`MAX_CATEGORIES`] keys are in.
fn count_capped(into: &mut BTreeMap<String, u64>, key: String, n: u64) {
    let key = if into.contains_key(&key) || into.len() < MAX_CATEGORIES {
        key
    } else {
        OTHER.to_string()
    };
    *into.entry(key).or_default() += n;
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
        Histogram {
            counts: vec![0; LATENCY_BOUNDS_MS.len() + 1],
            sum_ms: 0.0,
        }
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

/// Prediction records a version keeps per window at most (about 100 bytes
/// of JSON each, so a window's records fit one report); predictions past
/// it are counted in [`VersionStats::unrecorded`].
pub const MAX_RECORDS: usize = 500;
/// Class probabilities a record keeps at most.
pub const MAX_RECORD_CLASSES: usize = 16;
/// Longest prediction id.
pub const MAX_PREDICTION_ID: usize = 64;

/// One live prediction an application may attach an outcome to later
/// (`POST /v1/labels` on the coordinator, by `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// As the agent's `POST /v1/predict` returned it.
    pub id: String,
    pub at_ms: i64,
    /// The predicted class (classifiers) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// … the class probabilities, in the order of the model's probability
    /// output …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub probabilities: Vec<f64>,
    /// … or the predicted value (regressors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// Whether `id` can be a prediction id: 1-64 of `[A-Za-z0-9_-]`.
pub fn is_prediction_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_PREDICTION_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
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
    /// Live rows an outcome can be attached to (at most [`MAX_RECORDS`]) …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<PredictionRecord>,
    /// … and the rows past that.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unrecorded: u64,
    /// Classifiers: the top class probability summed over rows, and the rows —
    /// the accuracy a calibrated model expects of itself (confidence-based
    /// performance estimation, before any outcome is known).
    #[serde(default)]
    pub confidence_sum: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub confidence_rows: u64,
    /// Opt-in per model on the device (`sample_rows` in agent.toml): raw
    /// input rows of the window, a uniform reservoir sample (`None`:
    /// missing) of the `sample_seen` rows offered — for retraining and for
    /// exact tests on raw values. Not merged; stored row by row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample: Vec<Vec<Option<f64>>>,
    /// The prediction id of each sampled row, in `sample`'s order (empty
    /// text: the prediction failed), so outcomes posted later label the row
    /// (production rows become training data). Empty from older agents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sample_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sample_seen: u64,
}

/// Raw rows a version's window sample holds at most …
pub const MAX_SAMPLE_ROWS: usize = 100;
/// … and values (rows × columns), so a report stays far below its size limit.
pub const MAX_SAMPLE_VALUES: usize = 20_000;

impl VersionStats {
    /// Adds `o`'s counts to these (its prediction records excepted).
    pub fn merge(&mut self, o: &VersionStats) {
        self.predictions += o.predictions;
        self.errors += o.errors;
        self.agreed += o.agreed;
        self.confidence_sum += o.confidence_sum;
        self.confidence_rows += o.confidence_rows;
        // Records are not summarised: the coordinator stores them one by one.
        self.unrecorded += o.unrecorded;
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

/// Largest report (its JSON) sent as one message: room is left under
/// [`MAX_MESSAGE_BYTES`](crate::MAX_MESSAGE_BYTES) for the topic and the MQTT header.
pub const MAX_REPORT_BYTES: usize = crate::MAX_MESSAGE_BYTES - 16 * 1024;

/// What a report holds besides its versions (ids, times, counters), at most.
const ENVELOPE_BYTES: usize = 1024;

/// Splits one window's stats into parts whose reports each fit in
/// `max_bytes`. A version's first part carries its counts, latency, outputs
/// and classes with some of its feature summaries; later parts carry only
/// more feature summaries under zero counts, so merging the parts (as the
/// coordinator merges any reports) gives the whole window back. One part
/// when everything fits.
pub fn split_versions(versions: Vec<VersionStats>, max_bytes: usize) -> Vec<Vec<VersionStats>> {
    let budget = max_bytes.saturating_sub(ENVELOPE_BYTES).max(1);
    let size = |v: &VersionStats| serde_json::to_vec(v).map(|b| b.len()).unwrap_or(0);
    let whole: usize = versions.iter().map(size).sum();
    if whole <= budget {
        return vec![versions];
    }
    let mut parts: Vec<Vec<VersionStats>> = vec![vec![]];
    let mut used = 0;
    for mut v in versions {
        let features = std::mem::take(&mut v.features);
        let (model, version, role) = (v.model.clone(), v.version.clone(), v.role.clone());
        let base = size(&v);
        if used + base > budget && !parts.last().expect("one part").is_empty() {
            parts.push(vec![]);
            used = 0;
        }
        parts.last_mut().expect("one part").push(v);
        used += base;
        for (name, summary) in features {
            let entry = name.len() + serde_json::to_vec(&summary).map(|b| b.len()).unwrap_or(0) + 4;
            if used + entry > budget {
                // A continuation: the same version, zero counts, more features.
                let more = VersionStats {
                    model: model.clone(),
                    version: version.clone(),
                    role: role.clone(),
                    ..Default::default()
                };
                used = size(&more);
                parts.push(vec![more]);
            }
            let last = parts
                .last_mut()
                .and_then(|p| p.last_mut())
                .expect("the version is in the last part");
            last.features.insert(name, summary);
            used += entry;
        }
    }
    parts
}

/// Most model versions one report may carry (live, shadow, and a switch in the window).
pub const MAX_VERSIONS: usize = 8;
/// Most features or outputs summarised per version.
pub const MAX_COLUMNS: usize = 4096;

impl Report {
    /// Every field checked before it is stored: names as in desired states,
    /// column names printable and short (a NUL fails a whole Postgres batch),
    /// counts consistent. A report that fails is refused alone; the others
    /// of its batch are stored.
    pub fn check(&self) -> Result<(), BadField> {
        let bad = |field: &'static str, problem: String| Err(BadField { field, problem });
        check_name("stream", &self.stream)?;
        if self.window_start_ms > self.window_end_ms {
            return bad("window_start_ms", "is after window_end_ms".into());
        }
        if self.versions.len() > MAX_VERSIONS {
            return bad("versions", format!("more than {MAX_VERSIONS}"));
        }
        for v in &self.versions {
            check_name("model", &v.model)?;
            check_name("version", &v.version)?;
            if v.role != "live" && v.role != "shadow" {
                return bad(
                    "role",
                    format!("`{}` is neither live nor shadow", v.role.escape_debug()),
                );
            }
            if v.errors > v.predictions || v.agreed > v.predictions {
                return bad("errors", "errors or agreed exceed predictions".into());
            }
            if v.features.len() + v.outputs.len() > MAX_COLUMNS || v.classes.len() > MAX_COLUMNS {
                return bad("features", format!("more than {MAX_COLUMNS} columns"));
            }
            let summaries = v.features.values().chain(v.outputs.values());
            for s in summaries.clone() {
                if s.bins.len() > MAX_BINS || s.categories.len() > MAX_CATEGORIES + 1 {
                    return bad(
                        "features",
                        format!("more than {MAX_BINS} bins or {MAX_CATEGORIES} categories"),
                    );
                }
                let present = s.count.saturating_sub(s.nulls);
                if s.nulls > s.count
                    || s.below + s.above > present
                    || s.unknown > present
                    || !s.sum.is_finite()
                    || !s.sum_sq.is_finite()
                {
                    return bad(
                        "features",
                        "counts or sums that cannot be (more missing than values, …)".into(),
                    );
                }
            }
            let names = v
                .features
                .keys()
                .chain(v.outputs.keys())
                .chain(v.classes.keys())
                .chain(v.classes.values().flat_map(|c| c.keys()))
                .chain(summaries.flat_map(|s| s.categories.keys()));
            for name in names {
                if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
                    return bad(
                        "features",
                        format!(
                            "column or class name {:?} must be 1-{MAX_NAME} printable characters",
                            name
                        ),
                    );
                }
            }
            if v.records.len() > MAX_RECORDS
                || v.confidence_rows > v.predictions.saturating_mul(1 << 20)
                || !(0.0..=v.confidence_rows as f64).contains(&v.confidence_sum)
            {
                return bad(
                    "records",
                    format!("more than {MAX_RECORDS} records, or an impossible confidence"),
                );
            }
            for r in &v.records {
                let sound = is_prediction_id(&r.id)
                    && r.probabilities.len() <= MAX_RECORD_CLASSES
                    && r.probabilities.iter().all(|p| (0.0..=1.0).contains(p))
                    && r.value.is_none_or(f64::is_finite)
                    && r.class.as_ref().is_none_or(|c| {
                        !c.is_empty() && c.len() <= MAX_NAME && !c.chars().any(char::is_control)
                    });
                if !sound {
                    return bad(
                        "records",
                        format!(
                            "record {:?}: an id of 1-{MAX_PREDICTION_ID} [A-Za-z0-9_-], at most {MAX_RECORD_CLASSES} probabilities in [0, 1], a finite value, a printable class",
                            r.id.escape_debug().to_string()
                        ),
                    );
                }
            }
            if v.classes.values().any(|c| c.len() > MAX_CLASSES + 1) {
                return bad("classes", format!("more than {MAX_CLASSES} classes"));
            }
            let width = v.sample.first().map_or(0, Vec::len);
            if v.sample.len() > MAX_SAMPLE_ROWS
                || v.sample.len() as u64 > v.sample_seen
                || width > MAX_COLUMNS
                || v.sample.len() * width > MAX_SAMPLE_VALUES
                || v.sample
                    .iter()
                    .any(|r| r.len() != width || r.iter().flatten().any(|x| !x.is_finite()))
            {
                return bad(
                    "sample",
                    format!(
                        "at most {MAX_SAMPLE_ROWS} rows of one width (≤ {MAX_SAMPLE_VALUES} values), finite or null, no more than sample_seen"
                    ),
                );
            }
            if !v.sample_ids.is_empty()
                && (v.sample_ids.len() != v.sample.len()
                    || v.sample_ids
                        .iter()
                        .any(|id| !id.is_empty() && !is_prediction_id(id)))
            {
                return bad(
                    "sample_ids",
                    "one prediction id (or empty) per sample row".to_string(),
                );
            }
        }
        Ok(())
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
        let edges = [2.0, 4.0];
        for x in [1.0, f64::NAN, 3.0, 5.0, 10.0] {
            if s.add(x) {
                let bin = edges.partition_point(|e| *e <= x);
                s.add_bin(bin, 3, x < 1.0, x > 6.0);
            }
        }
        assert_eq!(
            (s.count, s.nulls, s.min, s.max),
            (5, 1, Some(1.0), Some(10.0))
        );
        assert_eq!(s.mean(), Some(19.0 / 4.0));
        assert_eq!(s.variance(), Some(135.0 / 4.0 - (19.0f64 / 4.0).powi(2)));
        assert_eq!(s.bins, vec![1, 1, 2]);
        assert_eq!((s.below, s.above), (0, 1));
        let mut c = Summary::default();
        for i in 0..100 {
            c.add(i as f64);
            c.add_category(i.to_string(), i < 10);
        }
        assert_eq!(c.categories.len(), MAX_CATEGORIES + 1);
        assert_eq!(c.categories[OTHER], 100 - MAX_CATEGORIES as u64);
        assert_eq!(c.unknown, 90);
        let mut merged = c.clone();
        merged.merge(&c);
        assert_eq!(merged.categories[OTHER], 2 * (100 - MAX_CATEGORIES as u64));
    }

    #[test]
    fn forged_prediction_records_are_refused() {
        let record = |id: &str, p: Vec<f64>| PredictionRecord {
            id: id.into(),
            at_ms: 1,
            class: Some("1".into()),
            probabilities: p,
            value: None,
        };
        let report = |records: Vec<PredictionRecord>| Report {
            device: "d".into(),
            stream: "s".into(),
            seq: 1,
            window_start_ms: 0,
            window_end_ms: 1,
            versions: vec![VersionStats {
                model: "m".into(),
                version: "1.0.0".into(),
                role: "live".into(),
                predictions: 2,
                records,
                ..Default::default()
            }],
            dropped_reports: 0,
            dropped_predictions: 0,
        };
        assert!(
            report(vec![record("p_0a1b", vec![0.2, 0.8])])
                .check()
                .is_ok()
        );
        for bad in [
            record("p 1", vec![]),
            record("", vec![]),
            record(&"x".repeat(65), vec![]),
            record("p1", vec![1.5]),
            record("p1", vec![f64::NAN]),
            record("p1", vec![0.0; 17]),
        ] {
            assert!(report(vec![bad.clone()]).check().is_err(), "{bad:?}");
        }
        let many = (0..=MAX_RECORDS)
            .map(|i| record(&format!("p{i}"), vec![]))
            .collect();
        assert!(report(many).check().is_err());
    }

    /// Issue 24.1: a window of a 300-feature model (and a shadow beside it)
    /// is split into reports that each fit the MQTT limit, and merging them
    /// gives the window back exactly.
    #[test]
    fn big_windows_split_into_reports_that_fit_and_merge_back() {
        let edges: Vec<f64> = (1..10).map(|i| i as f64 / 10.0).collect();
        let mut versions = vec![];
        for role in ["live", "shadow"] {
            let mut v = VersionStats {
                model: "wide".into(),
                version: "1.0.0".into(),
                role: role.into(),
                predictions: 1000,
                errors: 3,
                agreed: if role == "shadow" { 990 } else { 0 },
                ..Default::default()
            };
            for i in 0..1000 {
                v.latency.record(i as f64 / 100.0);
                for f in 0..300 {
                    let x = ((i * 31 + f * 7) % 97) as f64 / 97.0;
                    let s = v.features.entry(format!("X[{f}]")).or_default();
                    s.add(x);
                    s.add_bin(
                        edges.partition_point(|e| *e <= x),
                        edges.len() + 1,
                        false,
                        false,
                    );
                }
            }
            v.classes.insert(
                "label".into(),
                [("0".to_string(), 600), ("1".to_string(), 400)].into(),
            );
            versions.push(v);
        }
        let whole: usize = versions
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap().len())
            .sum();
        let limit = 24 * 1024;
        assert!(
            whole > 2 * limit,
            "the window must need splitting: {whole} bytes"
        );
        let parts = split_versions(versions.clone(), limit);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let mut merged: BTreeMap<String, VersionStats> = BTreeMap::new();
        for part in &parts {
            let report = Report {
                device: "d".into(),
                stream: "s".into(),
                seq: 1,
                window_start_ms: 0,
                window_end_ms: 1,
                versions: part.clone(),
                dropped_reports: 0,
                dropped_predictions: 0,
            };
            report.check().unwrap();
            let n = serde_json::to_vec(&report).unwrap().len();
            assert!(n <= limit, "a part is {n} bytes");
            for v in part {
                merged
                    .entry(v.role.clone())
                    .or_insert_with(|| VersionStats {
                        model: v.model.clone(),
                        version: v.version.clone(),
                        role: v.role.clone(),
                        ..Default::default()
                    })
                    .merge(v);
            }
        }
        assert_eq!(merged.into_values().collect::<Vec<_>>(), versions);
        // What fits stays whole.
        let small = vec![VersionStats::default()];
        assert_eq!(split_versions(small.clone(), limit), vec![small]);
    }
}
