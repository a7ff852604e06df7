//! The model registry: versions with their signed claims and lineage, aliases, tags.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub name: String,
    pub version: String,
    pub sequence: i64,
    /// Of the whole component file, as stored and downloaded.
    pub sha256: String,
    pub size_bytes: i64,
    /// Key id of the release key that signed it.
    pub signer: String,
    pub delegation: Option<String>,
    /// The component's signed claims (lineage, metrics, capabilities, feature bins).
    pub claims: serde_json::Value,
    pub registered_at_ms: i64,
    pub registered_by: String,
    pub aliases: Vec<String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub versions: i64,
    pub latest_version: Option<String>,
    /// Alias → version.
    pub aliases: BTreeMap<String, String>,
}

/// `GET /v1/models/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersions {
    pub name: String,
    pub versions: Vec<Version>,
}

/// Outcome of a registration: new, or the same bytes already there (idempotent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub created: bool,
    pub version: Version,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRequest {
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagRequest {
    pub value: String,
}
