//! Compiled components on disk, so a device compiles each model once.
//!
//! The key covers the component's SHA-256 and wasmtime's own compatibility hash
//! (its version plus every engine setting that changes generated code) and
//! [`CODEGEN_PATCHES`]: a new wasmtime, a different config or a different patch
//! of our vendored compiler can never load a stale artifact.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;

use wasmtime::Engine;
use wasmtime::component::Component;

/// The patches in `host/vendor` that change generated code, as a digest of their
/// bytes (`build.rs`). wasmtime's own hash cannot see them (the version string
/// stays 48.0.8), so a stock-wasmtime artifact must not load here.
pub(crate) const CODEGEN_PATCHES: &str = env!("WASMOPS_CODEGEN_PATCHES");

pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    pub fn new(dir: PathBuf) -> CompileCache {
        CompileCache { dir }
    }

    fn path(&self, engine: &Engine, content_sha256: &str) -> PathBuf {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CODEGEN_PATCHES.hash(&mut h);
        self.dir
            .join(format!("{content_sha256}-{:016x}.cwasm", h.finish()))
    }

    /// A cached compilation, if one is present and loads. A corrupt entry is removed.
    pub fn load(&self, engine: &Engine, content_sha256: &str) -> Option<Component> {
        let path = self.path(engine, content_sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: files in the cache directory are written only by `store` below from
        // `Component::serialize` of this engine configuration; wasmtime also checks
        // the header and compatibility hash on load.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(
                    "discarding unreadable compiled component {}: {e}",
                    path.display()
                );
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes atomically (temp file + rename) so a crash never leaves half an artifact.
    pub fn store(
        &self,
        engine: &Engine,
        content_sha256: &str,
        component: &Component,
    ) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let path = self.path(engine, content_sha256);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }
}

/// Cranelift's per-function cache. Every model component carries the same
/// generic guest code and differs only in its data, so once one model has been
/// compiled, the next compiles mostly from here (see `cargo bench`/README).
#[derive(Debug)]
pub struct FunctionCache {
    dir: PathBuf,
}

impl FunctionCache {
    pub fn new(dir: PathBuf) -> FunctionCache {
        FunctionCache { dir }
    }

    fn path(&self, key: &[u8]) -> PathBuf {
        let name = wasmops_trust::sha256_hex(key);
        self.dir.join(&name[..2]).join(&name[2..])
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        std::fs::read(self.path(key))
            .ok()
            .map(std::borrow::Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let path = self.path(key);
        let Some(dir) = path.parent() else {
            return false;
        };
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, &value)?;
            tmp.persist(&path).map_err(|e| e.error)?;
            Ok(())
        };
        write().is_ok()
    }
}
