//! Deployments: put a registered version on a set of devices (by id or label
//! selector) by publishing their desired state, and track what each reports.
//! Canary, blue-green and shadow rollouts ([`crate::rollouts`]) use the same topics.

use std::collections::BTreeMap;

use rumqttc::QoS;
use serde::{Deserialize, Serialize};
use wasmops_devices::agent::{Desired, Status};
use wasmops_devices::topics;

use crate::auth::Principal;
use crate::registry::{self, RegistryError};
use crate::{Coordinator, audit};

#[derive(Debug, Clone, Deserialize)]
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

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub device: String,
    pub state: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub id: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub targets: Vec<Target>,
}

pub async fn deploy(c: &Coordinator, who: &Principal, req: DeployRequest) -> Result<Deployment, RegistryError> {
    let v = registry::resolve(c, &req.model, &req.version).await?;
    let known = crate::mqtt::devices(c).await?;
    let targets = select_targets(&known, &req.devices, &req.selector)?;
    let bus = c.bus.get().ok_or_else(|| RegistryError::BadRequest("the MQTT connection is not up yet; retry".into()))?;
    let mut rand = [0u8; 6];
    getrandom::fill(&mut rand).map_err(|e| RegistryError::BadRequest(format!("no randomness: {e}")))?;
    let id = format!("dep-{}-{}", crate::now_ms(), hex::encode(rand));
    let desired = Desired {
        deployment: id.clone(),
        model: v.name.clone(),
        version: v.version.clone(),
        sha256: v.sha256.clone(),
        size_bytes: v.size_bytes as u64,
        probe: req.probe.clone(),
        mode: Default::default(),
        provisional: false,
    };
    let payload = serde_json::to_vec(&desired).expect("desired serialises");

    let mut tx = c.db.pool.begin().await?;
    for d in &targets {
        sqlx::query("INSERT INTO deployments (id, device, model, version, sha256, state, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7)")
            .bind(&id)
            .bind(d)
            .bind(&v.name)
            .bind(&v.version)
            .bind(&v.sha256)
            .bind(&who.name)
            .bind(crate::now_ms())
            .execute(&mut *tx)
            .await?;
    }
    audit::record(&mut tx, &who.name, "deployment.create", &format!("{}@{}", v.name, v.version), serde_json::json!({"id": id, "devices": targets})).await?;
    tx.commit().await?;
    // Retained: a device that is offline now gets it when it connects.
    for d in &targets {
        bus.publish(topics::desired(d), QoS::AtLeastOnce, true, payload.clone()).await.map_err(|e| RegistryError::BadRequest(format!("cannot publish to MQTT: {e}")))?;
    }
    crate::events::emit(c, "DeploymentStarted", id.clone(), serde_json::json!({"model": v.name, "version": v.version, "devices": targets, "by": who.name}));
    get(c, &id).await
}

/// The devices named, or those whose labels match every `selector` entry.
pub fn select_targets(known: &[crate::mqtt::Device], devices: &[String], selector: &BTreeMap<String, String>) -> Result<Vec<String>, RegistryError> {
    let targets: Vec<String> = if !devices.is_empty() {
        for d in devices {
            if !known.iter().any(|k| &k.id == d) {
                return Err(RegistryError::NotFound(format!("no device `{d}` has ever connected")));
            }
        }
        devices.to_vec()
    } else if !selector.is_empty() {
        known.iter().filter(|d| selector.iter().all(|(k, v)| d.labels.get(k) == Some(v))).map(|d| d.id.clone()).collect()
    } else {
        return Err(RegistryError::BadRequest("name the devices or give a label selector".into()));
    };
    if targets.is_empty() {
        return Err(RegistryError::BadRequest(format!("no device matches the selector {selector:?}")));
    }
    Ok(targets)
}

pub async fn get(c: &Coordinator, id: &str) -> Result<Deployment, RegistryError> {
    let rows: Vec<(String, String, String, String, String, Option<String>)> =
        sqlx::query_as("SELECT device, model, version, sha256, state, error FROM deployments WHERE id = $1 ORDER BY device").bind(id).fetch_all(&c.db.pool).await?;
    let first = rows.first().ok_or_else(|| RegistryError::NotFound(format!("no deployment `{id}`")))?;
    Ok(Deployment {
        id: id.to_string(),
        model: first.1.clone(),
        version: first.2.clone(),
        sha256: first.3.clone(),
        targets: rows.iter().map(|r| Target { device: r.0.clone(), state: r.4.clone(), error: r.5.clone() }).collect(),
    })
}

/// A device's status report: the deployment's row and the device's active model.
pub async fn record_status(c: &Coordinator, topic: &str, payload: &[u8]) -> anyhow::Result<()> {
    if payload.is_empty() {
        return Ok(());
    }
    let device = topics::device_of(topic).filter(|d| topics::valid_device_id(d)).ok_or_else(|| anyhow::anyhow!("no valid device id in the topic"))?;
    if !c.known.contains(c, device).await? {
        anyhow::bail!("device `{device}` is not enrolled: rejected");
    }
    let s: Status = serde_json::from_slice(payload)?;
    let state = serde_json::to_value(s.state)?.as_str().unwrap_or_default().to_string();
    let now = crate::now_ms();
    // Only a row that changes counts: resent (retained) reports are no news.
    let changed = if let Some(rollout) = s.deployment.as_deref().filter(|d| d.starts_with("ro-")) {
        crate::rollouts::record_status(c, rollout, device, &state, s.version.as_deref(), s.error.as_deref()).await?
    } else if let Some(dep) = &s.deployment {
        sqlx::query("UPDATE deployments SET state = $1, error = $2, updated_at = $3 WHERE id = $4 AND device = $5 AND state <> $1")
            .bind(&state)
            .bind(s.error.clone())
            .bind(now)
            .bind(dep)
            .bind(device)
            .execute(&c.db.pool)
            .await?
            .rows_affected()
            > 0
    } else {
        false
    };
    if changed && s.state == wasmops_devices::agent::InstallState::Active {
        if let Some(a) = &s.active {
            crate::events::emit(c, "ModelDeployed", device.to_string(), serde_json::json!({"model": a.model, "version": a.version, "deployment": s.deployment}));
        }
    }
    sqlx::query("UPDATE devices SET active_model = $1, active_version = $2, last_status = $3 WHERE id = $4")
        .bind(s.active.as_ref().map(|a| a.model.clone()))
        .bind(s.active.as_ref().map(|a| a.version.clone()))
        .bind(String::from_utf8_lossy(payload).into_owned())
        .bind(device)
        .execute(&c.db.pool)
        .await?;
    Ok(())
}
