//! `wasmops loop set|show|approve`: a model's closed loop — its trainer and
//! data, what starts a run, what the gate demands, how a passed candidate is
//! released (the TOML file's fields: `wasmops_api::LoopSettings`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use wasmops_api::{LoopSettings, LoopView};

use crate::args::Connection;
use crate::files;

/// A model's closed loop: retraining triggers, validation gate, release.
#[derive(Parser)]
pub struct LoopCommand {
    #[command(subcommand)]
    pub action: LoopAction,
}

#[derive(Subcommand)]
pub enum LoopAction {
    /// Set MODEL's loop from a TOML file (README › Closed loop).
    Set {
        model: String,
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
    /// MODEL's loop: settings, last trigger, candidates on their way.
    Show {
        model: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Let run RUN's candidate (waiting under `approval = "manual"`) go on
    /// to its rollout and promotion.
    Approve {
        run: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn print(v: &LoopView, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
        return Ok(());
    }
    let s = &v.settings;
    println!(
        "{}: trainer {}, data {}, approval {}, alias {}",
        v.model,
        s.trainer,
        s.dataset
            .clone()
            .unwrap_or_else(|| "production rows".into()),
        s.release.approval,
        s.release.alias
    );
    println!(
        "  triggers: on {:?}, new labels {:?}, schedule {:?}, cool-down {}",
        s.triggers.on,
        s.triggers.new_labels,
        s.triggers.schedule,
        s.triggers.cooldown.as_deref().unwrap_or("1h")
    );
    if let (Some(at), Some(why)) = (v.last_trigger_ms, &v.last_trigger) {
        println!("  last run started {at} ms ({why})");
    }
    for p in &v.promotions {
        println!(
            "  {} {} (run {}): {}{}",
            p.model,
            p.version,
            p.run,
            p.state,
            p.reason
                .as_ref()
                .map_or(String::new(), |r| format!(" — {r}"))
        );
    }
    Ok(())
}

impl LoopCommand {
    pub fn execute(self) -> Result<()> {
        match self.action {
            LoopAction::Set { model, file, conn } => {
                let text = String::from_utf8(files::read(&file)?)
                    .with_context(|| format!("{} is not UTF-8", file.display()))?;
                let settings: LoopSettings = toml::from_str(&text)
                    .with_context(|| format!("{} is not a loop file", file.display()))?;
                print(&conn.client()?.set_loop(&model, &settings)?, false)
            }
            LoopAction::Show { model, json, conn } => {
                print(&conn.client()?.loop_settings(&model)?, json)
            }
            LoopAction::Approve { run, conn } => {
                let p = conn.client()?.approve_run(&run)?;
                println!("{} {}: {}", p.model, p.version, p.state);
                Ok(())
            }
        }
    }
}
