//! `wasmops agent`: one device agent.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Run the device agent: presence, installs from the coordinator, local predictions.
#[derive(Parser)]
pub struct AgentCommand {
    #[arg(long)]
    pub config: PathBuf,
    /// The coordinator's CA certificate, when agent.toml names no `ca_cert`.
    #[arg(long, env = "WASMOPS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

impl AgentCommand {
    pub fn execute(self) -> Result<()> {
        let mut config = wasmops_agent::AgentConfig::from_file(&self.config)?;
        if config.ca_cert.is_none() {
            config.ca_cert = self.ca_cert;
        }
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(wasmops_agent::run(config, async {
            let _ = tokio::signal::ctrl_c().await;
        }))
    }
}
