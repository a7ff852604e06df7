//! `wasmops rollout …`: create, watch and steer rollouts through the coordinator's API.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use wasmops_api::{
    Client, Followed, Gates, RolloutAction, RolloutRequest, RolloutState, RolloutView, Strategy,
};

use crate::args::{Connection, parse_pairs, read_probe};

/// Canary, blue-green and shadow rollouts: create, list, status, pause, resume, approve, abort.
#[derive(Parser)]
pub struct RolloutCmd {
    #[command(subcommand)]
    pub command: RolloutCommand,
    #[command(flatten)]
    pub conn: Connection,
}

impl RolloutCmd {
    pub fn execute(self) -> Result<()> {
        rollout(&self.conn, self.command)
    }
}

/// `--strategy`, the API's [`Strategy`] as a flag value.
#[derive(Clone, Copy, ValueEnum)]
pub enum StrategyArg {
    Canary,
    BlueGreen,
    Shadow,
}

impl From<StrategyArg> for Strategy {
    fn from(s: StrategyArg) -> Strategy {
        match s {
            StrategyArg::Canary => Strategy::Canary,
            StrategyArg::BlueGreen => Strategy::BlueGreen,
            StrategyArg::Shadow => Strategy::Shadow,
        }
    }
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once from the command line"
)]
pub enum RolloutCommand {
    /// Roll a registered version (or alias) out over a label selector.
    Create {
        model: String,
        version: String,
        /// Label selector KEY=VALUE; repeatable (all must match).
        #[arg(long = "selector")]
        selector: Vec<String>,
        /// Device id; repeatable (instead of a selector).
        #[arg(long = "device")]
        devices: Vec<String>,
        #[arg(long, value_enum, default_value = "canary")]
        strategy: StrategyArg,
        /// Canary waves: cumulative percentages of the targets (default 10,50,100).
        #[arg(long, value_delimiter = ',')]
        waves: Vec<u32>,
        /// Gate: largest failure rate of the candidate (errors / predictions).
        #[arg(long, default_value_t = Gates::default().max_failure_rate)]
        max_failure_rate: f64,
        /// Gate: largest latency (ms) at --latency-quantile.
        #[arg(long)]
        max_latency_ms: Option<f64>,
        #[arg(long, default_value_t = Gates::default().latency_quantile)]
        latency_quantile: f64,
        /// Gate: predictions needed on the candidate before a wave can pass.
        #[arg(long, default_value_t = Gates::default().min_predictions)]
        min_predictions: u64,
        /// Seconds each wave runs on the candidate before its gate (shadow: how long to shadow).
        #[arg(long, default_value_t = Gates::default().bake_s)]
        bake: u64,
        /// Seconds a wave may take to install and gather its predictions.
        #[arg(long, default_value_t = Gates::default().timeout_s)]
        timeout: u64,
        /// Shadow gate: smallest share of predictions agreeing with the live model.
        #[arg(long)]
        min_agreement: Option<f64>,
        /// Largest drift coefficient (0-1) of the candidate's outputs against
        /// the previous version's over the wave.
        #[arg(long)]
        max_prediction_drift: Option<f64>,
        /// Sample input for the devices' health probe ({"inputs":[...]}).
        #[arg(long)]
        probe: Option<PathBuf>,
        /// Wait for `wasmops rollout approve` after each wave but the last.
        #[arg(long)]
        manual_approval: bool,
        /// Offline devices per wave that do not hold it up (they install when they return).
        #[arg(long, default_value_t = 0)]
        max_unavailable: u32,
        /// Failed installs per wave that do not abort the rollout (those devices keep their version).
        #[arg(long, default_value_t = 0)]
        max_failed: u32,
        /// Follow progress until the rollout ends (seconds); exit non-zero if it aborts.
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Rollouts, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One rollout: state, waves, candidate telemetry.
    Status {
        id: String,
        /// Follow progress until it ends (seconds).
        #[arg(long)]
        wait: Option<u64>,
    },
    /// Stop advancing (devices keep what they run).
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Let a rollout created with --manual-approval start its next wave.
    Approve {
        id: String,
    },
    /// Stop and send every started device back to its previous version.
    Abort {
        id: String,
    },
}

pub fn rollout(conn: &Connection, cmd: RolloutCommand) -> Result<()> {
    let api = conn.client()?;
    match cmd {
        RolloutCommand::Create {
            model,
            version,
            selector,
            devices,
            strategy,
            waves,
            max_failure_rate,
            max_latency_ms,
            latency_quantile,
            min_predictions,
            bake,
            timeout,
            min_agreement,
            max_prediction_drift,
            probe,
            manual_approval,
            max_unavailable,
            max_failed,
            wait,
        } => {
            let mut req = RolloutRequest::new(model, version);
            req.selector = parse_pairs("selector", &selector)?;
            req.devices = devices;
            req.strategy = strategy.into();
            if !waves.is_empty() {
                req.waves = waves;
            }
            req.gates = Gates {
                max_failure_rate,
                max_latency_ms,
                latency_quantile,
                min_predictions,
                bake_s: bake,
                timeout_s: timeout,
                min_agreement,
                max_prediction_drift,
            };
            req.probe = read_probe(probe.as_deref())?;
            req.manual_approval = manual_approval;
            req.max_unavailable = max_unavailable;
            req.max_failed = max_failed;
            let r = api.create_rollout(&req)?;
            eprintln!(
                "rollout {}: {} {} ({}) to {} device(s) in {} wave(s)",
                r.id,
                r.model,
                r.version,
                r.strategy.as_str(),
                r.targets,
                r.waves
            );
            match wait {
                Some(secs) => println!("{}", serde_json::to_string(&follow(&api, &r.id, secs)?)?),
                None => println!("{}", r.id),
            }
            Ok(())
        }
        RolloutCommand::List { json } => {
            let list = api.rollouts()?;
            if json {
                println!("{}", serde_json::to_string(&list)?);
                return Ok(());
            }
            println!(
                "{:<30} {:<20} {:<10} {:<11} {:<6} reason",
                "id", "model", "strategy", "state", "wave"
            );
            for r in list {
                println!(
                    "{:<30} {:<20} {:<10} {:<11} {:<6} {}",
                    r.id,
                    format!("{}@{}", r.model, r.version),
                    r.strategy.as_str(),
                    r.state.as_str(),
                    format!("{}/{}", r.wave, r.waves),
                    r.reason.unwrap_or_default()
                );
            }
            Ok(())
        }
        RolloutCommand::Status {
            id,
            wait: Some(secs),
        } => follow(&api, &id, secs).and_then(|r| {
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }),
        RolloutCommand::Status { id, wait: None } => {
            println!("{}", serde_json::to_string_pretty(&api.rollout(&id)?)?);
            Ok(())
        }
        RolloutCommand::Pause { id } => act(&api, &id, RolloutAction::Pause),
        RolloutCommand::Resume { id } => act(&api, &id, RolloutAction::Resume),
        RolloutCommand::Approve { id } => act(&api, &id, RolloutAction::Approve),
        RolloutCommand::Abort { id } => act(&api, &id, RolloutAction::Abort),
    }
}

fn act(api: &Client, id: &str, action: RolloutAction) -> Result<()> {
    let r = api.rollout_action(id, action)?;
    println!("rollout {id}: {}", r.state.as_str());
    Ok(())
}

/// A progress bar over the targets on the candidate until the rollout ends;
/// the final state, or an error saying why it aborted.
pub fn follow(api: &Client, id: &str, secs: u64) -> Result<RolloutView> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} devices  {msg}")
            .expect("valid template"),
    );
    let mut said_waiting = false;
    let followed = api.follow_rollout(id, Duration::from_secs(secs), |r| {
        bar.set_length(r.targets as u64);
        bar.set_position(r.ready as u64);
        let t = &r.telemetry;
        let p95 = t
            .p95_ms
            .map(|v| format!("{v} ms"))
            .unwrap_or_else(|| "-".into());
        bar.set_message(format!(
            "{} wave {}/{} {} | {} predictions, {} errors, p95 ≤ {p95}",
            r.state.as_str(),
            r.wave,
            r.waves,
            r.phase.as_str(),
            t.predictions,
            t.errors
        ));
        if r.state == RolloutState::WaitingApproval && bar.is_hidden() && !said_waiting {
            eprintln!("rollout {id}: waiting for approval");
            said_waiting = true;
        }
    })?;
    match followed {
        Followed::Ended(r) if r.state == RolloutState::Succeeded => {
            bar.finish();
            eprintln!("rollout {id} succeeded");
            Ok(r)
        }
        Followed::Ended(r) => {
            bar.abandon();
            bail!(
                "rollout {id} aborted and rolled back: {}",
                r.reason.unwrap_or_default()
            )
        }
        Followed::TimedOut(r) => {
            bar.abandon();
            bail!("rollout {id} is still {} after {secs} s", r.state.as_str())
        }
    }
}
