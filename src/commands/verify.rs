//! `wasmops verify`: signature, trust chain, claims and rollback state.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use crate::args::TrustArgs;
use crate::files;

/// Check a component's signature, trust chain, claims and rollback state; exit 0 when valid.
#[derive(Parser)]
pub struct VerifyCommand {
    pub wasm: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
}

impl VerifyCommand {
    pub fn execute(self) -> Result<()> {
        let wasm = &self.wasm;
        let policy = self
            .trust
            .policy()?
            .context("no trusted key: pass --trust KEY.pub or --root ROOT.pub --trust-dir DIR")?;
        let a = policy
            .check(&files::read(wasm)?)
            .with_context(|| format!("{} is not trusted", wasm.display()))?;
        policy.commit(&a)?;
        let via = a
            .delegation
            .as_ref()
            .map(|d| format!(" (delegation `{d}`)"))
            .unwrap_or_default();
        println!(
            "{}: valid signature by key {}{via} (content sha256 {})",
            wasm.display(),
            a.verified.key_id,
            hex::encode(a.verified.content_sha256)
        );
        if let Some(c) = &a.claims {
            println!("claims: {} {} sequence {}", c.name, c.version, c.sequence);
        }
        Ok(())
    }
}
