//! `wasmops run`: one prediction.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;

use crate::args::HostArgs;
use crate::tensors;

/// Run one prediction; prints {"outputs":[...]} on stdout.
#[derive(Parser)]
pub struct RunCommand {
    pub wasm: PathBuf,
    /// Input JSON file, or `-` for stdin.
    #[arg(long)]
    pub input: PathBuf,
    #[command(flatten)]
    pub host: HostArgs,
}

impl RunCommand {
    pub fn execute(self) -> Result<()> {
        println!("{}", self.predict()?);
        Ok(())
    }

    /// The prediction's outputs as JSON.
    pub fn predict(&self) -> Result<String> {
        let (wasm, input) = (&self.wasm, &self.input);
        let host = self.host.host()?;
        let loaded = host
            .load_file(wasm)
            .with_context(|| format!("cannot load {}", wasm.display()))?;
        let mut instance = loaded.instantiate()?;
        let info = instance.metadata()?;
        let text = if input == Path::new("-") {
            std::io::read_to_string(std::io::stdin()).context("cannot read the input from stdin")?
        } else {
            std::fs::read_to_string(input)
                .with_context(|| format!("cannot read {}", input.display()))?
        };
        let inputs =
            tensors::parse_inputs(&text, &info).with_context(|| format!("{}", input.display()))?;
        let outputs = instance.predict(&inputs)?;
        Ok(tensors::outputs_json(&outputs))
    }
}
