//! Devices, deployments, credentials and the audit log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A device the coordinator has heard of (presence and status over MQTT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    /// `online` or `offline`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
    pub last_seen_ms: i64,
    pub first_seen_ms: i64,
    pub active_model: Option<String>,
    pub active_version: Option<String>,
    /// The device's last install status report.
    pub last_status: Option<serde_json::Value>,
    /// The version its group (the latest deployment to a selector it
    /// matches) wants, and whether it runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupTarget>,
}

/// A device's group and its desired version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupTarget {
    pub selector: BTreeMap<String, String>,
    pub model: String,
    pub version: String,
    /// The device runs this version.
    pub in_sync: bool,
}

/// `POST /v1/deployments`: a version (or alias) on devices named or selected by label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeployRequest {
    pub model: String,
    /// A version or an alias.
    pub version: String,
    #[serde(default)]
    pub devices: Vec<String>,
    /// Label selector: every label must match.
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    /// Sample for the devices' health probe: `{"inputs":[…]}`.
    #[serde(default)]
    pub probe: Option<serde_json::Value>,
}

/// One device of a deployment and the install state it last reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub device: String,
    /// `pending`, an install state (`downloading` … `active`, `failed`), or
    /// `superseded` (a later deployment to the device replaced this one).
    pub state: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub targets: Vec<Target>,
}

impl Deployment {
    /// Whether every target has reported `active` or `failed`, or was
    /// superseded by a later deployment.
    pub fn settled(&self) -> bool {
        self.targets
            .iter()
            .all(|t| matches!(t.state.as_str(), "active" | "failed" | "superseded"))
    }
}

/// Roles an API token can have, least to most powerful.
pub const ROLES: [&str; 6] = [
    "device",
    "viewer",
    "data-scientist",
    "operator",
    "admin",
    "worker",
];

/// `POST /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRequest {
    pub name: String,
    /// One of [`ROLES`].
    pub role: String,
    /// Seconds until it expires: [`DEFAULT_TOKEN_VALIDITY_S`] unless given
    /// (a `device` credential: never unless given), at most
    /// [`MAX_TOKEN_VALIDITY_S`].
    #[serde(default)]
    pub valid_for_s: Option<u64>,
}

/// API tokens expire after 90 days unless asked otherwise…
pub const DEFAULT_TOKEN_VALIDITY_S: u64 = 90 * 86_400;
/// …and after two years at most (rotate: create another, revoke the old).
pub const MAX_TOKEN_VALIDITY_S: u64 = 2 * 365 * 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCreated {
    pub name: String,
    pub role: String,
    /// Shown once.
    pub token: String,
    /// `None`: never (the first admin token and device credentials).
    #[serde(default)]
    pub expires_at_ms: Option<i64>,
}

/// A token as `GET /v1/tokens` lists it (never the secret or its hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub role: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked: bool,
}

/// `POST /v1/tokens/{name}/revoke`: how many live tokens of that name were revoked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokensRevoked {
    pub name: String,
    pub revoked: u64,
}

/// Seconds an enrolment token stays valid unless asked otherwise (one day)…
pub const DEFAULT_ENROLMENT_VALIDITY_S: u64 = 86_400;
/// …and at most (30 days): a leaked token is worth little for little long.
pub const MAX_ENROLMENT_VALIDITY_S: u64 = 30 * 86_400;
/// Enrolments a device id may make with one token, at most.
pub const MAX_USES_PER_DEVICE: u32 = 100;

fn default_validity() -> u64 {
    DEFAULT_ENROLMENT_VALIDITY_S
}

fn one() -> u32 {
    1
}

/// `POST /v1/enrolments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolmentRequest {
    /// A device id, or a pattern with `*` (any run of characters).
    pub devices: String,
    #[serde(default = "default_validity")]
    pub valid_for_s: u64,
    /// How often each device id may enrol with it (1: once).
    #[serde(default = "one")]
    pub uses_per_device: u32,
    /// Whether it may replace the credential of an id that is enrolled
    /// already (an operator's decision: the old credential is revoked).
    #[serde(default)]
    pub reenrol: bool,
}

impl EnrolmentRequest {
    /// For `devices`, with the defaults: a day, one use per id, no re-enrolment.
    pub fn new(devices: impl Into<String>) -> Self {
        EnrolmentRequest {
            devices: devices.into(),
            valid_for_s: DEFAULT_ENROLMENT_VALIDITY_S,
            uses_per_device: 1,
            reenrol: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrolment {
    pub devices: String,
    pub expires_at_ms: i64,
    /// Shown once.
    pub token: String,
    #[serde(default = "one")]
    pub uses_per_device: u32,
    #[serde(default)]
    pub reenrol: bool,
}

/// `POST /v1/enrol`, with the enrolment token as bearer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrolRequest {
    pub device: String,
    /// The device's own public key (hex of the raw uncompressed P-256
    /// point), made on the device: the coordinator's CA certifies it for
    /// MQTT client authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
}

/// A device's own credential: API token, and MQTT password with `mqtt_username`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub device: String,
    pub token: String,
    pub mqtt_username: String,
    /// The coordinator's control key (hex of the `.pub` file's bytes): the
    /// device accepts a desired state or ack only when signed by it.
    #[serde(default)]
    pub control_key: Option<String>,
    /// The certificate (PEM) for the request's `public_key`, when the
    /// coordinator runs its own CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: serde_json::Value,
}
