//! `wasmops mosquitto-config`: a Mosquitto configuration that holds an
//! external broker to the embedded one's rules (see
//! `wasmops_coordinator::mosquitto`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Write a Mosquitto configuration (dynamic-security plugin) under which
/// only the coordinator and the devices it enrols log in, each limited to
/// its own topics. Then: `mosquitto -c DIR/mosquitto.conf`, and
/// `wasmops coordinator --mqtt mqtt://HOST:PORT --mosquitto-dir DIR`.
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
}

impl MosquittoConfigCommand {
    pub fn execute(self) -> Result<()> {
        let conf = wasmops_coordinator::mosquitto::write_config(
            &self.dir,
            self.listen,
            self.plugin.as_deref(),
        )?;
        println!("{}", conf.display());
        Ok(())
    }
}
