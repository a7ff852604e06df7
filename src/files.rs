//! File output that never leaves a partial file behind.

use std::path::Path;

use anyhow::{Context, Result};

/// Writes to a temporary file beside `path` and renames it into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, None)
}

/// Like [`write_atomic`] with Unix permissions (e.g. 0o600 for secret keys).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    wasmops_trust::write_atomic_mode(path, bytes, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}
