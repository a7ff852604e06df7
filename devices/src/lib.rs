//! The device agent (MQTT telemetry, A/B install, local prediction endpoint) lands here with the fleet issue.
