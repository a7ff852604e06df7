//! `wasmops telemetry`: per model version, what the fleet measured.

use anyhow::Result;
use clap::Parser;

use crate::args::Connection;

/// Telemetry per model version: predictions, failure rate, latency, features, outputs.
#[derive(Parser)]
pub struct TelemetryCommand {
    /// Only windows that ended at or after this time (ms since the epoch).
    #[arg(long, default_value_t = 0)]
    pub since_ms: i64,
    #[command(flatten)]
    pub conn: Connection,
}

impl TelemetryCommand {
    pub fn execute(self) -> Result<()> {
        println!(
            "{}",
            serde_json::to_string_pretty(&self.conn.client()?.telemetry(self.since_ms)?)?
        );
        Ok(())
    }
}
