//! Deployments: put a registered version on a set of devices (by id or label
//! selector) by publishing their desired state, and track what each reports.
//! Canary, blue-green and shadow rollouts (the `rollouts` module) use the same topics.

use wasmops_api::{DeployRequest, Deployment, Target};
use wasmops_protocol::device::{Desired, InstallState};

use crate::auth::Principal;
use crate::bus::publish_desired;
use crate::error::CoordinatorError;
use crate::{Coordinator, audit, devices, registry};

pub async fn deploy(
    c: &Coordinator,
    who: &Principal,
    req: DeployRequest,
) -> Result<Deployment, CoordinatorError> {
    let v = registry::resolve(c, &req.model, &req.version).await?;
    crate::trust::check_deployable(c, &v.name, &v.version, &v.sha256).await?;
    let known = devices::list(c).await?;
    let targets = devices::select_targets(&known, &req.devices, &req.selector)?;
    devices::refuse_if_held(c, &targets).await?;
    if c.bus.get().is_none() {
        return Err(CoordinatorError::Unavailable(
            "the MQTT connection is not up yet; retry".into(),
        ));
    }
    let probe_artifact = crate::artifacts::store_probe(c, req.probe.as_ref()).await?;
    let id = format!("dep-{}-{}", crate::now_ms(), crate::auth::random_hex(6)?);
    let desired = Desired {
        deployment: id.clone(),
        model: v.name.clone(),
        version: v.version.clone(),
        sha256: v.sha256.clone(),
        size_bytes: v.size_bytes as u64,
        probe: None,
        probe_artifact,
        mode: Default::default(),
        provisional: false,
    };

    let mut tx = c.db.pool.begin().await?;
    for d in &targets {
        // An earlier deployment still under way on this device is superseded,
        // and says by what (its followers stop waiting for it).
        sqlx::query("UPDATE deployments SET state = 'superseded', error = $1, updated_at = $2 WHERE device = $3 AND state NOT IN ('active', 'failed', 'superseded')")
            .bind(format!("superseded by deployment {id}"))
            .bind(crate::now_ms())
            .bind(d)
            .execute(&mut *tx)
            .await?;
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
    audit::record(
        &mut tx,
        &who.name,
        "deployment.create",
        &format!("{}@{}", v.name, v.version),
        serde_json::json!({"id": id, "devices": targets}),
    )
    .await?;
    tx.commit().await?;
    // Devices that match the selector later get the same (before the
    // devices' own states are set, so theirs are not older than the group's).
    if req.devices.is_empty() {
        crate::groups::set(c, &req.selector, &desired).await?;
    }
    // Retained: a device that is offline now gets it when it connects.
    for d in &targets {
        publish_desired(c, d, Some(&desired)).await?;
    }
    crate::events::emit(
        c,
        "DeploymentStarted",
        id.clone(),
        serde_json::json!({"model": v.name, "version": v.version, "devices": targets, "by": who.name}),
    );
    get(c, &id).await
}

pub async fn get(c: &Coordinator, id: &str) -> Result<Deployment, CoordinatorError> {
    let rows: Vec<(String, String, String, String, String, Option<String>)> =
        sqlx::query_as("SELECT device, model, version, sha256, state, error FROM deployments WHERE id = $1 ORDER BY device").bind(id).fetch_all(&c.db.pool).await?;
    let first = rows
        .first()
        .ok_or_else(|| CoordinatorError::NotFound(format!("no deployment `{id}`")))?;
    Ok(Deployment {
        id: id.to_string(),
        model: first.1.clone(),
        version: first.2.clone(),
        sha256: first.3.clone(),
        targets: rows
            .iter()
            .map(|r| Target {
                device: r.0.clone(),
                state: r.4.clone(),
                error: r.5.clone(),
            })
            .collect(),
    })
}

/// A device's status report for deployment `id`; returns whether its row changed.
pub async fn record_status(
    c: &Coordinator,
    id: &str,
    device: &str,
    state: InstallState,
    error: Option<&str>,
) -> sqlx::Result<bool> {
    // A superseded row stays so: a late report about the old deployment is no news.
    let r = sqlx::query("UPDATE deployments SET state = $1, error = $2, updated_at = $3 WHERE id = $4 AND device = $5 AND state <> $1 AND state <> 'superseded'")
        .bind(state.as_str())
        .bind(error)
        .bind(crate::now_ms())
        .bind(id)
        .bind(device)
        .execute(&c.db.pool)
        .await?;
    Ok(r.rows_affected() > 0)
}
