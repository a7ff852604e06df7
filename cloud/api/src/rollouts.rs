//! Rollouts: a version over a label selector, canary (waves), blue-green or
//! shadow, with analysis gates on live telemetry. The defaults here are the
//! only ones: the CLI's flags and the coordinator both read them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Waves of a growing share of the targets, each gated.
    #[default]
    Canary,
    /// Stage everywhere, switch together, gate, switch back on failure.
    BlueGreen,
    /// Run beside the live model; gate agreement and latency; never answer.
    Shadow,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
            Strategy::Shadow => "shadow",
        }
    }
}

/// When a wave passes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    /// Errors / predictions of the candidate, at most.
    pub max_failure_rate: f64,
    /// Latency at `latency_quantile` of the candidate, at most (ms).
    pub max_latency_ms: Option<f64>,
    pub latency_quantile: f64,
    /// Predictions needed before a gate decides.
    pub min_predictions: u64,
    /// Seconds the wave runs on the candidate before the gate decides (shadow: how long it shadows).
    pub bake_s: u64,
    /// Seconds a wave may take to install and gather `min_predictions`.
    pub timeout_s: u64,
    /// Shadow: share of predictions that must match the live model.
    pub min_agreement: Option<f64>,
    /// The candidate's outputs against the previous version's over the
    /// wave (its training outputs when the previous one sent none): the drift
    /// coefficient (0–1) may be at most this.
    pub max_prediction_drift: Option<f64>,
}

impl Default for Gates {
    fn default() -> Self {
        Gates {
            max_failure_rate: 0.01,
            max_latency_ms: None,
            latency_quantile: 0.95,
            min_predictions: 10,
            bake_s: 10,
            timeout_s: 300,
            min_agreement: None,
            max_prediction_drift: None,
        }
    }
}

/// Canary waves unless asked otherwise: cumulative percentages of the targets.
pub const DEFAULT_WAVES: [u32; 3] = [10, 50, 100];

fn default_waves() -> Vec<u32> {
    DEFAULT_WAVES.to_vec()
}

/// `POST /v1/rollouts`; also kept as the rollout's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRequest {
    pub model: String,
    /// A version or an alias.
    pub version: String,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// Cumulative percentages of the targets per wave (canary), e.g. [10, 50, 100].
    #[serde(default = "default_waves")]
    pub waves: Vec<u32>,
    #[serde(default)]
    pub gates: Gates,
    /// Sample for the devices' health probe: `{"inputs":[…]}`.
    #[serde(default)]
    pub probe: Option<serde_json::Value>,
    /// Wait for `approve` after each wave but the last.
    #[serde(default)]
    pub manual_approval: bool,
    /// Devices per wave that may be offline without holding the wave up; they
    /// get the retained desired state (and any rollback) when they return.
    #[serde(default)]
    pub max_unavailable: u32,
    /// Devices per wave whose install may fail (health check, download)
    /// without aborting the rollout: they keep their version, are listed as
    /// failed, and get the candidate again if the rollout succeeds.
    #[serde(default)]
    pub max_failed: u32,
}

impl RolloutRequest {
    /// A canary of `model@version` with the default waves and gates.
    pub fn new(model: impl Into<String>, version: impl Into<String>) -> Self {
        RolloutRequest {
            model: model.into(),
            version: version.into(),
            selector: BTreeMap::new(),
            devices: vec![],
            strategy: Strategy::default(),
            waves: default_waves(),
            gates: Gates::default(),
            probe: None,
            manual_approval: false,
            max_unavailable: 0,
            max_failed: 0,
        }
    }
}

/// Where a rollout is as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RolloutState {
    Running,
    Paused,
    /// Between waves, waiting for `approve` (manual approval).
    WaitingApproval,
    /// Passed: committing the candidate on every device (or removing the
    /// shadow), device by device, resumed after a coordinator restart.
    Finishing,
    Succeeded,
    /// Being aborted: sending every started device back, device by device,
    /// resumed after a coordinator restart.
    Aborting,
    /// Stopped, and every started device sent back to its previous version.
    Aborted,
}

