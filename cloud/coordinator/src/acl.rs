//! Who may do what on the fleet's MQTT topics, for any broker: the embedded
//! one asks [`allowed`] for every publish, subscription and last will (the
//! vendored rumqttd's topic ACL hook, `host/vendor/README.md`).
//!
//! | who (client id, username) | publish | subscribe |
//! |---|---|---|
//! | a device: `wasmops-device-{id}`, username `{id}`, its own credential | its own `presence` (also its will), `status`, `telemetry` | its own `desired`, `telemetry/ack` |
//! | the coordinator: username `wasmops-coordinator` | everything | everything |
//! | anyone else | nothing | nothing |
//!
//! People and programs watch events on the HTTP API (`GET /v1/events`), not
//! here: the embedded broker admits no API token. (An operator of an
//! external Mosquitto may add clients with the `wasmops-watcher` role that
//! `wasmops mosquitto-config` defines: the coordinator publishes events on
//! `wasmops/v1/events/{kind}` there too.)
//!
//! [`login_fits`] is the other half, checked at login: a device credential
//! logs in only under its own device id and client id, and nobody else may
//! take a `wasmops-device-…` client id (so a device's session cannot be taken
//! over by another client's connect).

use wasmops_protocol::topics;

/// The coordinator's own MQTT username.
pub const COORDINATOR_USER: &str = "wasmops-coordinator";

/// Client ids of this prefix belong to the device named by the rest.
pub const DEVICE_CLIENT_PREFIX: &str = "wasmops-device-";

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Publish,
    Subscribe,
    /// Leave a last will on it (a publish the broker makes for the client).
    Will,
}

/// Whom a connection acts for, from its client id and username (the login
/// check made sure they fit the credential, see [`login_fits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal<'a> {
    Coordinator,
    Device(&'a str),
    /// Nobody the embedded broker admits (refused at login already).
    Other,
}

impl<'a> Principal<'a> {
    pub fn of(client_id: &'a str, username: &'a str) -> Principal<'a> {
        if let Some(device) = client_id.strip_prefix(DEVICE_CLIENT_PREFIX) {
            Principal::Device(device)
        } else if username == COORDINATOR_USER {
            Principal::Coordinator
        } else {
            Principal::Other
        }
    }
}

/// Whether a login by a credential of this kind fits its client id and
/// username: a device's only as itself, anyone else's never under a
/// device's client id.
pub fn login_fits(client_id: &str, username: &str, device_credential: Option<&str>) -> bool {
    match (
        client_id.strip_prefix(DEVICE_CLIENT_PREFIX),
        device_credential,
    ) {
        (Some(id), Some(device)) => id == device && username == device,
        (None, None) => true,
        _ => false,
    }
}

/// Whether `principal` may do `access` on `topic` (a filter, for subscriptions).
pub fn allowed(principal: Principal, access: Access, topic: &str) -> bool {
    match principal {
        Principal::Coordinator => true,
        Principal::Device(d) => match access {
            Access::Publish => {
                topic == topics::presence(d)
                    || topic == topics::status(d)
                    || topic == topics::telemetry(d)
            }
            Access::Will => topic == topics::presence(d),
            Access::Subscribe => topic == topics::desired(d) || topic == topics::telemetry_ack(d),
        },
        Principal::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_speaks_only_for_itself_and_hears_only_its_own() {
        let me = Principal::of("wasmops-device-gw-1", "gw-1");
        assert_eq!(me, Principal::Device("gw-1"));
        for t in [topics::presence, topics::status, topics::telemetry] {
            assert!(allowed(me, Access::Publish, &t("gw-1")));
            assert!(!allowed(me, Access::Publish, &t("gw-2")), "{}", t("gw-2"));
        }
        for t in [topics::desired, topics::telemetry_ack] {
            assert!(!allowed(me, Access::Publish, &t("gw-1")), "{}", t("gw-1"));
            assert!(!allowed(me, Access::Publish, &t("gw-2")));
            assert!(allowed(me, Access::Subscribe, &t("gw-1")));
            assert!(!allowed(me, Access::Subscribe, &t("gw-2")));
        }
        assert!(allowed(me, Access::Will, &topics::presence("gw-1")));
        assert!(!allowed(me, Access::Will, &topics::presence("gw-2")));
        for filter in [
            "#",
            "wasmops/#",
            "wasmops/v1/devices/+/desired",
            "wasmops/v1/devices/gw-1/#",
            "wasmops/v1/events/#",
        ] {
            assert!(!allowed(me, Access::Subscribe, filter), "{filter}");
        }
        assert!(!allowed(
            me,
            Access::Publish,
            "wasmops/v1/events/ModelRegistered"
        ));
    }

    #[test]
    fn nobody_else_may_do_anything() {
        let w = Principal::of("demo-events-1", "ops");
        assert_eq!(w, Principal::Other);
        for filter in [
            "#",
            "wasmops/v1/events/#",
            "wasmops/v1/events/RolloutAborted",
        ] {
            assert!(!allowed(w, Access::Subscribe, filter), "{filter}");
        }
        assert!(!allowed(w, Access::Publish, "wasmops/v1/events/x"));
        assert!(!allowed(w, Access::Will, "wasmops/v1/events/x"));
        assert!(!allowed(w, Access::Publish, &topics::desired("gw-1")));
        let c = Principal::of("wasmops-coordinator", COORDINATOR_USER);
        assert!(allowed(c, Access::Publish, &topics::desired("gw-1")));
        assert!(allowed(c, Access::Subscribe, "#"));
    }

    #[test]
    fn logins_fit_their_client_ids() {
        assert!(login_fits("wasmops-device-gw-1", "gw-1", Some("gw-1")));
        // A device's credential under another id, or another client id.
        assert!(!login_fits("wasmops-device-gw-2", "gw-2", Some("gw-1")));
        assert!(!login_fits("wasmops-device-gw-2", "gw-1", Some("gw-1")));
        assert!(!login_fits("gw-1", "gw-1", Some("gw-1")));
        // An API token or the coordinator taking a device's client id.
        assert!(!login_fits("wasmops-device-gw-1", "gw-1", None));
        assert!(login_fits("events-7", "anyone", None));
    }
}
