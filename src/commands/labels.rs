//! `wasmops labels push FILE`: outcomes for predictions (delayed labels).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use wasmops_api::{Label, LabelsRequest, MAX_LABELS, Outcome};
use wasmops_drift::{Table, Values};

use crate::args::Connection;
use crate::files;

/// Outcomes (labels) for predictions devices made, by prediction id.
#[derive(Parser)]
pub struct LabelsCommand {
    #[command(subcommand)]
    pub action: LabelsAction,
}

#[derive(Subcommand)]
pub enum LabelsAction {
    /// Post outcomes: a CSV with the columns `prediction_id` and `outcome`
    /// (a class, or a number for regressors), or `{"labels": [{"prediction_id":
    /// …, "outcome": …}]}`. Sent in batches of 10 000, each stored whole or
    /// not at all; the first refused batch stops the command.
    Push {
        file: PathBuf,
        #[command(flatten)]
        conn: Connection,
    },
}

impl LabelsCommand {
    pub fn execute(self) -> Result<()> {
        let LabelsAction::Push { file, conn } = self.action;
        let labels = read(&file)?;
        let client = conn.client()?;
        let mut stored = 0;
        for batch in labels.chunks(MAX_LABELS) {
            let answer = client
                .post_labels(&LabelsRequest {
                    labels: batch.to_vec(),
                })
                .with_context(|| {
                    format!(
                        "{stored} of {} labels were stored before this",
                        labels.len()
                    )
                })?;
            stored += answer.stored;
        }
        println!("stored {stored} labels");
        Ok(())
    }
}

fn read(path: &std::path::Path) -> Result<Vec<Label>> {
    let bytes = files::read(path)?;
    let labels = if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && serde_json::from_slice::<serde_json::Value>(&bytes)
            .is_ok_and(|v| v.get("labels").is_some())
    {
        serde_json::from_slice::<LabelsRequest>(&bytes)
            .with_context(|| {
                format!(
                    "{} is not {{\"labels\": [{{\"prediction_id\", \"outcome\"}}]}}",
                    path.display()
                )
            })?
            .labels
    } else {
        let table = Table::read(path, "labels", None)?;
        let column = |name: &str| {
            table
                .column(name)
                .map(|c| &c.values)
                .with_context(|| format!("{}: no `{name}` column", path.display()))
        };
        let ids: Vec<Option<String>> = match column("prediction_id")? {
            Values::Categorical(v) => v.clone(),
            Values::Numeric(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
        };
        let outcomes: Vec<Option<Outcome>> = match column("outcome")? {
            Values::Categorical(v) => v.iter().map(|s| s.clone().map(Outcome::Class)).collect(),
            Values::Numeric(v) => v.iter().map(|x| x.map(Outcome::Number)).collect(),
        };
        ids.into_iter()
            .zip(outcomes)
            .enumerate()
            .map(|(row, pair)| match pair {
                (Some(prediction_id), Some(outcome)) => Ok(Label {
                    prediction_id,
                    outcome,
                }),
                _ => bail!(
                    "{}: row {} lacks a prediction id or an outcome",
                    path.display(),
                    row + 1
                ),
            })
            .collect::<Result<_>>()?
    };
    if labels.is_empty() {
        bail!("{}: no labels", path.display());
    }
    Ok(labels)
}
