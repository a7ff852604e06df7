use serde::{Deserialize, Serialize};

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong: the problem with the request (4xx), or only
    /// "internal error" for a server fault (5xx).
    pub error: String,
    /// Server faults: the incident id under which the coordinator logged the details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
}
