//! Publishing a device's desired state: retained on
//! `wasmops/v1/devices/{id}/desired`, so a device that is offline now gets it
//! when it connects. Deployments and rollouts both publish through here.
//!
//! The database is the record (`desired` table), the broker's retained
//! message a copy: every desired state is written before it is published, and
//! all of them are published again whenever the coordinator (re)connects to
//! the broker ([`republish_all`]). So a restarted embedded broker, or a
//! Mosquitto without persistence, loses nothing a device is waiting for.
//!
//! Both desired states and telemetry acks are signed with the control key
//! (a device refuses anything else, and an older counter than it has seen),
//! so another client of the broker, or the broker, cannot steer a device.

use rumqttc::QoS;
use wasmops_protocol::device::Desired;
use wasmops_protocol::signed::{self, DesiredState, Envelope};
use wasmops_protocol::telemetry::Ack;
use wasmops_protocol::topics;

use crate::Coordinator;
use crate::error::CoordinatorError;

/// Sets (or with `None` withdraws) `device`'s desired state: recorded with
/// the next counter and signed (see [`wasmops_protocol::signed`]), then
/// published retained.
pub async fn publish_desired(
    c: &Coordinator,
    device: &str,
    desired: Option<&Desired>,
) -> Result<(), CoordinatorError> {
    let bus = c.bus.get().ok_or_else(|| {
        CoordinatorError::Unavailable("the MQTT connection is not up yet; retry".into())
    })?;
    let payload = seal(c, device, desired).await?;
    // Over the limit the client would drop its connection, and with it every
    // queued message; probes travel as artifacts, so this is a bug guard.
    if payload.len() > wasmops_protocol::MAX_MESSAGE_BYTES {
        return Err(CoordinatorError::BadRequest(format!(
            "the desired state for {device} is {} bytes, over the MQTT limit of {}",
            payload.len(),
            wasmops_protocol::MAX_MESSAGE_BYTES
        )));
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

/// Records `desired` as `device`'s desired state with its next counter —
/// the previous one plus one, or the time in ms if that is more — and
/// returns it signed, as it travels.
async fn seal(
    c: &Coordinator,
    device: &str,
    desired: Option<&Desired>,
) -> Result<Vec<u8>, CoordinatorError> {
    let plain = serde_json::to_string(&desired).expect("desired serialises");
    let mut tx = c.db.pool.begin().await?;
    let (counter,): (i64,) = sqlx::query_as(
        "INSERT INTO desired (device, payload, updated_at, counter) VALUES ($1, $2, $3, $3)
         ON CONFLICT (device) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at,
           counter = CASE WHEN desired.counter >= excluded.counter THEN desired.counter + 1
                          ELSE excluded.counter END
         RETURNING counter",
    )
    .bind(device)
    .bind(&plain)
    .bind(crate::now_ms())
    .fetch_one(&mut *tx)
    .await?;
    let state = DesiredState {
        counter: counter as u64,
        desired: desired.cloned(),
    };
    let envelope = Envelope::seal(signed::DESIRED, device, &state, |m| c.control.sign(m)).to_vec();
    sqlx::query("UPDATE desired SET envelope = $1 WHERE device = $2")
        .bind(std::str::from_utf8(&envelope).expect("JSON is UTF-8"))
        .bind(device)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(envelope)
}

/// Publishes every recorded desired state again (retained), after the
/// coordinator's MQTT connection comes up; one recorded before desired
/// states were signed is signed now. Returns how many.
pub async fn republish_all(c: &Coordinator) -> Result<usize, CoordinatorError> {
    let bus = c
        .bus
        .get()
        .ok_or_else(|| CoordinatorError::Unavailable("the MQTT connection is not up yet".into()))?;
    let rows: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT device, payload, envelope FROM desired")
            .fetch_all(&c.db.pool)
            .await?;
    for (device, plain, envelope) in &rows {
        let payload = match envelope {
            Some(e) => e.clone().into_bytes(),
            None => {
                let desired: Option<Desired> = serde_json::from_str(plain).unwrap_or(None);
                seal(c, device, desired.as_ref()).await?
            }
        };
        bus.publish(topics::desired(device), QoS::AtLeastOnce, true, payload)
            .await
            .map_err(|e| CoordinatorError::Bus(format!("cannot republish desired states: {e}")))?;
    }
    Ok(rows.len())
}

/// Signs an ack of `seqs` for `device`, as it travels.
pub fn seal_ack(c: &Coordinator, device: &str, seqs: Vec<u64>) -> Vec<u8> {
    Envelope::seal(signed::ACK, device, &Ack { seqs }, |m| c.control.sign(m)).to_vec()
}
