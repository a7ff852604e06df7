//! `wasmops build`: ONNX model (+ preprocessing) → one self-contained component.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
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
    /// Training data ({"inputs":[...]}, rows × features): its per-feature deciles become
    /// signed bin edges that devices summarise live inputs with (drift against training).
    #[arg(long)]
    pub training_data: Option<PathBuf>,
    /// Use this generic guest instead of the built-in one (guest development).
    #[arg(long, hide = true)]
    pub guest: Option<PathBuf>,
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
            guest: None,
            claims: ClaimsArgs::default(),
            cache: CacheArgs::default(),
        }
    }

    pub fn execute(self) -> Result<()> {
        let model = &self.model;
        let feature_bins = match &self.training_data {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                let inputs =
                    tensors::parse_untyped(&text).with_context(|| format!("{}", p.display()))?;
                let bins = wasmops_compiler::bins::quantile_edges(
                    &inputs,
                    wasmops_compiler::bins::TRAINING_BINS,
                );
                anyhow::ensure!(
                    !bins.is_empty(),
                    "{}: no [rows, features] float input with two or more finite rows",
                    p.display()
                );
                bins
            }
            None => Default::default(),
        };
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
            feature_bins,
            created_at,
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
        Ok(())
    }
}
