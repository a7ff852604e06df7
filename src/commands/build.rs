//! `wasmops build`: ONNX model (+ preprocessing) → one self-contained component.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use wasmops_compiler::profile::{self, Training};
use wasmops_compiler::{BuildOptions, InputShape};

use crate::args::{CacheArgs, ClaimsArgs};
use crate::{files, tensors};

/// Turn an ONNX model (+ preprocessing pipeline) into a self-contained component.
#[derive(Parser, Clone)]
pub struct BuildCommand {
    pub model: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Preprocessing pipeline TOML, run inside the component before the model.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "0.1.0")]
    pub version: String,
    /// Fix or override an input shape, e.g. x=N,3,224,224 (N or ? keeps an axis dynamic).
    #[arg(long = "input-shape", value_name = "NAME=D1,D2,...")]
    pub input_shapes: Vec<InputShape>,
    /// Training data: CSV with a header row (an empty cell is missing), or
    /// `{"inputs":[…]}` (rows × features). Its profile — per column kind,
    /// missing share, range, quantiles, mean/std, domain and quantile bins;
    /// the label's; the model's outputs on it — is signed into the claims:
    /// devices and the coordinator judge drift and data quality against it.
    #[arg(long, value_name = "FILE")]
    pub training_data: Option<PathBuf>,
    /// Names of the feature columns, in order (default: the CSV header, or
    /// `X[0]`, `X[1]`, … for JSON).
    #[arg(long, value_name = "A,B,…", value_delimiter = ',')]
    pub feature_names: Vec<String>,
    /// The CSV column holding the training labels: profiled as the label,
    /// not as a feature (for label drift against the outcomes posted later).
    #[arg(long, value_name = "COLUMN")]
    pub label_column: Option<String>,
    /// Use this generic guest instead of the built-in one (guest development).
    #[arg(long, hide = true)]
    pub guest: Option<PathBuf>,
    /// Make a component that exports `wasi:http/incoming-handler` (the model
    /// behind serve's routes: POST /v1/models/NAME/predict, GET /v1/models/NAME,
    /// GET /v1/health), for `wasmtime serve` and other wasi:http hosts, instead
    /// of one that exports the model to wasmops hosts.
    #[arg(long)]
    pub http: bool,
    #[command(flatten)]
    pub claims: ClaimsArgs,
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl BuildCommand {
    /// `wasmops build MODEL --out OUT` with everything else at its default.
    pub fn new(model: PathBuf, out: PathBuf) -> BuildCommand {
        BuildCommand {
            model,
            out,
            pipeline: None,
            name: None,
            version: "0.1.0".into(),
            input_shapes: vec![],
            training_data: None,
            feature_names: vec![],
            label_column: None,
            guest: None,
            http: false,
            claims: ClaimsArgs::default(),
            cache: CacheArgs::default(),
        }
    }

    pub fn execute(self) -> Result<()> {
        let model = &self.model;
        let training = self
            .training_data
            .as_ref()
            .map(|p| self.training(p))
            .transpose()?;
        let onnx = files::read(model)?;
        let pipeline = match &self.pipeline {
            Some(p) => std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?,
            None => String::new(),
        };
        let name = self.name.clone().unwrap_or_else(|| {
            model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into())
        });
        let guest = self.guest.as_deref().map(files::read).transpose()?;
        // Reproducible builds: the claims' creation time from SOURCE_DATE_EPOCH when set.
        let created_at = std::env::var("SOURCE_DATE_EPOCH")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(wasmops_trust::Timestamp::from_unix);
        let opts = BuildOptions {
            name,
            version: self.version.clone(),
            pipeline,
            input_shapes: self.input_shapes.clone(),
            cache_dir: self.cache.dir(),
            guest,
            claims: self.claims.resolve()?,
            training,
            created_at,
            http: self.http,
        };
        let built = wasmops_compiler::build(&onnx, &opts)
            .with_context(|| format!("cannot build {}", model.display()))?;
        files::write_atomic(&self.out, &built.component)?;
        eprintln!(
            "built {} ({:.2} MB, {} guest; model as NNEF {:.2} MB; convert {:.2}s, snapshot {:.2}s)",
            self.out.display(),
            built.component.len() as f64 / 1e6,
            built.guest,
            built.nnef_bytes as f64 / 1e6,
            built.convert_time.as_secs_f64(),
            built.snapshot_time.as_secs_f64()
        );
        eprintln!(
            "claims: {} {} sequence {}, capabilities {:?}",
            built.claims.name,
            built.claims.version,
            built.claims.sequence,
            built.claims.capabilities
        );
        if let Some(p) = &built.claims.profile {
            eprintln!(
                "profile: {} training rows, {} feature columns{}, {} output columns",
                p.rows,
                p.columns.len(),
                p.label
                    .as_ref()
                    .map(|l| format!(", label `{}`", l.name))
                    .unwrap_or_default(),
                p.outputs.len()
            );
        }
        for note in &built.notes {
            eprintln!("note: {note}");
        }
        Ok(())
    }

    /// Reads `--training-data`: feature columns (numbers) and the label.
    fn training(&self, path: &std::path::Path) -> Result<Training> {
        let names = (!self.feature_names.is_empty()).then_some(self.feature_names.as_slice());
        let text = files::read(path)?;
        let json_inputs = text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
            && serde_json::from_slice::<serde_json::Value>(&text)
                .is_ok_and(|v| v.get("inputs").is_some());
        if json_inputs {
            anyhow::ensure!(
                self.label_column.is_none(),
                "--label-column needs CSV (or {{\"columns\": …}}) training data"
            );
            let inputs = tensors::parse_untyped(&String::from_utf8_lossy(&text))
                .with_context(|| format!("{}", path.display()))?;
            let columns = profile::columns_of(&inputs, names)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            return Ok(Training {
                columns,
                label: None,
            });
        }
        let table = wasmops_drift::Table::read(path, "training", None)?;
        let mut label = None;
        let mut columns = vec![];
        if let Some(l) = &self.label_column {
            anyhow::ensure!(
                table.column(l).is_some(),
                "{}: no column `{l}` for --label-column",
                path.display()
            );
        }
        for c in &table.columns {
            if Some(&c.name) == self.label_column.as_ref() {
                label = Some(wasmops_drift::quality::profile(&c.name, &c.values));
                continue;
            }
            match &c.values {
                wasmops_drift::Values::Numeric(v) => columns.push((c.name.clone(), v.clone())),
                wasmops_drift::Values::Categorical(v) => anyhow::bail!(
                    "{}: column `{}` holds text (`{}`), and model inputs are numbers: encode it first, or name it with --label-column",
                    path.display(),
                    c.name,
                    v.iter().flatten().next().map_or("", |s| s.as_str())
                ),
            }
        }
        if let Some(names) = names {
            anyhow::ensure!(
                names.len() == columns.len(),
                "{} --feature-names for {} feature columns",
                names.len(),
                columns.len()
            );
            for (c, n) in columns.iter_mut().zip(names) {
                c.0 = n.clone();
            }
        }
        Ok(Training { columns, label })
    }
}
