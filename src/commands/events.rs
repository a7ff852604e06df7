//! `wasmops events`: the fleet's events as they happen, from the
//! coordinator's event stream (`GET /v1/events`).

use anyhow::{Result, bail};
use clap::Parser;

use crate::args::Connection;

/// Follows the fleet's events (deployments, rollouts, devices going offline,
/// drift and quality findings, runs) until interrupted, one per line.
#[derive(Parser)]
pub struct EventsCommand {
    /// Only these kinds (repeat or comma-separate), e.g. `--kind DataDriftDetected`.
    #[arg(long, value_delimiter = ',')]
    pub kind: Vec<String>,
    /// One JSON object per line (`wasmops_api::Event`).
    #[arg(long)]
    pub json: bool,
    /// Stop after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    #[command(flatten)]
    pub conn: Connection,
}

impl EventsCommand {
    pub fn execute(self) -> Result<()> {
        let kinds: Vec<&str> = self.kind.iter().map(String::as_str).collect();
        let mut left = self.count;
        if left == Some(0) {
            return Ok(());
        }
        for e in self.conn.client()?.events(&kinds)? {
            let e = match e {
                Ok(e) => e,
                Err(wasmops_api::ApiError::Missed(n)) => {
                    eprintln!("({n} events missed: this reader fell behind)");
                    continue;
                }
                Err(e) => bail!(e),
            };
            if self.json {
                println!("{}", serde_json::to_string(&e)?);
            } else {
                println!("{} {:<24} {:<32} {}", e.at_ms, e.kind, e.subject, e.detail);
            }
            if let Some(n) = left.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    break;
                }
            }
        }
        Ok(())
    }
}
