//! Trust metadata distribution: `GET /v1/trust` answers the root chain,
//! delegations and revocation list in force (`wasmops_trust::TrustMetadata`,
//! kept opaque here: devices and the CLI parse it with the trust crate);
//! `PUT /v1/trust` (admin) publishes newer metadata and answers
//! [`TrustPublished`].

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPublished {
    /// The root version in force.
    pub root_version: u64,
    /// The revocation list's version (0: none).
    pub revocations_version: u64,
    /// Whether it differed from what was in force (devices are told then).
    pub changed: bool,
}
