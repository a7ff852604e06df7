//! `wasmops devices`: the fleet as the coordinator sees it.

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::args::Connection;

/// Devices the coordinator knows: presence, labels, active model.
#[derive(Parser)]
pub struct DevicesCommand {
    #[command(subcommand)]
    pub action: Option<DevicesAction>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Subcommand)]
pub enum DevicesAction {
    /// Revokes a device's credential (operator): it can no longer log in or
    /// download, and may enrol again with a fresh enrolment token.
    Reset { id: String },
}

impl DevicesCommand {
    pub fn execute(self) -> Result<()> {
        if let Some(DevicesAction::Reset { id }) = self.action {
            let r = self.conn.client()?.reset_device(&id)?;
            eprintln!(
                "revoked the credential of {id} ({} token(s) named `{}`); it enrols again with a fresh enrolment token",
                r.revoked, r.name
            );
            return Ok(());
        }
        let list = self.conn.client()?.devices()?;
        if self.json {
            println!("{}", serde_json::to_string(&list)?);
            return Ok(());
        }
        println!(
            "{:<24} {:<8} {:<24} {:<28} labels",
            "device", "state", "active", "group wants"
        );
        let mut differing = 0;
        for d in list {
            let active = match (&d.active_model, &d.active_version) {
                (Some(m), Some(v)) => format!("{m} {v}"),
                _ => "-".into(),
            };
            let wants = match &d.group {
                None => "-".into(),
                Some(g) if g.in_sync => format!("{} {}", g.model, g.version),
                Some(g) => {
                    differing += 1;
                    format!("{} {} (differs)", g.model, g.version)
                }
            };
            let labels: Vec<String> = d.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "{:<24} {:<8} {:<24} {:<28} {}",
                d.id,
                d.state,
                active,
                wants,
                labels.join(" ")
            );
        }
        if differing > 0 {
            eprintln!("{differing} device(s) differ from their group's version");
        }
        Ok(())
    }
}
