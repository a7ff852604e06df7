//! The trust chain a device applies before it runs a model component.
//!
//! Anchors: TUF/Uptane for the metadata (a root key that delegates, rotates one
//! version at a time and revokes), wasmCloud for claims signed with the code,
//! wasmsign2 for the signature itself ([`wasmops_sign`]).
//!
//! * [`claims`]: name, semver, sequence, content hashes, lineage, metrics and
//!   capabilities in a `wasmops-claims` custom section, covered by the signature;
//! * [`metadata`]: signed root, delegation and revocation documents;
//! * [`store`]: those documents as files in a trust directory;
//! * [`policy`]: the decision, in a fixed order, with one error per reason;
//! * [`state`]: what a device has accepted, for rollback protection;
//! * [`portable`]: a policy as one JSON document, for the browser verifier.

pub mod capabilities;
pub mod claims;
pub mod metadata;
pub mod ops;
pub mod policy;
pub mod portable;
pub mod state;
pub mod store;
mod time;

pub use claims::{CLAIMS_SECTION, Claims, Lineage};
pub use metadata::{Delegation, Revocations, Root, Signed};
pub use policy::{Accepted, Applied, KeySource, TrustPolicy};
pub use portable::PortableTrust;
pub use state::StateDir;
pub use store::{TrustDir, TrustMetadata};
pub use time::Timestamp;

use thiserror::Error;
use wasmops_sign::SignError;

/// Why a component, or a piece of trust metadata, was refused.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error(transparent)]
    Signature(#[from] SignError),
    #[error(
        "the component carries no claims (`{CLAIMS_SECTION}` section); build it with wasmops build"
    )]
    NoClaims,
    #[error("malformed claims: {0}")]
    MalformedClaims(String),
    #[error("the claims of `{name}` expired at {expired}")]
    ClaimsExpired { name: String, expired: Timestamp },
    #[error("malformed trust metadata {what}: {reason}")]
    MalformedMetadata { what: String, reason: String },
    #[error("{what} is not signed by enough root keys ({valid} valid of {threshold} needed)")]
    MetadataSignature {
        what: String,
        valid: usize,
        threshold: usize,
    },
    #[error("root metadata chain broken: {0}")]
    RootChain(String),
    #[error("the root metadata (version {version}) expired at {expired}; fetch a newer root")]
    RootExpired { version: u64, expired: Timestamp },
    #[error(
        "{what} version {got} is older than version {have} already trusted here (metadata rollback)"
    )]
    MetadataRollback { what: String, have: u64, got: u64 },
    #[error("the revocation list expired at {0}; fetch a fresh one")]
    RevocationsExpired(Timestamp),
    #[error("signed by key {key_id}, which no valid root delegation names")]
    NoDelegation { key_id: String },
    #[error("the delegation `{name}` for key {key_id} expired at {expired}")]
    DelegationExpired {
        name: String,
        key_id: String,
        expired: Timestamp,
    },
    #[error("key {key_id} is revoked{}", .reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    KeyRevoked {
        key_id: String,
        reason: Option<String>,
    },
    #[error("delegation `{0}` is revoked")]
    DelegationRevoked(String),
    #[error("delegation `{delegation}` may sign models {patterns:?}, not `{model}`")]
    OutOfScope {
        model: String,
        delegation: String,
        patterns: Vec<String>,
    },
    #[error(
        "rollback refused: `{name}` sequence {sequence} is lower than {highest}, already accepted on this host"
    )]
    Rollback {
        name: String,
        sequence: u64,
        highest: u64,
    },
    #[error(
        "the component requires capability `{capability}`, which this host does not grant (granted: {granted:?})"
    )]
    CapabilityDenied {
        capability: String,
        granted: Vec<String>,
    },
    #[error(
        "the component imports `{import}` (capability `{capability}`) but its claims do not declare it"
    )]
    UndeclaredImport { import: String, capability: String },
    #[error("state directory {path}: {reason}")]
    State { path: String, reason: String },
    #[error("{0}")]
    Io(String),
}

/// Hex SHA-256 of `bytes`, the form hashes take in claims.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so a
/// crash leaves either the old file or the new one, never a mix.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, None)
}

/// Like [`write_atomic`], with Unix permissions set before any byte is
/// written (0o600 for secrets). The one atomic writer every crate uses.
pub fn write_atomic_mode(
    path: &std::path::Path,
    bytes: &[u8],
    mode: Option<u32>,
) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    #[cfg(unix)]
    if let Some(mode) = mode {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename itself must reach the disk too.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
