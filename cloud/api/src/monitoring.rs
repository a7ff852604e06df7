//! Monitoring bodies: outcomes posted for predictions (delayed labels).

use serde::{Deserialize, Serialize};

/// Labels per `POST /v1/labels` at most.
pub const MAX_LABELS: usize = 10_000;

/// What actually happened: a class (text, or an integer class id) for a
/// classifier's prediction, a number for a regressor's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Outcome {
    Number(f64),
    Class(String),
}

/// One outcome for one prediction id (as the agent's `POST /v1/predict`
/// returned it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Label {
    pub prediction_id: String,
    pub outcome: Outcome,
}

/// `POST /v1/labels`: all stored, or none (the error names the bad ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsRequest {
    pub labels: Vec<Label>,
}

/// The answer: how many were stored (a label posted again replaces the
/// earlier outcome).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelsStored {
    pub stored: u64,
}

/// `GET /v1/models/{name}/monitor?version=V&since_ms=T&until_ms=T&selector=k=v,…`:
/// a model version's monitoring over a time range, from what its devices
/// counted (the coordinator folds their telemetry into time buckets).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    pub model: String,
    pub version: String,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Width of one trend point.
    pub bucket_ms: i64,
    /// The label selector the devices were chosen by (`k=v,…`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Devices that reported in the range, and the predictions they counted.
    pub devices: u64,
    pub predictions: u64,
    /// Inputs against the training profile signed with the version.
    pub data_drift: Drift,
    /// Outputs against the outputs on the training data …
    pub prediction_drift: Drift,
    /// … and against the previous version's outputs in the same range (when
    /// it ran and both share the output profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction_drift_vs_previous: Option<PreviousDrift>,
    /// Posted outcomes against the training labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_drift: Option<Drift>,
    /// Data-quality findings, with the devices and label groups they come from.
    pub quality: Vec<QualityAlert>,
    /// Input drift per label group (`key=value`) over the range's last
    /// window: where the drift is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupDrift>,
    pub performance: Performance,
    /// One point per bucket, oldest first.
    pub trend: Vec<TrendPoint>,
    /// What could not be judged, and why (no profile signed, say).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Drift of a set of columns (a version's inputs, outputs or labels).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    pub dataset_drift: bool,
    /// Share of judged columns that drifted.
    pub drift_share: f64,
    /// Magnitude of the drift in [0, 1], and each column's contribution to it.
    pub coefficient: f64,
    pub columns: Vec<ColumnDrift>,
}

/// One column's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    pub name: String,
    /// `wasserstein_norm`, `jensenshannon`, `psi`, `chisquare`, …
    pub method: String,
    /// The method's value; `None` when nothing was counted.
    pub score: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    pub psi: Option<f64>,
    /// Values counted.
    pub count: u64,
    pub contribution: f64,
}

/// The drifted input columns of one label group's devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupDrift {
    /// `key=value`.
    pub group: String,
    pub devices: u64,
    /// Only the columns that drifted.
    pub drifted: Vec<ColumnDrift>,
}

/// Output drift against another version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreviousDrift {
    pub version: String,
    pub drift: Drift,
}

/// One data-quality finding and where it happens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityAlert {
    pub column: String,
    /// TFDV's anomaly name, e.g. `FEATURE_TYPE_LOW_UNIQUE`.
    pub anomaly: String,
    pub detail: String,
    /// Devices where it happens (the whole fleet's counts may not show it).
    pub devices: Vec<String>,
    /// Label groups (`key=value`) of those devices, with how many of them.
    pub groups: std::collections::BTreeMap<String, u64>,
}

/// Realised performance from outcomes, and the estimate without them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Performance {
    /// Predictions with an outcome.
    pub labelled: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mae: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rmse: Option<f64>,
    /// An estimate, not a measurement: the accuracy the classifier's own
    /// confidence implies (mean top-class probability, as NannyML's CBPE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_accuracy: Option<f64>,
}

/// One bucket of the trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub start_ms: i64,
    pub predictions: u64,
    pub dataset_drift: bool,
    pub drift_share: f64,
    pub coefficient: f64,
    /// Each input column's score (its method's), by name.
    pub scores: std::collections::BTreeMap<String, f64>,
    /// Each output column's score.
    pub prediction_scores: std::collections::BTreeMap<String, f64>,
    pub labelled: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_accuracy: Option<f64>,
}

/// `GET /v1/models/{name}/samples?version=V&since_ms=T&limit=N`: raw input
/// rows devices sampled (opt-in per model on the device), newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    pub model: String,
    pub version: String,
    /// Column names (the training profile's, or `X[j]`).
    pub columns: Vec<String>,
    /// `None`: missing.
    pub rows: Vec<Vec<Option<f64>>>,
}

/// Rows one samples answer holds at most.
pub const MAX_SAMPLE_ANSWER_ROWS: usize = 100_000;

/// `PUT /v1/models/{name}/monitoring`: how the model's drift is judged
/// (per column over the model's default); `GET` answers the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorSettings {
    /// Method for every column (`wasserstein_norm`, `jensenshannon`, `psi`,
    /// `chisquare`, …); unset: Evidently's default by column kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Dataset drift at this share of drifted columns (default 0.5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_share: Option<f64>,
    /// `PerformanceDegraded` when realised accuracy falls this far below the
    /// model's own confidence (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accuracy_margin: Option<f64>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub columns: std::collections::BTreeMap<String, ColumnSetting>,
}

/// A column's own method and threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSetting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}
