//! The coordinator's TLS: the server certificate its API and embedded
//! broker present, and what its own clients (the in-process worker, the
//! subscriber on an `mqtts://` broker) trust.
//!
//! Zero-setup: a private CA in `data_dir/tls/` ([`wasmops_tls::Ca`]) signs
//! a fresh server certificate at every start for localhost, the loopback
//! addresses, the listen addresses, this host's name and `[tls] names`.
//! Devices and people trust `data_dir/tls/ca.pem` (provisioning bundles
//! carry it). Or `[tls] cert`/`key` are given, with the `ca` that signed them.
//!
//! Device certificates (`[tls] client_certs`): the private CA certifies each
//! device's own key at enrolment ([`crate::enrolment`]); the embedded
//! broker's TLS listener then admits only clients with such a certificate,
//! and [`relay_mqtt`] lets a connection through only if its MQTT login names
//! the device the certificate was issued to (username = id, client id
//! `wasmops-device-{id}`): a certificate alone does not log in (the broker
//! still checks the credential), and one device's certificate cannot carry
//! another's credential.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use wasmops_tls::ClientTls;

use crate::config::TlsSettings;

/// Where the generated CA lives, under the data directory.
pub const TLS_DIR: &str = "tls";

/// The coordinator's TLS, ready to serve.
pub struct ServerTls {
    /// The API's settings.
    pub server: Arc<rustls::ServerConfig>,
    /// The embedded broker's: the API's, or with device certificates required.
    pub mqtt: Arc<rustls::ServerConfig>,
    /// Whether the broker's listener demands device certificates.
    pub client_certs: bool,
    /// The system's CAs plus the fleet's CA: for the coordinator's own clients.
    pub clients: ClientTls,
    /// The CA certificate clients are told to trust, if there is one.
    pub ca_path: Option<PathBuf>,
    /// The private CA (no given certificates): it certifies devices' keys at
    /// enrolment.
    pub ca: Option<wasmops_tls::Ca>,
}

/// This host's name, as the kernel knows it.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The names a generated server certificate covers: localhost, the loopback
/// addresses, the addresses listened on (but unspecified ones), this host's
/// name and the configured `extra` ones, each once. The coordinator's
/// certificate and the managed Mosquitto's both.
pub(crate) fn server_names(extra: &[String], listens: &[SocketAddr]) -> Vec<String> {
    let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"].map(String::from).to_vec();
    names.extend(
        listens
            .iter()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
            .map(|ip| ip.to_string()),
    );
    names.extend(hostname());
    names.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Reads or makes what [`ServerTls`] holds.
pub fn prepare(
    settings: &TlsSettings,
    data_dir: &Path,
    listens: &[SocketAddr],
) -> anyhow::Result<ServerTls> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let client_certs = settings.client_certs.unwrap_or(false);
    let (chain, key, ca_path, own_ca) = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            anyhow::ensure!(
                !client_certs,
                "device certificates come from the coordinator's own CA: with [tls] cert and key given, leave client_certs off"
            );
            (read(cert)?, read(key)?, settings.ca.clone(), None)
        }
        (None, None) => {
            let dir = data_dir.join(TLS_DIR);
            let ca = wasmops_tls::Ca::load_or_create(&dir)?;
            let (chain, key) = ca.issue_server(&server_names(&settings.names, listens))?;
            (
                chain.into_bytes(),
                key.into_bytes(),
                Some(
                    settings
                        .ca
                        .clone()
                        .unwrap_or(dir.join(wasmops_tls::CA_CERT)),
                ),
                Some(ca),
            )
        }
        _ => {
            anyhow::bail!("[tls] cert and key go together: give both, or neither for a private CA")
        }
    };
    let server = wasmops_tls::server_config(&chain, &key, None)?;
    let mut clients = ClientTls::from_file(ca_path.as_deref())?;
    let mqtt = match (&own_ca, client_certs) {
        (Some(ca), true) => {
            // The coordinator's own certificate, for an external broker
            // that demands one (`mosquitto-config --client-certs`).
            let me = wasmops_tls::DeviceKey::load_or_create(
                &data_dir.join(TLS_DIR).join("coordinator.key"),
            )?;
            let cert = ca.issue_client(crate::acl::COORDINATOR_USER, me.public_key())?;
            clients = clients.with_identity(cert.as_bytes(), me.pem().as_bytes())?;
            wasmops_tls::server_config(&chain, &key, Some(ca.cert_pem().as_bytes()))?
        }
        _ => server.clone(),
    };
    Ok(ServerTls {
        server,
        mqtt,
        client_certs,
        clients,
        ca_path,
        ca: own_ca,
    })
}

