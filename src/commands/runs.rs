//! `wasmops runs list|show|cancel` and `wasmops retrain MODEL`: training
//! and validation runs, queued in the coordinator and carried out by workers.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use wasmops_api::{Gate, Run, RunKind, RunRequest, RunStatus, Trainer};

use crate::args::Connection;

/// Training and validation runs.
#[derive(Parser)]
pub struct RunsCommand {
    #[command(subcommand)]
    pub action: RunsAction,
}

#[derive(Subcommand)]
pub enum RunsAction {
    List {
        #[arg(long)]
        model: Option<String>,
        /// The newest N runs (at most 1000).
        #[arg(long, default_value_t = wasmops_api::DEFAULT_RUNS_PAGE)]
        limit: usize,
        /// Runs queued before this time (ms since the epoch): the page before.
        #[arg(long)]
        before_ms: Option<i64>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// A run: parameters, datasets, code, metrics, the gate's checks; `--logs` its log.
    Show {
        id: String,
        #[arg(long)]
        logs: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    Cancel {
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn line(r: &Run, now: i64) -> String {
    let took = r
        .duration_ms(now)
        .map_or(String::new(), |d| format!("  {:.1} s", d as f64 / 1e3));
    let data: Vec<String> = r
        .datasets
        .iter()
        .map(|d| format!("{} {}@{}", d.role, d.name, d.version))
        .collect();
    format!(
        "{}  {}  {}{took}  {}  {}{}",
        r.id,
        r.status.as_str(),
        r.model.as_deref().unwrap_or("-"),
        r.trigger.as_deref().unwrap_or(""),
        data.join(", "),
        r.candidate
            .as_ref()
            .map_or(String::new(), |c| format!("  → {c}"))
    )
}

pub fn describe(r: &Run) -> String {
    let now = wasmops_protocol::now_ms();
    let mut out = line(r, now);
    if let Some(t) = &r.trainer {
        out.push_str(&format!(
            "\n  trainer: {}",
            serde_json::to_string(t).unwrap_or_default()
        ));
    }
    if let Some(c) = &r.code_commit {
        out.push_str(&format!("\n  code: {c}"));
    }
    if r.metrics.as_object().is_some_and(|m| !m.is_empty()) {
        out.push_str(&format!("\n  metrics: {}", r.metrics));
    }
    if let Some(v) = &r.validation {
        out.push_str(&format!(
            "\n  validation {} against {}:",
            if v.passed { "passed" } else { "FAILED" },
            v.champion.as_deref().unwrap_or("no champion")
        ));
        for c in &v.checks {
            out.push_str(&format!(
                "\n    {} {}: {}",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("\n  error: {e}"));
    }
    out
}

impl RunsCommand {
    pub fn execute(self) -> Result<()> {
        match self.action {
            RunsAction::List {
                model,
                limit,
                before_ms,
                json,
                conn,
            } => {
                let runs = conn
                    .client()?
                    .runs(model.as_deref(), Some(limit), before_ms)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&runs)?);
                } else {
                    let now = wasmops_protocol::now_ms();
                    for r in &runs {
                        println!("{}", line(r, now));
                    }
                }
                Ok(())
            }
            RunsAction::Show {
                id,
                logs,
                json,
                conn,
            } => {
                let client = conn.client()?;
                let run = client.run(&id)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&run)?);
                } else {
                    println!("{}", describe(&run));
                }
                if logs {
                    print!("{}", client.run_logs(&id)?);
                }
                Ok(())
            }
            RunsAction::Cancel { id, conn } => {
                let run = conn.client()?.cancel_run(&id)?;
                println!("{}", describe(&run));
                Ok(())
            }
        }
    }
}

/// Train MODEL again now: a run on a dataset version, validated against the
/// champion by the gate, released when it passes (by a worker: the one in
/// `wasmops coordinator`, or `wasmops worker`).
#[derive(Parser)]
pub struct RetrainCommand {
    pub model: String,
    /// `NAME` (newest version) or `NAME@VERSION`; without it, a run as the
    /// model's loop file says (`wasmops loop set`).
    #[arg(long)]
    pub dataset: Option<String>,
    /// A holdout dataset (default: a seeded share of --dataset).
    #[arg(long)]
    pub holdout: Option<String>,
    #[arg(long, default_value = "0.2")]
    pub holdout_share: f64,
    /// A built-in trainer: logistic (classes) or linear (numbers).
    #[arg(long, default_value = "logistic", conflicts_with = "command")]
    pub trainer: String,
    /// Built-in trainer settings as JSON, e.g. '{"max_iterations": 500}'.
    #[arg(long)]
    pub params: Option<String>,
    /// An external trainer: `python train.py --data {data} --out {out}`
    /// ({holdout}, {metrics}, {label} too), run in the worker's --workdir.
    #[arg(long)]
    pub command: Option<String>,
    #[arg(long, default_value = "10m", value_parser = crate::args::parse_age)]
    pub time_limit: i64,
    /// The gate's metric (accuracy, auc, log_loss, mae, rmse).
    #[arg(long)]
    pub metric: Option<String>,
    /// How much worse than the champion the candidate may be.
    #[arg(long, default_value = "0")]
    pub margin: f64,
    /// The candidate must beat the champion by the margin.
    #[arg(long)]
    pub must_beat: bool,
    /// Wait for the run to end; fail unless it succeeded.
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub conn: Connection,
}

impl RetrainCommand {
    pub fn execute(self) -> Result<()> {
        let client = self.conn.client()?;
        let Some(dataset) = self.dataset.clone() else {
            let run = client.trigger_loop(&self.model)?;
            return self.follow(&client, run);
        };
        let trainer = match &self.command {
            Some(command) => Trainer::Command {
                command: command.clone(),
                workdir: None,
            },
            None => Trainer::Builtin {
                algorithm: self.trainer.clone(),
                params: match &self.params {
                    Some(p) => serde_json::from_str(p)
                        .map_err(|e| anyhow::anyhow!("--params is not JSON: {e}"))?,
                    None => serde_json::Value::Null,
                },
            },
        };
        let req = RunRequest {
            model: self.model.clone(),
            kind: RunKind::Train,
            trainer,
            dataset,
            holdout: self.holdout.clone(),
            holdout_share: Some(self.holdout_share),
            trigger: Some("manual".into()),
            time_limit_s: Some((self.time_limit / 1000).max(1) as u64),
            gate: Gate {
                metric: self.metric.clone(),
                margin: self.margin,
                must_beat: self.must_beat,
                ..Gate::default()
            },
        };
        let run = client.create_run(&req)?;
        self.follow(&client, run)
    }

    /// Prints the run (after its end, with --wait).
    fn follow(&self, client: &wasmops_api::Client, mut run: Run) -> Result<()> {
        if !self.json {
            eprintln!("queued {}", run.id);
        }
        if self.wait {
            while !run.status.is_final() {
                std::thread::sleep(Duration::from_millis(500));
                run = client.run(&run.id)?;
            }
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&run)?);
        } else {
            println!("{}", describe(&run));
        }
        if self.wait && run.status != RunStatus::Succeeded {
            bail!("run {} {}", run.id, run.status.as_str());
        }
        Ok(())
    }
}
