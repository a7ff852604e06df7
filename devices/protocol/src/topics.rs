//! The MQTT topic layout (version 1). Device ids are single topic levels.
//!
//! | topic | from | QoS, retained | payload |
//! |---|---|---|---|
//! | `wasmops/v1/devices/{id}/presence` | device (birth), broker (Last Will) | 1, retained | [`PresenceMessage`](crate::presence::PresenceMessage) |
//! | `wasmops/v1/devices/{id}/desired` | coordinator | 1, retained | [`Envelope`](crate::signed::Envelope) of a [`DesiredState`](crate::signed::DesiredState): the model version the device should run, signed, counted |
//! | `wasmops/v1/devices/{id}/status` | device | 1, retained | [`Status`](crate::device::Status): every install state change |
//! | `wasmops/v1/devices/{id}/telemetry` | device | 1 | [`Report`](crate::telemetry::Report): numbered, resent until acknowledged |
//! | `wasmops/v1/devices/{id}/telemetry/ack` | coordinator | 1 | [`Envelope`](crate::signed::Envelope) of an [`Ack`](crate::telemetry::Ack): sequence numbers stored, signed |
//! | `wasmops/v1/events/{kind}` | coordinator | 1 | fleet events (ModelRegistered, RolloutStarted, …) |

pub const PREFIX: &str = "wasmops/v1";

pub fn presence(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/presence")
}

pub fn desired(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/desired")
}

pub fn status(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/status")
}

pub fn telemetry(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/telemetry")
}

pub fn telemetry_ack(device: &str) -> String {
    format!("{PREFIX}/devices/{device}/telemetry/ack")
}

/// What the coordinator subscribes to for telemetry.
pub const ALL_TELEMETRY: &str = "wasmops/v1/devices/+/telemetry";

/// What the coordinator subscribes to for install status.
pub const ALL_STATUS: &str = "wasmops/v1/devices/+/status";

/// What the coordinator subscribes to for presence.
pub const ALL_PRESENCE: &str = "wasmops/v1/devices/+/presence";

/// The device id in a `wasmops/v1/devices/{id}/…` topic.
pub fn device_of(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(PREFIX)?.strip_prefix("/devices/")?;
    let id = rest.split('/').next()?;
    (!id.is_empty()).then_some(id)
}

/// Device ids become topic levels and database keys: keep them plain.
pub fn valid_device_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_round_trip() {
        assert_eq!(device_of(&presence("gw-7")), Some("gw-7"));
        assert_eq!(device_of("other/v1/devices/x/presence"), None);
        assert!(
            valid_device_id("gw-7.eu_1")
                && !valid_device_id("a/b")
                && !valid_device_id("+")
                && !valid_device_id("")
        );
    }
}
