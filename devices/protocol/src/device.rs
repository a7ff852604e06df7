//! What the coordinator asks of a device ([`Desired`], retained on
//! `wasmops/v1/devices/{id}/desired`) and what the device answers ([`Status`],
//! retained on `…/status`) after every install state change.

use serde::{Deserialize, Serialize};

/// What to do with a version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Serve it.
    #[default]
    Active,
    /// Install and probe it, keep it ready beside the active model.
    Staged,
    /// Run it beside the active model and report agreement and latency.
    Shadow,
}

/// What the coordinator wants this device to run (retained on the desired topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// The deployment or rollout this belongs to.
    pub deployment: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// A stored sample for the health probe: `{"inputs":[…]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<serde_json::Value>,
    #[serde(default)]
    pub mode: Mode,
    /// Do not raise the rollback floor yet (canary in progress).
    #[serde(default)]
    pub provisional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallState {
    Downloading,
    Verifying,
    Probing,
    /// Installed and probed, waiting beside the active model (blue-green).
    Staged,
    /// Running as a shadow of the active model.
    Shadow,
    Active,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveInfo {
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub sequence: u64,
}

/// One install state change (retained on the status topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub deployment: Option<String>,
    pub state: InstallState,
    pub model: Option<String>,
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is serving predictions now.
    pub active: Option<ActiveInfo>,
    /// What runs as a shadow, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ActiveInfo>,
}

impl InstallState {
    pub const ALL: [InstallState; 7] = [
        InstallState::Downloading,
        InstallState::Verifying,
        InstallState::Probing,
        InstallState::Staged,
        InstallState::Shadow,
        InstallState::Active,
        InstallState::Failed,
    ];

    /// The state named `s` (as [`InstallState::as_str`] writes it).
    pub fn parse(s: &str) -> Option<InstallState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The state as it travels and is stored (`downloading`, …, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstallState::Downloading => "downloading",
            InstallState::Verifying => "verifying",
            InstallState::Probing => "probing",
            InstallState::Staged => "staged",
            InstallState::Shadow => "shadow",
            InstallState::Active => "active",
            InstallState::Failed => "failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_states_serialise_as_their_names() {
        for s in InstallState::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
            assert_eq!(InstallState::parse(s.as_str()), Some(s));
        }
    }
}
