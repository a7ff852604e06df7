//! `wasmops devices`: the fleet as the coordinator sees it.

use anyhow::Result;
use clap::Parser;

use crate::args::Connection;

/// Devices the coordinator knows: presence, labels, active model.
#[derive(Parser)]
pub struct DevicesCommand {
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

impl DevicesCommand {
    pub fn execute(self) -> Result<()> {
        let list = self.conn.client()?.devices()?;
        if self.json {
            println!("{}", serde_json::to_string(&list)?);
            return Ok(());
        }
        println!("{:<24} {:<8} {:<24} labels", "device", "state", "active");
        for d in list {
            let active = match (&d.active_model, &d.active_version) {
                (Some(m), Some(v)) => format!("{m} {v}"),
                _ => "-".into(),
            };
            let labels: Vec<String> = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<24} {:<8} {:<24} {}",
                d.id,
                d.state,
                active,
                labels.join(" ")
            );
        }
        Ok(())
    }
}
