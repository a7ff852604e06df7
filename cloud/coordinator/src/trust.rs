//! Trust metadata the coordinator serves to devices, and the check that
//! keeps revoked signers off them.
//!
//! The coordinator starts with the root and trust directory it was given
//! (`--root`, `--trust-dir`). An admin publishes newer metadata with
//! `PUT /v1/trust` (`wasmops trust push`): it is judged against the same
//! root anchor (the chain walks, nothing goes back), put in force for the
//! registry at once, kept in `data_dir/trust/` (so a restart keeps it: it
//! is applied over the given directory when it is not older), audited, and
//! announced as `TrustUpdated`. Devices fetch `GET /v1/trust` and apply it
//! themselves against their own anchor and state (`devices/agent/src/trust.rs`).
//!
//! A deployment or rollout of a version whose signer the metadata in force
//! no longer vouches for (revoked key or delegation, expired delegation)
//! is refused with 422 before any device is told.

use std::path::Path;

use wasmops_trust::{Applied, TrustDir, TrustError, TrustMetadata, TrustPolicy};

use crate::auth::Principal;
use crate::error::CoordinatorError;
use crate::{Coordinator, audit, events};

/// Where published metadata is kept, under the data directory.
pub const DIR: &str = "trust";

/// Applies what an earlier `PUT /v1/trust` kept in `data_dir/trust/` over
/// the configured metadata, unless it is older (the operator moved the
/// configured directory on since) or the policy has no root.
pub fn restore(policy: &TrustPolicy, data_dir: &Path) {
    let dir = TrustDir::new(data_dir.join(DIR));
    if policy.metadata().is_none() || !dir.path().is_dir() {
        return;
    }
    match dir.load().and_then(|m| policy.apply(m, None)) {
        Ok(a) => tracing::info!(
            "trust metadata from {}: root version {}, revocation list version {}",
            dir.path().display(),
            a.root_version,
            a.revocations_version
        ),
        Err(e) => tracing::warn!(
            "published trust metadata in {} not used: {e}",
            dir.path().display()
        ),
    }
}

/// The metadata in force.
pub fn current(c: &Coordinator) -> Result<TrustMetadata, CoordinatorError> {
    c.trust.metadata().ok_or_else(|| {
        CoordinatorError::NotFound(
            "this coordinator trusts plain release keys (--trust), not a root: there is no trust metadata to serve".into(),
        )
    })
}

/// Puts `new` in force (see the module docs).
pub async fn publish(
    c: &Coordinator,
    who: &Principal,
    new: TrustMetadata,
) -> Result<Applied, CoordinatorError> {
    current(c)?;
    let applied = c.trust.apply(new.clone(), None).map_err(refusal)?;
    if applied.changed {
        TrustDir::new(c.data_dir.join(DIR))
            .save_all(&new)
            .map_err(|e| CoordinatorError::Internal(format!("cannot keep trust metadata: {e}")))?;
    }
    let detail = serde_json::json!({
        "root_version": applied.root_version,
        "revocations_version": applied.revocations_version,
        "changed": applied.changed,
    });
    let mut tx = c.db.pool.begin().await?;
    audit::record(&mut tx, &who.name, "trust.publish", "trust", detail.clone()).await?;
    tx.commit().await?;
    if applied.changed {
        events::emit(c, "TrustUpdated", "trust", detail);
    }
    Ok(applied)
}

/// Going back is a conflict with what is in force; anything else is
/// metadata that does not hold.
fn refusal(e: TrustError) -> CoordinatorError {
    match e {
        TrustError::MetadataRollback { .. } => CoordinatorError::Conflict(e.to_string()),
        e => CoordinatorError::Untrusted(e),
    }
}

/// Refuses `sha256` (model `name` `version`) with 422 if the trust in
/// force would not let a device install it today.
pub async fn check_deployable(
    c: &Coordinator,
    name: &str,
    version: &str,
    sha256: &str,
) -> Result<(), CoordinatorError> {
    let bytes = c.artifacts.read(sha256).await?;
    let policy = c.trust.clone();
    let judged = tokio::task::spawn_blocking(move || {
        policy.check_accepted(&bytes, wasmops_trust::Timestamp::now())
    })
    .await
    .map_err(|e| CoordinatorError::Internal(format!("trust check: {e}")))?;
    judged.map(drop).map_err(|e| {
        tracing::info!("{name} {version} not deployed: {e}");
        CoordinatorError::Untrusted(e)
    })
}
