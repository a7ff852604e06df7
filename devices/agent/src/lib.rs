//! The device agent: keeps serving predictions from the active model while it
//! installs what the coordinator asks for, and reports how its models do.
//!
//! Install path (each step reported on the status topic): download (resumable,
//! size-capped, sha256) → trust policy (signature, delegation, claims) →
//! rollback check → compile and link → health probe (a prediction on the
//! deployment's stored sample, or a synthetic one) → then, by mode:
//! - `active`: atomic switch of the active slot (previous kept for rollback);
//! - `staged`: kept loaded beside the active model, switched by a later
//!   `active` message for the same sha at once (blue-green);
//! - `shadow`: run beside the active model on the same inputs; only agreement
//!   and latency are reported, the application's answers come from the active one.
//!
//! A `provisional` install does not raise the rollback floor: a canary can
//! still be rolled back to the version before it; the coordinator commits the
//! floor (a non-provisional message for the same sha) when the rollout succeeds.
//! Any failure leaves the running model untouched.
//!
//! Only what the coordinator signed steers the device ([`control`]: desired
//! states with a growing counter, telemetry acks).
//!
//! Modules: [`config`] (`agent.toml`, credentials), [`agent`] (the slots, the
//! install path, predictions), [`session`] (the MQTT session: desired state in,
//! status and telemetry out, over [`presence`]), `api` (the local HTTP API),
//! [`telemetry`] (windows and the on-disk outbox), [`store`] and [`download`]
//! (content-addressed components, fetched once). The wire types are
//! `wasmops_protocol`'s.

pub mod agent;
mod api;
pub mod config;
pub mod control;
pub mod download;
pub mod presence;
pub mod session;
pub mod store;
pub mod telemetry;
pub mod trust;

use std::sync::Arc;

use anyhow::{Context, Result};

pub use agent::{Agent, Served};
pub use config::{AgentConfig, TrustConfig};
pub use session::{Running, start};

/// Runs one agent until `shutdown` resolves: MQTT (see [`start`]) and the local
/// prediction endpoint.
pub async fn run(
    mut config: AgentConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // The CA read once; the device's identity on top of it twice, since the
    // enrolment may give this device its certificate.
    let base = wasmops_tls::ClientTls::from_file(config.ca_cert.as_deref())?;
    let http = config.identity(&base)?.http().build()?;
    config.ensure_credential(&http).await?;
    let agent = Arc::new(Agent::new(config.clone(), config.identity(&base)?)?);
    if agent.control.knows_key() {
        // In the background: an offline gateway serves at once, not after
        // the check's timeout.
        let checked = config.clone();
        tokio::spawn(async move { checked.check_credential(&http).await });
    } else if let Some(key) = config.check_credential(&http).await {
        // A device given a token rather than enrolled: trust on first use.
        agent.control.learn(&key, false)?;
    } else {
        tracing::error!(
            "device {}: no control key known, so no desired state can be trusted; \
             enrol, or set control_key in agent.toml",
            config.device_id
        );
    }
    // Before the restore: a revocation published while the device was off
    // applies to what it restores.
    if let Err(e) = trust::refresh(&agent, &agent.http()?).await {
        tracing::warn!("trust metadata not refreshed at start: {e:#}");
    }
    if let Err(e) = agent.restore() {
        tracing::error!("could not restore the active model: {e:#}");
    }
    match agent.preinstall() {
        Ok(Some(info)) => tracing::info!(
            "device {}: serving the preinstalled {} {}",
            config.device_id,
            info.model,
            info.version
        ),
        Ok(None) => {}
        Err(e) => tracing::error!("{e:#}"),
    }
    let running = start(agent.clone())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    println!(
        "wasmops agent {} serving predictions on http://{}",
        config.device_id,
        listener.local_addr()?
    );
    axum::serve(listener, api::local_api(agent))
        .with_graceful_shutdown(shutdown)
        .await?;
    running.stop().await;
    Ok(())
}
