//! Runs: every training or validation, with its parameters, datasets, code
//! identity, metrics, logs, duration and status; and the work queue workers
//! pull them from (`wasmops worker`).
//!
//! A run's life: `queued` (created by hand, `wasmops retrain`, or a loop
//! trigger) → `running` (a worker claimed it and holds its lease by
//! heartbeats) → `succeeded` / `failed` (the worker's report, or the lease ran
//! out: the worker died) or `cancelled`. Runs only named in a model's signed
//! claims (trained elsewhere) are `external`.

use serde::{Deserialize, Serialize};

/// Longest log a run keeps (older lines are dropped first, and say so).
pub const MAX_RUN_LOG_BYTES: usize = 1 << 20;

/// A worker that has not been heard from for this long has lost its run.
pub const RUN_LEASE_MS: i64 = 60_000;

/// Runs `GET /v1/runs` answers unless asked for fewer (`limit`), and at most.
pub const DEFAULT_RUNS_PAGE: usize = 100;
pub const MAX_RUNS_PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// Train a candidate on a dataset version (then validate and release it).
    Train,
    /// Validate an existing candidate against the champion only.
    Validate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Named in a registered version's claims; trained outside wasmops.
    External,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::External => "external",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
            RunStatus::External,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether the run can change no more.
    pub fn is_final(self) -> bool {
        !matches!(self, RunStatus::Queued | RunStatus::Running)
    }
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Train => "train",
            RunKind::Validate => "validate",
        }
    }

    pub fn parse(s: &str) -> Option<RunKind> {
        match s {
            "train" => Some(RunKind::Train),
            "validate" => Some(RunKind::Validate),
            _ => None,
        }
    }
}

/// A dataset version a run reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDataset {
    /// `train` or `holdout`.
    pub role: String,
    pub name: String,
    pub version: u32,
    pub sha256: String,
}

/// How a candidate is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Trainer {
    /// One of wasmops' own trainers (`logistic`, `linear`), no
    /// Python needed.
    Builtin {
        algorithm: String,
        /// Algorithm settings (e.g. `{"max_iterations": 200}`).
        #[serde(default)]
        params: serde_json::Value,
    },
    /// Any program: `{data}`, `{out}`, `{metrics}` and `{label}` in the
    /// command are replaced by paths and the label column's name; it must
    /// write an ONNX file at `{out}` and may write a metrics JSON at `{metrics}`.
    Command {
        command: String,
        /// Run in this directory (default: the worker's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workdir: Option<String>,
    },
}

/// `POST /v1/runs`: queue a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequest {
    pub model: String,
    pub kind: RunKind,
    pub trainer: Trainer,
    /// `name` (newest version) or `name@version`.
    pub dataset: String,
    /// Holdout dataset (`name[@version]`); default: a seeded share of `dataset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<String>,
    /// Share of `dataset` held out when no holdout dataset is named (default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_share: Option<f64>,
    /// What started it (`manual`, `DataDriftDetected`, `schedule`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Wall-clock limit for the trainer (default 600 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_s: Option<u64>,
    /// What the candidate must show before it is released (defaults: see [`Gate`]).
    #[serde(default)]
    pub gate: Gate,
}

/// The validation gate: on the holdout rows, the candidate component (built,
/// and run in the wasmtime host devices use) against the champion (the
/// version the `production` alias names, else the newest), run the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gate {
    /// The metric compared: `accuracy`, `auc`, `log_loss` (classifiers),
    /// `mae`, `rmse` (regressors); default accuracy or rmse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The candidate may be this much worse than the champion (or, with
    /// `must_beat`, must be this much better).
    pub margin: f64,
    pub must_beat: bool,
    /// p95 latency of one row in the host, in ms (default: twice the
    /// champion's plus 5 ms; 1000 ms without a champion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_latency_p95_ms: Option<f64>,
    /// Component size (default: twice the champion's, at most 256 MB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size_mb: Option<f64>,
    /// Largest difference between the component's answers and its own ONNX
    /// file's run natively (a packaging bug shows here).
    pub max_difference: f64,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            metric: None,
            margin: 0.0,
            must_beat: false,
            max_latency_p95_ms: None,
            max_size_mb: None,
            max_difference: 1e-3,
        }
    }
}

/// One check of the gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// `metric`, `latency`, `size`, `schema`, `packaging`.
    pub name: String,
    pub passed: bool,
    /// What the candidate showed and what it had to show.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<f64>,
}

/// The gate's verdict, kept in the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub passed: bool,
    /// `name@version` compared against, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub champion: Option<String>,
    pub checks: Vec<Check>,
}

/// A run, as `GET /v1/runs[/{id}]` answers it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: String,
    /// Lineage as claims name it (the training dataset, the code).
    pub dataset_id: Option<String>,
    pub dataset_sha256: Option<String>,
    pub code_commit: Option<String>,
    pub metrics: serde_json::Value,
    /// When the coordinator first knew of it (queued or first registered).
    pub first_seen_ms: i64,
    #[serde(default = "external")]
    pub status: RunStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RunKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Trainer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub datasets: Vec<RunDataset>,
    /// The request's other settings (holdout share, time limit).
    #[serde(default)]
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The model version it produced, once registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    #[serde(default)]
    pub gate: Gate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
}

fn external() -> RunStatus {
    RunStatus::External
}

impl Run {
    /// How long it ran (so far, when `now_ms` is given for a running one).
    pub fn duration_ms(&self, now_ms: i64) -> Option<i64> {
        let start = self.started_at_ms?;
        Some(self.finished_at_ms.unwrap_or(now_ms) - start)
    }
}

/// `POST /v1/runs/claim` (a worker): the oldest queued run, now the worker's;
/// `204 No Content` when there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimRequest {
    pub worker: String,
}

/// `POST /v1/runs/{id}/finish` (the worker holding it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub worker: String,
    /// `succeeded` or `failed`.
    pub status: RunStatus,
    #[serde(default)]
    pub metrics: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// What ran, e.g. `builtin:logistic wasmops 0.1.0` or the command with
    /// its script's sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The gate's verdict, when it ran (a failed one emits `ValidationFailed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
}

/// `POST /v1/runs/{id}/heartbeat` and `…/logs` (the worker holding it): the
/// lease is renewed; `lines` are appended to the run's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunProgress {
    pub worker: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
}
