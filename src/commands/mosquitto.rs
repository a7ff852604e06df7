//! `wasmops mosquitto-config`: a Mosquitto configuration that holds an
//! external broker to the embedded one's rules (see
//! `wasmops_coordinator::mosquitto`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Write a Mosquitto configuration (dynamic-security plugin) under which
/// only the coordinator and the devices it enrols log in, each limited to
/// its own topics, over TLS with a certificate from the coordinator's CA.
/// Then: `mosquitto -c DIR/mosquitto.conf`, and
/// `wasmops coordinator --mqtt mqtts://HOST:PORT --mosquitto-dir DIR`.
#[derive(Parser)]
pub struct MosquittoConfigCommand {
    /// Where to write mosquitto.conf, the plugin's state and the
    /// coordinator's password (an existing configuration there is replaced).
    #[arg(long)]
    pub dir: PathBuf,
    /// Where the broker listens.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: SocketAddr,
    /// The dynamic-security plugin (default: found in the usual places).
    #[arg(long)]
    pub plugin: Option<PathBuf>,
    /// The CA that signs the broker's certificate: the coordinator's TLS
    /// directory (made there if it has none yet), so devices trust the
    /// broker as they trust the coordinator.
    #[arg(long, default_value = "wasmops-data/tls")]
    pub ca_dir: PathBuf,
    /// Another name or address devices reach the broker by; repeatable.
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// Devices must present the certificate the coordinator's CA gave them
    /// at enrolment (run the coordinator with --client-certs).
    #[arg(long, conflicts_with = "insecure_plain")]
    pub client_certs: bool,
    /// Plain MQTT: device credentials cross the network in clear.
    #[arg(long)]
    pub insecure_plain: bool,
}

impl MosquittoConfigCommand {
    pub fn execute(self) -> Result<()> {
        let ca = match self.insecure_plain {
            true => None,
            false => Some(wasmops_tls::Ca::load_or_create(&self.ca_dir)?),
        };
        let conf = wasmops_coordinator::mosquitto::write_config(
            &self.dir,
            self.listen,
            self.plugin.as_deref(),
            ca.as_ref()
                .map(|ca| wasmops_coordinator::mosquitto::BrokerTls {
                    ca,
                    names: &self.tls_names,
                    client_certs: self.client_certs,
                }),
        )?;
        println!("{}", conf.display());
        Ok(())
    }
}
