//! `wasmops audit`: who changed what, newest first.

use anyhow::Result;
use clap::Parser;

use crate::args::Connection;

/// The coordinator's audit log, newest first.
#[derive(Parser)]
pub struct AuditCommand {
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

impl AuditCommand {
    pub fn execute(self) -> Result<()> {
        let entries = self.conn.client()?.audit(self.limit)?;
        if self.json {
            println!("{}", serde_json::to_string(&entries)?);
            return Ok(());
        }
        for e in entries {
            println!(
                "{:>6} {} {:<12} {:<16} {:<28} {}",
                e.id, e.at_ms, e.actor, e.action, e.target, e.detail
            );
        }
        Ok(())
    }
}
