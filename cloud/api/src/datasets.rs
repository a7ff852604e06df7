//! Datasets: immutable, content-addressed versions of training and holdout
//! data (CSV or the inputs JSON plus a label column), each with its profile
//! and where it came from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Largest label column domain listed in a dataset's summary (more classes
/// are counted under `…`).
pub const MAX_LISTED_CLASSES: usize = 100;

/// `GET /v1/datasets`: every dataset name known, stored versions and the ones
/// only named in a model's signed claims (lineage from elsewhere).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    pub id: String,
    pub sha256: String,
    pub first_seen_ms: i64,
    /// Model versions trained on it (`name@version`).
    pub used_by: Vec<String>,
    /// The stored version with these bytes (absent: only named in claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// How a dataset file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// A header row, one row per line, an empty cell is missing.
    Csv,
    /// `{"columns": {"name": [values, null, …]}}`.
    Json,
}

impl DatasetFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Csv => "csv",
            DatasetFormat::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<DatasetFormat> {
        match s {
            "csv" => Some(DatasetFormat::Csv),
            "json" => Some(DatasetFormat::Json),
            _ => None,
        }
    }
}

/// `POST /v1/datasets/{name}?label=COL[&format=csv|json][&file=NAME]`, the
/// file as the body: its query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetPush {
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<DatasetFormat>,
    /// The file's name on the pusher's machine (provenance only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One column of a stored dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetColumn {
    pub name: String,
    /// `numeric` or `categorical`.
    pub kind: String,
    pub missing: u64,
}

/// The label column's balance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LabelSummary {
    /// Rows per class (at most [`MAX_LISTED_CLASSES`] listed; the rest under `…`).
    Classes { counts: BTreeMap<String, u64> },
    /// A numeric target.
    Values { min: f64, max: f64, mean: f64 },
}

/// Where a dataset version came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Provenance {
    /// Pushed by a person or a program (`wasmops dataset push`).
    Upload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// Rows devices sampled in production, joined with the outcomes posted
    /// for them (`POST /v1/datasets/{name}/from-production`).
    Production {
        model: String,
        versions: Vec<String>,
        since_ms: i64,
        until_ms: i64,
        devices: u64,
        /// Sampled rows seen in the range, and how many had an outcome.
        sampled_rows: u64,
        labelled_rows: u64,
    },
}

/// A stored dataset version (answer of a push and of `GET
/// /v1/datasets/{name}/versions/{version}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersion {
    pub name: String,
    /// 1, 2, … per name, in the order pushed.
    pub version: u32,
    /// Of the stored file; also its address in the artifact store.
    pub sha256: String,
    pub size_bytes: u64,
    pub format: DatasetFormat,
    pub rows: u64,
    pub label: String,
    pub columns: Vec<DatasetColumn>,
    pub labels: LabelSummary,
    pub provenance: Provenance,
    pub created_at_ms: i64,
    pub created_by: String,
    /// Model versions whose claims name these bytes (`name@version`).
    #[serde(default)]
    pub used_by: Vec<String>,
    /// False when these bytes were already stored under this name: the push
    /// changed nothing and answers the existing version.
    #[serde(default = "yes")]
    pub created: bool,
}

fn yes() -> bool {
    true
}

/// `GET /v1/datasets/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetVersions {
    pub name: String,
    pub versions: Vec<DatasetVersion>,
}

/// `POST /v1/datasets/{name}/from-production`: sampled rows of `model` in a
/// time range that have a posted outcome become a dataset version, the
/// outcome as column `label`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FromProduction {
    pub model: String,
    /// One version's rows (default: every version's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Range of arrival times (default: the last 24 hours up to now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    /// The label column's name (default `label`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Fewer labelled rows than this is refused (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_rows: Option<u64>,
}
