//! Publishing a device's desired state: retained on
//! `wasmops/v1/devices/{id}/desired`, so a device that is offline now gets it
//! when it connects. Deployments and rollouts both publish through here.
//!
//! The database is the record (`desired` table), the broker's retained
//! message a copy: every desired state is written before it is published, and
//! all of them are published again whenever the coordinator (re)connects to
//! the broker ([`republish_all`]). So a restarted embedded broker, or a
//! Mosquitto without persistence, loses nothing a device is waiting for.

use rumqttc::QoS;
use wasmops_protocol::device::Desired;
use wasmops_protocol::topics;

use crate::Coordinator;
use crate::error::CoordinatorError;

/// Sets (or with `None` withdraws) `device`'s desired state.
pub async fn publish_desired(
    c: &Coordinator,
    device: &str,
    desired: Option<&Desired>,
) -> Result<(), CoordinatorError> {
    let bus = c.bus.get().ok_or_else(|| {
        CoordinatorError::Unavailable("the MQTT connection is not up yet; retry".into())
    })?;
    let payload = desired
        .map(|d| serde_json::to_vec(d).expect("desired serialises"))
        .unwrap_or_default();
    // Over the limit the client would drop its connection, and with it every
    // queued message; probes travel as artifacts, so this is a bug guard.
    if payload.len() > wasmops_protocol::MAX_MESSAGE_BYTES {
        return Err(CoordinatorError::BadRequest(format!(
            "the desired state for {device} is {} bytes, over the MQTT limit of {}",
            payload.len(),
            wasmops_protocol::MAX_MESSAGE_BYTES
        )));
    }
    if payload.is_empty() {
        sqlx::query("DELETE FROM desired WHERE device = $1")
            .bind(device)
            .execute(&c.db.pool)
            .await?;
    } else {
        sqlx::query(
            "INSERT INTO desired (device, payload, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (device) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
        )
        .bind(device)
        .bind(std::str::from_utf8(&payload).expect("JSON is UTF-8"))
        .bind(crate::now_ms())
        .execute(&c.db.pool)
        .await?;
    }
    bus.publish(topics::desired(device), QoS::AtLeastOnce, true, payload)
        .await
        .map_err(|e| {
            CoordinatorError::Bus(format!(
                "cannot publish to {}: {e}",
                topics::desired(device)
            ))
        })
}

/// Publishes every recorded desired state again (retained), after the
/// coordinator's MQTT connection comes up. Returns how many.
pub async fn republish_all(c: &Coordinator) -> Result<usize, CoordinatorError> {
    let bus = c
        .bus
        .get()
        .ok_or_else(|| CoordinatorError::Unavailable("the MQTT connection is not up yet".into()))?;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT device, payload FROM desired")
        .fetch_all(&c.db.pool)
        .await?;
    for (device, payload) in &rows {
        bus.publish(
            topics::desired(device),
            QoS::AtLeastOnce,
            true,
            payload.clone().into_bytes(),
        )
        .await
        .map_err(|e| CoordinatorError::Bus(format!("cannot republish desired states: {e}")))?;
    }
    Ok(rows.len())
}
