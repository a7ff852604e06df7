//! The coordinator's one error type. Client errors (bad input, unknown names,
//! conflicts, refusals) carry a message for the caller and become 4xx; faults
//! of the coordinator's own parts (database, artifact store, broker, I/O)
//! become 5xx whose details stay in the log under an incident id
//! (the `http` module does the mapping).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CoordinatorError {
    /// The request is malformed or asks for something impossible (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such model, version, device, deployment or rollout (404).
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The caller's role does not allow it (403).
    #[error("{0}")]
    Forbidden(String),
    /// A component the trust policy refuses (422).
    #[error("refused by the trust policy: {0}")]
    Untrusted(#[from] wasmops_trust::TrustError),
    /// Not ready yet, e.g. the MQTT connection is still coming up (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("artifact store: {0}")]
    Store(#[from] object_store::Error),
    #[error("MQTT: {0}")]
    Bus(String),
    /// Anything else that is the coordinator's own fault.
    #[error("{0}")]
    Internal(String),
}

impl CoordinatorError {
    /// Whether the fault is the coordinator's (5xx), not the caller's.
    pub fn is_server_fault(&self) -> bool {
        matches!(
            self,
            CoordinatorError::Unavailable(_)
                | CoordinatorError::Db(_)
                | CoordinatorError::Store(_)
                | CoordinatorError::Bus(_)
                | CoordinatorError::Internal(_)
        )
    }
}

impl From<anyhow::Error> for CoordinatorError {
    fn from(e: anyhow::Error) -> Self {
        CoordinatorError::Internal(format!("{e:#}"))
    }
}

pub type Result<T, E = CoordinatorError> = std::result::Result<T, E>;
