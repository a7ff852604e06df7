//! `wasmops keygen`: an Ed25519 key pair.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Parser;
use wasmops_sign::SecretKey;

use crate::files;

/// Create an Ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.
#[derive(Parser)]
pub struct KeygenCommand {
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
}

impl KeygenCommand {
    pub fn execute(self) -> Result<()> {
        let (s, p) = keygen(&self.out)?;
        eprintln!(
            "wrote {} (secret, mode 0600) and {}",
            s.display(),
            p.display()
        );
        Ok(())
    }
}

/// Writes `prefix.key` (0600) and `prefix.pub`; returns their paths.
pub fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    let key = SecretKey::generate()?;
    let secret = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    files::write_atomic_mode(&secret, &key.to_bytes(), Some(0o600))?;
    files::write_atomic(&public, &key.public().to_bytes())?;
    Ok((secret, public))
}
