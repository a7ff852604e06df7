//! `wasmops rollout …`: create, watch and steer rollouts through the coordinator's API.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Subcommand, ValueEnum};
use serde_json::Value;

use crate::coordinator_client::{Connection, parse_selector, read_probe};

#[derive(Clone, Copy, ValueEnum)]
pub enum Strategy {
    Canary,
    BlueGreen,
    Shadow,
}

#[derive(Subcommand)]
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
        strategy: Strategy,
        /// Canary waves: cumulative percentages of the targets.
        #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
        waves: Vec<u32>,
        /// Gate: largest failure rate of the candidate (errors / predictions).
        #[arg(long, default_value_t = 0.01)]
        max_failure_rate: f64,
        /// Gate: largest latency (ms) at --latency-quantile.
        #[arg(long)]
        max_latency_ms: Option<f64>,
        #[arg(long, default_value_t = 0.95)]
        latency_quantile: f64,
        /// Gate: predictions needed on the candidate before a wave can pass.
        #[arg(long, default_value_t = 10)]
        min_predictions: u64,
        /// Seconds each wave runs on the candidate before its gate (shadow: how long to shadow).
        #[arg(long, default_value_t = 10)]
        bake: u64,
        /// Seconds a wave may take to install and gather its predictions.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        /// Shadow gate: smallest share of predictions agreeing with the live model.
        #[arg(long)]
        min_agreement: Option<f64>,
        /// Sample input for the devices' health probe ({"inputs":[...]}).
        #[arg(long)]
        probe: Option<PathBuf>,
        /// Wait for `wasmops rollout approve` after each wave but the last.
        #[arg(long)]
        manual_approval: bool,
        /// Offline devices per wave that do not hold it up (they install when they return).
        #[arg(long, default_value_t = 0)]
        max_unavailable: u32,
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
    Pause { id: String },
    Resume { id: String },
    /// Let a rollout created with --manual-approval start its next wave.
    Approve { id: String },
    /// Stop and send every started device back to its previous version.
    Abort { id: String },
}

pub fn rollout(conn: &Connection, cmd: RolloutCommand) -> Result<()> {
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
            probe,
            manual_approval,
            max_unavailable,
            wait,
        } => {
            let strategy = match strategy {
                Strategy::Canary => "canary",
                Strategy::BlueGreen => "blue-green",
                Strategy::Shadow => "shadow",
            };
            let body = serde_json::json!({
                "model": model, "version": version, "selector": parse_selector(&selector)?, "devices": devices,
                "strategy": strategy, "waves": waves, "probe": read_probe(probe.as_deref())?, "manual_approval": manual_approval, "max_unavailable": max_unavailable,
                "gates": {"max_failure_rate": max_failure_rate, "max_latency_ms": max_latency_ms, "latency_quantile": latency_quantile,
                          "min_predictions": min_predictions, "bake_s": bake, "timeout_s": timeout, "min_agreement": min_agreement},
            });
            let r: Value = conn.send(conn.request(reqwest::Method::POST, "/v1/rollouts")?.json(&body))?.json()?;
            let id = r["id"].as_str().unwrap_or_default().to_string();
            eprintln!("rollout {id}: {} {} ({strategy}) to {} device(s) in {} wave(s)", r["model"].as_str().unwrap_or_default(), r["version"].as_str().unwrap_or_default(), r["targets"], r["waves"]);
            match wait {
                Some(secs) => follow(conn, &id, secs).map(|r| println!("{r}")),
                None => {
                    println!("{id}");
                    Ok(())
                }
            }
        }
        RolloutCommand::List { json } => {
            let list = conn.get("/v1/rollouts")?;
            if json {
                println!("{list}");
                return Ok(());
            }
            println!("{:<30} {:<20} {:<10} {:<11} {:<6} reason", "id", "model", "strategy", "state", "wave");
            for r in list.as_array().into_iter().flatten() {
                println!(
                    "{:<30} {:<20} {:<10} {:<11} {:<6} {}",
                    r["id"].as_str().unwrap_or_default(),
                    format!("{}@{}", r["model"].as_str().unwrap_or_default(), r["version"].as_str().unwrap_or_default()),
                    r["strategy"].as_str().unwrap_or_default(),
                    r["state"].as_str().unwrap_or_default(),
                    format!("{}/{}", r["wave"], r["waves"]),
                    r["reason"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        RolloutCommand::Status { id, wait: Some(secs) } => follow(conn, &id, secs).map(|r| println!("{r}")),
        RolloutCommand::Status { id, wait: None } => {
            println!("{}", serde_json::to_string_pretty(&conn.get(&format!("/v1/rollouts/{id}"))?)?);
            Ok(())
        }
        RolloutCommand::Pause { id } => act(conn, &id, "pause"),
        RolloutCommand::Resume { id } => act(conn, &id, "resume"),
        RolloutCommand::Approve { id } => act(conn, &id, "approve"),
        RolloutCommand::Abort { id } => act(conn, &id, "abort"),
    }
}

fn act(conn: &Connection, id: &str, action: &str) -> Result<()> {
    let r: Value = conn.send(conn.request(reqwest::Method::POST, &format!("/v1/rollouts/{id}/{action}"))?)?.json()?;
    println!("rollout {id}: {}", r["state"].as_str().unwrap_or_default());
    Ok(())
}

/// A progress bar over the targets on the candidate until the rollout ends;
/// the final state, or an error saying why it aborted.
pub fn follow(conn: &Connection, id: &str, secs: u64) -> Result<Value> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} devices  {msg}").expect("valid template"));
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = conn.get(&format!("/v1/rollouts/{id}"))?;
        bar.set_length(r["targets"].as_u64().unwrap_or(0));
        bar.set_position(r["ready"].as_u64().unwrap_or(0));
        let t = &r["telemetry"];
        let p95 = t["p95_ms"].as_f64().map(|v| format!("{v} ms")).unwrap_or_else(|| "-".into());
        bar.set_message(format!(
            "{} wave {}/{} {} | {} predictions, {} errors, p95 ≤ {p95}",
            r["state"].as_str().unwrap_or_default(),
            r["wave"],
            r["waves"],
            r["phase"].as_str().unwrap_or_default(),
            t["predictions"],
            t["errors"]
        ));
        match r["state"].as_str() {
            Some("succeeded") => {
                bar.finish();
                eprintln!("rollout {id} succeeded");
                return Ok(r);
            }
            Some("aborted") => {
                bar.abandon();
                bail!("rollout {id} aborted and rolled back: {}", r["reason"].as_str().unwrap_or_default());
            }
            Some("waiting-approval") if bar.is_hidden() => eprintln!("rollout {id}: waiting for approval"),
            _ => {}
        }
        if Instant::now() > deadline {
            bar.abandon();
            bail!("rollout {id} is still {} after {secs} s", r["state"].as_str().unwrap_or_default());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
