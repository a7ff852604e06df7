//! The fleet's MQTT wire contract, shared by the device agent and the
//! coordinator and depending on nothing of either: the topic layout
//! ([`topics`]), presence ([`presence`]), what a device should run and what it
//! reports back ([`device`]), and telemetry reports and their acknowledgement
//! ([`telemetry`]). Every payload is JSON; every type here is plain serde data.
//!
//! Data path: coordinator → `desired` ([`device::Desired`]) → agent installs →
//! `status` ([`device::Status`]) → coordinator; agent → `telemetry`
//! ([`telemetry::Report`]) → coordinator stores it → `telemetry/ack`
//! ([`telemetry::Ack`]) → agent drops it from its outbox. What only the
//! coordinator may say (desired states, acks) travels in a [`signed::Envelope`].

pub mod device;
pub mod presence;
pub mod signed;
pub mod telemetry;
pub mod topics;

/// Largest MQTT message either side sends (the coordinator's desired states,
/// the agent's telemetry reports): the embedded broker's limit and the
/// agent's outgoing packet limit. Probes travel as artifacts over HTTP and
/// big reports are split (see [`telemetry::split_versions`]) to stay under it.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Largest probe sample (its JSON) a deployment or rollout may carry: 1000
/// rows of a 300-feature model take about 3 MiB.
pub const MAX_PROBE_BYTES: usize = 16 << 20;

/// Milliseconds since the Unix epoch: the time unit of every payload here
/// (telemetry windows) and of the coordinator's tables.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// An MQTT broker address that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad MQTT URL `{url}`: {problem}")]
pub struct BadMqttUrl {
    pub url: String,
    pub problem: &'static str,
}

/// Whether `url` is MQTT over TLS (`mqtts://` or `ssl://`).
pub fn mqtt_url_is_tls(url: &str) -> bool {
    url.starts_with("mqtts://") || url.starts_with("ssl://")
}

/// `mqtt://host:port` (or `tcp://`; `mqtts://` or `ssl://` over TLS) →
/// (host, port); the port defaults to 1883 (8883 over TLS). IPv6 hosts are
/// written in brackets (`mqtt://[::1]:1883`).
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), BadMqttUrl> {
    let bad = |problem| BadMqttUrl {
        url: url.to_string(),
        problem,
    };
    let rest = ["mqtt://", "tcp://", "mqtts://", "ssl://"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| bad("it must start with mqtts:// (TLS) or mqtt:// (plain)"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("an IPv6 host needs its closing `]`"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("it has no host"));
    }
    let port = match port {
        Some(p) => p
            .parse()
            .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
        None if mqtt_url_is_tls(url) => 8883,
        None => 1883,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::parse_mqtt_url;

    #[test]
    fn mqtt_urls() {
        assert_eq!(
            parse_mqtt_url("mqtt://127.0.0.1:1883").unwrap(),
            ("127.0.0.1".into(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://broker").unwrap(),
            ("broker".into(), 1883)
        );
        assert_eq!(
            parse_mqtt_url("tcp://broker:1884/").unwrap(),
            ("broker".into(), 1884)
        );
        assert_eq!(
            parse_mqtt_url("mqtt://[::1]:18830").unwrap(),
            ("::1".into(), 18830)
        );
        assert_eq!(
            parse_mqtt_url("mqtts://broker").unwrap(),
            ("broker".to_string(), 8883)
        );
        assert!(super::mqtt_url_is_tls("mqtts://broker:18830"));
        assert!(!super::mqtt_url_is_tls("mqtt://broker:18830"));
        assert!(parse_mqtt_url("http://x").is_err());
        assert!(parse_mqtt_url("mqtt://").is_err());
        assert!(parse_mqtt_url("mqtt://x:99999").is_err());
    }
}
