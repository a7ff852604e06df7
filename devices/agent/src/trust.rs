//! Trust metadata from the coordinator, applied while the agent runs.
//!
//! Under a root (`[trust] root` + `trust_dir` in agent.toml) the agent
//! fetches `GET /v1/trust` at start and every `trust_refresh_seconds`, and
//! applies it with [`wasmops_trust::TrustPolicy::apply`]: the root chain must
//! walk from the device's own anchor (or the root it walked to before), and
//! neither the root nor the revocation list may go back — against what is in
//! force and against the trust state on disk, so an old list served again
//! (a replay, a coordinator restored from backup) is refused. Accepted
//! metadata is in force at once for every install, kept in the trust
//! directory for the next start, and the installed models are judged again:
//! one signed by a key revoked since stops serving ([`crate::Agent::rejudge`]).
//!
//! The coordinator is not trusted here: whatever it serves must be signed by
//! the device's root.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmops_trust::{Applied, TrustMetadata};

use crate::agent::Agent;

/// Largest answer read: a root chain, a few hundred delegations and a
/// revocation list are far smaller.
const MAX_TRUST_BYTES: usize = 4 << 20;

/// Fetches the coordinator's trust metadata and applies it. `Ok(None)`: the
/// device trusts plain keys, or nothing changed.
pub async fn refresh(agent: &Arc<Agent>, http: &reqwest::Client) -> Result<Option<Applied>> {
    if !agent.trusts_a_root() {
        return Ok(None);
    }
    let url = format!(
        "{}/v1/trust",
        agent.config.coordinator.trim_end_matches('/')
    );
    let mut resp = http
        .get(&url)
        .bearer_auth(agent.config.credential())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if resp.status() == reqwest::StatusCode::NOT_FOUND {
        // A coordinator trusting plain keys has no metadata to serve: the
        // device keeps the trust directory it was given.
        tracing::debug!("{url}: no trust metadata served");
        return Ok(None);
    }
    if !resp.status().is_success() {
        bail!("{url} answered {}", resp.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_TRUST_BYTES {
            bail!("the trust metadata at {url} is over {MAX_TRUST_BYTES} bytes");
        }
    }
    let metadata: TrustMetadata =
        serde_json::from_slice(&body).with_context(|| format!("{url} is not trust metadata"))?;
    let me = agent.clone();
    let applied = tokio::task::spawn_blocking(move || me.apply_trust(metadata))
        .await?
        .context("the coordinator's trust metadata was refused")?;
    if applied.changed {
        tracing::info!(
            "{}: trust metadata in force: root version {}, revocation list version {}",
            agent.id(),
            applied.root_version,
            applied.revocations_version
        );
    }
    Ok(applied.changed.then_some(applied))
}
