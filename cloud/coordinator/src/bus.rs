//! Publishing a device's desired state: retained on
//! `wasmops/v1/devices/{id}/desired`, so a device that is offline now gets it
//! when it connects. Deployments and rollouts both publish through here.

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
    bus.publish(topics::desired(device), QoS::AtLeastOnce, true, payload)
        .await
        .map_err(|e| {
            CoordinatorError::Bus(format!(
                "cannot publish to {}: {e}",
                topics::desired(device)
            ))
        })
}
