//! `wasmops sign`: embed a signature (and optionally a delegation) in a component.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::files;

/// Embed an Ed25519 signature (wasmsign2 layout) in a component.
#[derive(Parser)]
pub struct SignCommand {
    pub wasm: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    /// Write here instead of replacing the input file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Embed this delegation (from `wasmops trust delegate`) so the component carries its own credentials.
    #[arg(long)]
    pub delegation: Option<PathBuf>,
}

impl SignCommand {
    pub fn execute(self) -> Result<()> {
        let key = wasmops_trust::ops::read_secret(&self.key)?;
        let mut bytes = files::read(&self.wasm)?;
        if let Some(d) = &self.delegation {
            let doc = files::read(d)?;
            let parsed = wasmops_trust::Signed::<wasmops_trust::Delegation>::parse(&doc)
                .with_context(|| format!("{}", d.display()))?;
            if parsed.signed.public_key()?.key_id() != key.public().key_id() {
                bail!(
                    "{} delegates to key {}, not to the signing key {}",
                    d.display(),
                    parsed.signed.public_key()?.key_id(),
                    key.public().key_id()
                );
            }
            bytes = wasmops_sign::set_custom_section(
                &bytes,
                wasmops_trust::policy::DELEGATION_SECTION,
                Some(&doc),
            )?;
        }
        let signed = wasmops_sign::sign(&bytes, &key)
            .with_context(|| format!("cannot sign {}", self.wasm.display()))?;
        let out = self.out.as_ref().unwrap_or(&self.wasm);
        files::write_atomic(out, &signed)?;
        eprintln!(
            "signed {} with key {}",
            out.display(),
            key.public().key_id()
        );
        Ok(())
    }
}
