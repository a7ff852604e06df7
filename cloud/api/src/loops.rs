//! A model's closed loop: what retrains it, on which data, what its
//! candidates must show, and how a passed one is released
//! (`PUT /v1/models/{name}/loop`, written as TOML by `wasmops loop set`).
//!
//! ```toml
//! trainer = "builtin:logistic"         # or "python3 train.py --data {data} --out {out}"
//! dataset = "iris"                     # newest version; or [from_production]
//!                                      #   since = "24h", min_rows = 100, fresh = "30s"
//! holdout = "iris-holdout"             # or a seeded share of the data
//! [triggers]
//! on = ["PerformanceDegraded", "DataDriftDetected"]
//! new_labels = 500                     # after this many new outcomes
//! schedule = "24h"
//! cooldown = "1h"
//! [gate]
//! margin = 0.01
//! [release]
//! approval = "auto"                    # or "manual": stop for `wasmops loop approve`
//! rollout = { selector = { fleet = "eu" }, waves = [10, 50, 100] }
//! ```

use serde::{Deserialize, Serialize};

use crate::Gate;

/// The events a loop may retrain on. `DataQualityAlert` is not one: a
/// broken sensor is fixed, not learnt.
pub const LOOP_EVENTS: [&str; 3] = [
    "DataDriftDetected",
    "PerformanceDegraded",
    "PredictionDriftDetected",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSettings {
    /// `builtin:logistic`, `builtin:linear`, or a command (with `{out}`).
    pub trainer: String,
    /// Built-in trainer settings.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    /// The training dataset (its newest version at trigger time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Or fresh production rows with their outcomes, stored first as a
    /// version of dataset `{model}-production`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_production: Option<FromProductionSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_share: Option<f64>,
    /// The trainer's time limit (`10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<String>,
    #[serde(default)]
    pub triggers: Triggers,
    #[serde(default)]
    pub gate: Gate,
    #[serde(default)]
    pub release: Release,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FromProductionSettings {
    /// How far back (`24h`).
    #[serde(default = "day")]
    pub since: String,
    /// Fewer labelled rows than this and no run starts.
    #[serde(default = "hundred")]
    pub min_rows: u64,
    /// After an automatic trigger, wait this long (`30s`) and train on the
    /// rows that arrived since the trigger only: the world after the change,
    /// not a mix of before and after. (By hand: `since`, at once.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fresh: Option<String>,
}

fn day() -> String {
    "24h".into()
}

fn hundred() -> u64 {
    100
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Monitoring events that start a run ([`LOOP_EVENTS`]).
    #[serde(default)]
    pub on: Vec<String>,
    /// Start a run once this many outcomes arrived since the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_labels: Option<u64>,
    /// Start a run this long after the last one (`24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// No automatic run sooner than this after the last (`1h`; by hand is
    /// always allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// `auto`: a passed candidate is rolled out and promoted unattended;
    /// `manual` (default): it waits for `wasmops loop approve RUN`
    /// (`ApprovalRequired`).
    #[serde(default = "manual")]
    pub approval: String,
    /// The alias promotion moves.
    #[serde(default = "production")]
    pub alias: String,
    /// The rollout before promotion (a `RolloutRequest` without model and
    /// version: selector, strategy, waves, gates, probe, …); none: the alias
    /// moves at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<serde_json::Value>,
}

impl Default for Release {
    fn default() -> Release {
        Release {
            approval: manual(),
            alias: production(),
            rollout: None,
        }
    }
}

fn manual() -> String {
    "manual".into()
}

fn production() -> String {
    "production".into()
}

/// Where a passed candidate is on its way to the alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub run: String,
    pub model: String,
    pub version: String,
    /// `awaiting_approval`, `approved`, `rolling_out`, `promoted`, `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub updated_at_ms: i64,
}

/// `GET /v1/models/{name}/loop`: the settings and the loop's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopView {
    pub model: String,
    pub settings: LoopSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trigger: Option<String>,
    #[serde(default)]
    pub promotions: Vec<Promotion>,
}