/// Largest CONNECT read before the login is judged (the protocol's
/// message limit; a CONNECT is a few hundred bytes).
const MAX_CONNECT_BYTES: usize = 64 << 10;

/// Relays every device the embedded broker's TLS listener admits to the
/// broker on `backend` (loopback). With `bind_identity`, the first packet
/// must be a CONNECT whose username is the certificate's device id and whose
/// client id is that device's; anything else is answered "not authorised"
/// and closed. Runs until the listener closes.
pub async fn relay_mqtt(
    mut listener: wasmops_tls::Listener,
    backend: SocketAddr,
    bind_identity: bool,
) {
    while let Some((tls, peer)) = listener.accept().await {
        tokio::spawn(async move {
            if let Err(e) = relay_one(tls, backend, bind_identity).await {
                tracing::warn!("MQTT connection from {peer} refused: {e}");
            }
        });
    }
}

async fn relay_one(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    backend: SocketAddr,
    bind_identity: bool,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut first = bytes::BytesMut::new();
    if bind_identity {
        let device = wasmops_tls::peer_name(&tls).context("no device name in its certificate")?;
        let connect = tokio::time::timeout(wasmops_tls::HANDSHAKE_TIMEOUT, async {
            loop {
                let mut parse = first.clone();
                match rumqttc::Packet::read(&mut parse, MAX_CONNECT_BYTES) {
                    Ok(packet) => return Ok(packet),
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                    Err(e) => anyhow::bail!("not an MQTT 3.1.1 packet: {e:?}"),
                }
                anyhow::ensure!(first.len() < MAX_CONNECT_BYTES, "CONNECT too large");
                if tls.read_buf(&mut first).await? == 0 {
                    anyhow::bail!("closed before its CONNECT");
                }
            }
        })
        .await
        .context("no CONNECT in time")??;
        let login_fits = match &connect {
            rumqttc::Packet::Connect(c) => {
                c.login.as_ref().is_some_and(|l| l.username == device)
                    && c.client_id == format!("{}{device}", crate::acl::DEVICE_CLIENT_PREFIX)
            }
            _ => false,
        };
        if !login_fits {
            // CONNACK, "not authorised" (MQTT 3.1.1 return code 5).
            let _ = tls.write_all(&[0x20, 0x02, 0x00, 0x05]).await;
            let _ = tls.shutdown().await;
            anyhow::bail!("its login does not match the certificate of device `{device}`");
        }
    }
    let mut plain = tokio::net::TcpStream::connect(backend)
        .await
        .with_context(|| format!("cannot reach the broker on {backend}"))?;
    let _ = plain.set_nodelay(true);
    plain.write_all(&first).await?;
    // Ends when either side closes: nothing to report.
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
    Ok(())
}

/// The API's listener: [`wasmops_tls::Listener`] as axum serves it.
pub struct HttpsListener(pub wasmops_tls::Listener);

impl axum::serve::Listener for HttpsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.0.accept().await {
            Some(conn) => conn,
            // The accept loop ended only if the runtime is going away.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.0.local_addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificates_cover_loopback_listen_addresses_and_given_names() {
        let s = TlsSettings {
            names: vec!["coord.plant.example".into(), "localhost".into()],
            ..Default::default()
        };
        let n = server_names(
            &s.names,
            &[
                "0.0.0.0:8080".parse().unwrap(),
                "10.1.2.3:18830".parse().unwrap(),
            ],
        );
        for want in [
            "localhost",
            "127.0.0.1",
            "::1",
            "10.1.2.3",
            "coord.plant.example",
        ] {
            assert!(n.iter().any(|x| x == want), "{want} missing from {n:?}");
        }
        assert!(!n.iter().any(|x| x == "0.0.0.0"));
        assert_eq!(n.iter().filter(|x| *x == "localhost").count(), 1);
    }
}