impl RolloutState {
    pub const ALL: [RolloutState; 7] = [
        RolloutState::Running,
        RolloutState::Paused,
        RolloutState::WaitingApproval,
        RolloutState::Finishing,
        RolloutState::Succeeded,
        RolloutState::Aborting,
        RolloutState::Aborted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::WaitingApproval => "waiting-approval",
            RolloutState::Finishing => "finishing",
            RolloutState::Succeeded => "succeeded",
            RolloutState::Aborting => "aborting",
            RolloutState::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<RolloutState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RolloutState::Succeeded | RolloutState::Aborted)
    }

    /// Still deciding: the states in which device reports move the rollout
    /// and an abort is accepted.
    pub fn is_deciding(self) -> bool {
        matches!(
            self,
            RolloutState::Running | RolloutState::Paused | RolloutState::WaitingApproval
        )
    }
}

/// Where the current wave is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WavePhase {
    /// Not asked to install yet.
    Pending,
    /// Installing the candidate (canary: active; shadow: as a shadow).
    Installing,
    /// Blue-green: staging the candidate beside the live model.
    Staging,
    /// Blue-green: all staged, switching to the candidate.
    Switching,
    /// Running on the candidate until the gate decides.
    Baking,
}

impl WavePhase {
    pub const ALL: [WavePhase; 5] = [
        WavePhase::Pending,
        WavePhase::Installing,
        WavePhase::Staging,
        WavePhase::Switching,
        WavePhase::Baking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WavePhase::Pending => "pending",
            WavePhase::Installing => "installing",
            WavePhase::Staging => "staging",
            WavePhase::Switching => "switching",
            WavePhase::Baking => "baking",
        }
    }

    pub fn parse(s: &str) -> Option<WavePhase> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// `POST /v1/rollouts/{id}/{action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutAction {
    /// Stop advancing (devices keep what they run).
    Pause,
    Resume,
    /// Let a rollout waiting for approval start its next wave.
    Approve,
    /// Stop and send every started device back to its previous version.
    Abort,
}

impl RolloutAction {
    pub const ALL: [RolloutAction; 4] = [
        RolloutAction::Pause,
        RolloutAction::Resume,
        RolloutAction::Approve,
        RolloutAction::Abort,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RolloutAction::Pause => "pause",
            RolloutAction::Resume => "resume",
            RolloutAction::Approve => "approve",
            RolloutAction::Abort => "abort",
        }
    }

    pub fn parse(s: &str) -> Option<RolloutAction> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// One line of `GET /v1/rollouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub id: String,
    pub model: String,
    pub version: String,
    pub strategy: Strategy,
    pub state: RolloutState,
    pub reason: Option<String>,
    /// The current wave, from 1.
    pub wave: u32,
    pub waves: u32,
    pub created_by: String,
    pub created_at_ms: i64,
}

/// One wave's devices by the state they reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveView {
    pub wave: u32,
    pub percent: Option<u32>,
    pub devices: usize,
    pub states: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedDevice {
    pub device: String,
    pub error: Option<String>,
}

/// The candidate's live telemetry since the rollout started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CandidateTelemetry {
    pub predictions: u64,
    pub errors: u64,
    pub failure_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Shadow only: share of predictions that matched the live model.
    pub agreement: Option<f64>,
    pub devices: usize,
}

/// `GET /v1/rollouts/{id}`: everything about one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub id: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub strategy: Strategy,
    pub state: RolloutState,
    pub reason: Option<String>,
    /// The current wave, from 1.
    pub wave: u32,
    pub waves: u32,
    pub phase: WavePhase,
    pub targets: usize,
    /// Targets running the candidate (active, or as a shadow).
    pub ready: usize,
    pub wave_detail: Vec<WaveView>,
    pub failed: Vec<FailedDevice>,
    pub spec: RolloutRequest,
    pub telemetry: CandidateTelemetry,
    pub created_by: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_travel_as_their_names() {
        for s in RolloutState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(RolloutState::parse(s.as_str()), Some(s));
        }
        for p in WavePhase::ALL {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
            assert_eq!(WavePhase::parse(p.as_str()), Some(p));
        }
        for a in RolloutAction::ALL {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
        for s in [Strategy::Canary, Strategy::BlueGreen, Strategy::Shadow] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
    }

    #[test]
    fn a_minimal_request_gets_the_defaults() {
        let r: RolloutRequest = serde_json::from_str(r#"{"model":"m","version":"2"}"#).unwrap();
        assert_eq!(r, RolloutRequest::new("m", "2"));
        assert!(
            serde_json::from_str::<RolloutRequest>(
                r#"{"model":"m","version":"2","gates":{"max_failure":1}}"#
            )
            .is_err(),
            "unknown gate fields are refused"
        );
    }
}
