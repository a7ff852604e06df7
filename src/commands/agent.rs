//! `wasmops agent`: one device agent.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

/// Run the device agent: presence, installs from the coordinator, local predictions.
#[derive(Parser)]
pub struct AgentCommand {
    #[arg(long)]
    pub config: PathBuf,
}

impl AgentCommand {
    pub fn execute(self) -> Result<()> {
        let config = wasmops_agent::AgentConfig::from_file(&self.config)?;
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(wasmops_agent::run(config, async {
            let _ = tokio::signal::ctrl_c().await;
        }))
    }
}
