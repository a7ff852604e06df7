//! The `devices` table: every device that has connected, its presence
//! (online/offline, labels, last seen) and the model it last said it runs; and
//! how deployments and rollouts pick their targets from it.

use std::collections::BTreeMap;

use wasmops_api::Device;
use wasmops_protocol::device::Status;
use wasmops_protocol::presence::{PresenceMessage, State};
use wasmops_protocol::topics;

use crate::Coordinator;
use crate::error::CoordinatorError;

/// The device a `wasmops/v1/devices/{id}/…` message is from, if its id is
/// valid and enrolled: messages from anyone else are refused.
pub async fn enrolled_sender<'t>(c: &Coordinator, topic: &'t str) -> anyhow::Result<&'t str> {
    let device = topics::device_of(topic)
        .filter(|d| topics::valid_device_id(d))
        .ok_or_else(|| anyhow::anyhow!("no valid device id in the topic"))?;
    if !c.known.contains(c, device).await? {
        anyhow::bail!("device `{device}` is not enrolled: rejected");
    }
    Ok(device)
}

pub async fn record_presence(c: &Coordinator, topic: &str, payload: &[u8]) -> anyhow::Result<()> {
    if payload.is_empty() {
        // An empty retained message clears the topic; nothing to record.
        return Ok(());
    }
    let device = enrolled_sender(c, topic).await?;
    let msg: PresenceMessage = serde_json::from_slice(payload)?;
    let now = crate::now_ms();
    let state = match msg.state {
        State::Online => "online",
        State::Offline => "offline",
    };
    if msg.state == State::Online {
        sqlx::query(
            "INSERT INTO devices (id, state, labels, last_seen, first_seen) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, labels = excluded.labels, last_seen = excluded.last_seen",
        )
        .bind(device)
        .bind(state)
        .bind(serde_json::to_string(&msg.labels)?)
        .bind(now)
        .execute(&c.db.pool)
        .await?;
    } else {
        // A Last Will carries no labels: keep the ones the device announced.
        sqlx::query(
            "INSERT INTO devices (id, state, labels, last_seen, first_seen) VALUES ($1, $2, '{}', $3, $3)
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, last_seen = excluded.last_seen",
        )
        .bind(device)
        .bind(state)
        .bind(now)
        .execute(&c.db.pool)
        .await?;
    }
    if msg.state == State::Offline {
        crate::events::emit(
            c,
            "DeviceOffline",
            device.to_string(),
            serde_json::json!({}),
        );
    }
    tracing::info!("device {device} is {state}");
    Ok(())
}

/// What the device said it runs now (after any install status report).
pub async fn record_active(c: &Coordinator, device: &str, s: &Status) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE devices SET active_model = $1, active_version = $2, last_status = $3 WHERE id = $4",
    )
    .bind(s.active.as_ref().map(|a| a.model.clone()))
    .bind(s.active.as_ref().map(|a| a.version.clone()))
    // The checked report, re-serialised: not the device's raw bytes.
    .bind(serde_json::to_string(s).expect("a status serialises"))
    .bind(device)
    .execute(&c.db.pool)
    .await?;
    Ok(())
}

/// The devices named, or those whose labels match every `selector` entry.
pub fn select_targets(
    known: &[Device],
    devices: &[String],
    selector: &BTreeMap<String, String>,
) -> Result<Vec<String>, CoordinatorError> {
    let targets: Vec<String> = if !devices.is_empty() {
        for d in devices {
            if !known.iter().any(|k| &k.id == d) {
                return Err(CoordinatorError::NotFound(format!(
                    "no device `{d}` has ever connected"
                )));
            }
        }
        devices.to_vec()
    } else if !selector.is_empty() {
        known
            .iter()
            .filter(|d| selector.iter().all(|(k, v)| d.labels.get(k) == Some(v)))
            .map(|d| d.id.clone())
            .collect()
    } else {
        return Err(CoordinatorError::BadRequest(
            "name the devices or give a label selector".into(),
        ));
    };
    if targets.is_empty() {
        return Err(CoordinatorError::BadRequest(format!(
            "no device matches the selector {selector:?}"
        )));
    }
    Ok(targets)
}

type DeviceRow = (
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Every device that has ever connected, by id.
pub async fn list(c: &Coordinator) -> sqlx::Result<Vec<Device>> {
    let rows: Vec<DeviceRow> =
        sqlx::query_as("SELECT id, state, labels, last_seen, first_seen, active_model, active_version, last_status FROM devices ORDER BY id").fetch_all(&c.db.read).await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                state,
                labels,
                last_seen_ms,
                first_seen_ms,
                active_model,
                active_version,
                last_status,
            )| Device {
                id,
                state,
                labels: serde_json::from_str(&labels).unwrap_or_default(),
                last_seen_ms,
                first_seen_ms,
                active_model,
                active_version,
                last_status: last_status.and_then(|s| serde_json::from_str(&s).ok()),
                group: None,
            },
        )
        .collect())
}

/// The first of `targets` that an unfinished rollout (any state but succeeded
/// and aborted, so also one still finishing or aborting) holds, with that rollout's id and state. A second
/// deployment or rollout to such a device is refused: two writers of one
/// device's desired state would undo each other (and an abort would send the
/// device back to a version from before the other one).
pub async fn held_by_rollout(
    c: &Coordinator,
    targets: &[String],
) -> sqlx::Result<Option<(String, String, String)>> {
    Ok(held(c)
        .await?
        .into_iter()
        .find(|(d, _, _)| targets.contains(d)))
}

/// Every device an unfinished rollout holds: (device, rollout, state), oldest rollout first.
pub async fn held(c: &Coordinator) -> sqlx::Result<Vec<(String, String, String)>> {
    sqlx::query_as(
        "SELECT d.device, r.id, r.state FROM rollout_devices d JOIN rollouts r ON r.id = d.rollout
         WHERE r.state NOT IN ('succeeded', 'aborted') ORDER BY r.created_at",
    )
    .fetch_all(&c.db.read)
    .await
}

/// [`held_by_rollout`] as the 409 a caller sees.
pub async fn refuse_if_held(c: &Coordinator, targets: &[String]) -> Result<(), CoordinatorError> {
    match held_by_rollout(c, targets).await? {
        None => Ok(()),
        Some((device, rollout, state)) => Err(CoordinatorError::Conflict(format!(
            "device {device} is in rollout {rollout} ({state}); wait for it to end or abort it (wasmops rollout abort {rollout})"
        ))),
    }
}
