//! `wasmops deploy`: a version on devices, all at once (no gates; see `rollout`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Parser;
use wasmops_api::{Client, DeployRequest, Deployment, Followed};

use crate::args::{Connection, parse_pairs, read_probe};

/// Put a registered version (or alias) on devices, by id or label selector.
#[derive(Parser)]
pub struct DeployCommand {
    pub model: String,
    pub version: String,
    /// Device id; repeatable.
    #[arg(long = "device")]
    pub devices: Vec<String>,
    /// Label selector KEY=VALUE; repeatable (all must match).
    #[arg(long = "selector")]
    pub selector: Vec<String>,
    /// Sample input for the devices' health probe ({"inputs":[...]}).
    #[arg(long)]
    pub probe: Option<PathBuf>,
    /// Wait until every device reports active or failed (seconds).
    #[arg(long)]
    pub wait: Option<u64>,
    #[command(flatten)]
    pub conn: Connection,
}

impl DeployCommand {
    pub fn execute(self) -> Result<()> {
        let req = DeployRequest {
            model: self.model,
            version: self.version,
            devices: self.devices,
            selector: parse_pairs("selector", &self.selector)?,
            probe: read_probe(self.probe.as_deref())?,
        };
        let api = self.conn.client()?;
        let dep = api.deploy(&req)?;
        eprintln!(
            "deployment {}: {} {} to {} device(s)",
            dep.id,
            dep.model,
            dep.version,
            dep.targets.len()
        );
        match self.wait {
            Some(secs) => println!("{}", serde_json::to_string(&follow(&api, &dep, secs)?)?),
            None => println!("{}", dep.id),
        }
        Ok(())
    }
}

/// A progress bar over the deployment's devices until each is active or
/// failed; the final state, or an error naming the failed devices.
pub fn follow(api: &Client, dep: &Deployment, secs: u64) -> Result<Deployment> {
    let bar = indicatif::ProgressBar::new(dep.targets.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} devices done {msg}")
            .expect("valid template"),
    );
    let failures = |d: &Deployment| -> Vec<String> {
        d.targets
            .iter()
            .filter(|t| t.state == "failed")
            .map(|t| format!("{}: {}", t.device, t.error.clone().unwrap_or_default()))
            .collect()
    };
    let followed = api.follow_deployment(&dep.id, Duration::from_secs(secs), |d| {
        let failed = failures(d).len();
        bar.set_position(
            d.targets
                .iter()
                .filter(|t| t.state == "active" || t.state == "failed")
                .count() as u64,
        );
        bar.set_message(if failed == 0 {
            String::new()
        } else {
            format!("({failed} failed)")
        });
    })?;
    match followed {
        Followed::Ended(d) => {
            bar.finish();
            let failed = failures(&d);
            if !failed.is_empty() {
                bail!(
                    "deployment {} failed on {} device(s):\n  {}",
                    d.id,
                    failed.len(),
                    failed.join("\n  ")
                );
            }
            Ok(d)
        }
        Followed::TimedOut(d) => {
            bar.abandon();
            bail!(
                "deployment {}: {}/{} devices done after {secs} s",
                d.id,
                bar.position(),
                d.targets.len()
            )
        }
    }
}
