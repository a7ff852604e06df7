//! `wasmops dataset push|list|show|from-production`: immutable,
//! content-addressed training and holdout data in the coordinator.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use wasmops_api::{
    DatasetFormat, DatasetPush, DatasetVersion, FromProduction, LabelSummary, Provenance,
};

use crate::args::Connection;
use crate::files;

/// Datasets: versions of training data with their profile and provenance.
#[derive(Parser)]
pub struct DatasetCommand {
    #[command(subcommand)]
    pub action: DatasetAction,
}

#[derive(Subcommand)]
pub enum DatasetAction {
    /// Store FILE (CSV with a header row, or `{"columns": {…}}`) as the next
    /// version of dataset NAME; the same bytes again answer the version that
    /// holds them.
    Push {
        file: PathBuf,
        #[arg(long)]
        name: String,
        /// The column holding the outcome to learn.
        #[arg(long)]
        label: String,
        #[arg(long, value_parser = ["csv", "json"])]
        format: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Rows devices sampled in production (agent.toml `sample_rows`) that
    /// have an outcome (`wasmops labels push`) as the next version of NAME.
    FromProduction {
        name: String,
        #[arg(long)]
        model: String,
        #[arg(long)]
        version: Option<String>,
        /// How far back (e.g. `24h`, `7d`).
        #[arg(long, default_value = "24h", value_parser = crate::args::parse_age)]
        since: i64,
        /// The label column's name in the new dataset.
        #[arg(long, default_value = "label")]
        label: String,
        #[arg(long)]
        min_rows: Option<u64>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// Every dataset version, and datasets only named in models' claims.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// NAME (every version), or NAME@VERSION / NAME@latest; `--out FILE`
    /// writes that version's file.
    Show {
        dataset: String,
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: Connection,
    },
}

fn describe(v: &DatasetVersion) -> String {
    let labels = match &v.labels {
        LabelSummary::Classes { counts } => counts
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        LabelSummary::Values { min, max, mean } => format!("{min} … {max}, mean {mean:.4}"),
    };
    let from = match &v.provenance {
        Provenance::Upload { file } => format!(
            "upload{}",
            file.as_ref().map_or(String::new(), |f| format!(" of {f}"))
        ),
        Provenance::Production {
            model,
            versions,
            devices,
            sampled_rows,
            labelled_rows,
            ..
        } => format!(
            "production rows of {model} {} from {devices} devices ({labelled_rows} of {sampled_rows} sampled rows labelled)",
            versions.join(", ")
        ),
    };
    let columns: Vec<String> = v
        .columns
        .iter()
        .map(|c| {
            if c.missing > 0 {
                format!("{} ({}, {} missing)", c.name, c.kind, c.missing)
            } else {
                format!("{} ({})", c.name, c.kind)
            }
        })
        .collect();
    format!(
        "{}@{}: {} rows, {} bytes, sha256 {}\n  label `{}`: {labels}\n  columns: {}\n  from: {from}, by {}{}",
        v.name,
        v.version,
        v.rows,
        v.size_bytes,
        v.sha256,
        v.label,
        columns.join(", "),
        v.created_by,
        if v.used_by.is_empty() {
            String::new()
        } else {
            format!("\n  trained: {}", v.used_by.join(", "))
        }
    )
}

fn print(v: &DatasetVersion, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        println!("{}", describe(v));
    }
    Ok(())
}

impl DatasetCommand {
    pub fn execute(self) -> Result<()> {
        match self.action {
            DatasetAction::Push {
                file,
                name,
                label,
                format,
                json,
                conn,
            } => {
                let bytes = files::read(&file)?;
                let push = DatasetPush {
                    label,
                    format: format.as_deref().and_then(DatasetFormat::parse),
                    file: file.file_name().map(|f| f.to_string_lossy().into_owned()),
                };
                let v = conn
                    .client()?
                    .push_dataset(&name, &push, bytes)
                    .with_context(|| format!("cannot push {}", file.display()))?;
                if !v.created && !json {
                    eprintln!("these bytes are already {}@{}", v.name, v.version);
                }
                print(&v, json)
            }
            DatasetAction::FromProduction {
                name,
                model,
                version,
                since,
                label,
                min_rows,
                json,
                conn,
            } => {
                let now = wasmops_protocol::now_ms();
                let req = FromProduction {
                    model,
                    version,
                    since_ms: Some(now - since),
                    until_ms: Some(now),
                    label: Some(label),
                    min_rows,
                };
                let v = conn.client()?.dataset_from_production(&name, &req)?;
                print(&v, json)
            }
            DatasetAction::List { json, conn } => {
                let all = conn.client()?.datasets()?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&all)?);
                    return Ok(());
                }
                for d in all {
                    let version = d
                        .version
                        .map_or("(claims only)".to_string(), |v| format!("@{v}"));
                    let rows = d.rows.map_or(String::new(), |r| format!("  {r} rows"));
                    let label = d.label.map_or(String::new(), |l| format!("  label {l}"));
                    let used = if d.used_by.is_empty() {
                        String::new()
                    } else {
                        format!("  trained {}", d.used_by.join(", "))
                    };
                    println!(
                        "{}{version}  {}{rows}{label}{used}",
                        d.id,
                        &d.sha256[..12.min(d.sha256.len())]
                    );
                }
                Ok(())
            }
            DatasetAction::Show {
                dataset,
                out,
                json,
                conn,
            } => {
                let client = conn.client()?;
                let versions = match dataset.split_once('@') {
                    Some((name, version)) => vec![client.dataset_version(name, version)?],
                    None => client.dataset(&dataset)?.versions,
                };
                if let Some(out) = out {
                    let v = versions.last().context("no version")?;
                    let bytes = client.dataset_data(&v.name, v.version)?;
                    files::write_atomic(&out, &bytes)?;
                    eprintln!("wrote {}@{} to {}", v.name, v.version, out.display());
                }
                if json {
                    println!("{}", serde_json::to_string_pretty(&versions)?);
                } else {
                    for v in &versions {
                        println!("{}", describe(v));
                    }
                }
                Ok(())
            }
        }
    }
}
