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
