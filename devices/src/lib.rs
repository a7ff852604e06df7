//! The device side of the fleet loop: the MQTT topic layout both sides share
//! ([`topics`]), presence ([`presence`]: a retained birth message on every
//! (re)connect and a retained Last Will), the [`agent`] (installs into slots
//! kept by a [`store`], serves predictions, reports [`telemetry`]) and the
//! [`fleet`] simulator that runs many agents in one process.

pub mod agent;
pub mod download;
pub mod fleet;
pub mod presence;
pub mod store;
pub mod telemetry;
pub mod topics;

/// `mqtt://host:port` → (host, port); the port defaults to 1883.
pub fn parse_mqtt_url(url: &str) -> anyhow::Result<(String, u16)> {
    let u = url::Url::parse(url).map_err(|e| anyhow::anyhow!("bad MQTT URL `{url}`: {e}"))?;
    if u.scheme() != "mqtt" && u.scheme() != "tcp" {
        anyhow::bail!("MQTT URL `{url}` must start with mqtt:// (TLS is not supported yet)");
    }
    let host = u.host_str().ok_or_else(|| anyhow::anyhow!("MQTT URL `{url}` has no host"))?.to_string();
    Ok((host, u.port().unwrap_or(1883)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn mqtt_urls() {
        assert_eq!(super::parse_mqtt_url("mqtt://127.0.0.1:1883").unwrap(), ("127.0.0.1".into(), 1883));
        assert_eq!(super::parse_mqtt_url("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert!(super::parse_mqtt_url("http://x").is_err());
    }
}
