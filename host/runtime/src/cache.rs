//! Compiled code on disk, so a device compiles each model once.
//!
//! Loading a cache entry runs its native code, so the cache is guarded like
//! one would guard a binary (issue 24.8):
//! - the directory is private: created `0700`, and refused if someone else
//!   owns it or others may write to it (a world-writable `/tmp` fallback an
//!   attacker pre-created gets no use);
//! - every entry is sealed with an HMAC-SHA256 under a key kept in the
//!   directory (`key`, `0600`, random per cache) over its name and bytes, so
//!   a file planted, altered or renamed there is refused, not run;
//! - writes are synced before they are renamed into place;
//! - the directory is kept under [`MAX_CACHE_BYTES`], least recently used
//!   entries first, so old versions do not fill a device's disk.
//!
//! A component's key covers its SHA-256 and wasmtime's own compatibility hash
//! (its version plus every engine setting that changes generated code) and
//! [`CODEGEN_PATCHES`]: a new wasmtime, a different config or a different patch
//! of our vendored compiler can never load a stale artifact.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::HostError;

/// The patches in `host/vendor` that change generated code, as a digest of their
/// bytes (`build.rs`). wasmtime's own hash cannot see them (the version string
/// stays 48.0.8), so a stock-wasmtime artifact must not load here.
pub(crate) const CODEGEN_PATCHES: &str = env!("WASMOPS_CODEGEN_PATCHES");

/// Largest size of a cache directory. A compiled model is 20–40 MB and the
/// function cache a few MB per model, so this holds a device's active,
/// previous and staged versions many times over.
pub const MAX_CACHE_BYTES: u64 = 1 << 30;

const TAG_LEN: usize = 32;

/// An opened cache directory: private, with its sealing key.
#[derive(Clone)]
pub struct CacheDir {
    root: PathBuf,
    key: Arc<[u8; 32]>,
    max_bytes: u64,
}

impl std::fmt::Debug for CacheDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheDir")
            .field("root", &self.root)
            .finish()
    }
}

impl CacheDir {
    /// Opens `root`, creating it `0700`; refuses a directory this process does
    /// not own or that others may write to.
    pub fn open(root: &Path) -> Result<CacheDir, HostError> {
        let io = |what: &str, e: std::io::Error| {
            HostError::Io(format!("compile cache {}: {what}: {e}", root.display()))
        };
        if !root.exists() {
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(root).map_err(|e| io("cannot create", e))?;
        }
        check_private(root)?;
        let key_path = root.join("key");
        let key = match std::fs::read(&key_path) {
            Ok(k) if k.len() == 32 => k,
            Ok(_) => {
                return Err(HostError::Io(format!(
                    "{} is not a 32-byte key",
                    key_path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut k = vec![0u8; 32];
                getrandom::fill(&mut k).map_err(|e| HostError::Io(format!("randomness: {e}")))?;
                wasmops_trust::write_atomic_mode(&key_path, &k, Some(0o600))
                    .map_err(|e| HostError::Io(format!("{}: {e}", key_path.display())))?;
                k
            }
            Err(e) => return Err(io("cannot read its key", e)),
        };
        Ok(CacheDir {
            root: root.to_path_buf(),
            key: Arc::new(key.try_into().expect("32 bytes")),
            max_bytes: MAX_CACHE_BYTES,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn mac(&self, name: &str, bytes: &[u8]) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&*self.key).expect("any key length");
        m.update(&(name.len() as u64).to_le_bytes());
        m.update(name.as_bytes());
        m.update(bytes);
        m
    }

    /// Writes `bytes` as entry `rel` (tag first), synced, then renamed into place.
    fn write_sealed(&self, rel: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        let path = self.root.join(rel);
        let dir = path.parent().expect("entries live in the cache");
        std::fs::create_dir_all(dir)?;
        let tag = self.mac(rel, bytes).finalize().into_bytes();
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&tag)?;
        tmp.write_all(bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }

    /// Entry `rel`'s bytes if its seal holds. A refused entry is removed; a
    /// used one is marked recently used.
    fn read_sealed(&self, rel: &str) -> Option<Vec<u8>> {
        let path = self.root.join(rel);
        let mut data = std::fs::read(&path).ok()?;
        let sealed = data.len() >= TAG_LEN && {
            let (tag, body) = data.split_at(TAG_LEN);
            self.mac(rel, body).verify_slice(tag).is_ok()
        };
        if !sealed {
            tracing::warn!(
                "refusing cache entry {}: not sealed by this cache (altered, planted or renamed)",
                path.display()
            );
            let _ = std::fs::remove_file(&path);
            return None;
        }
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
        data.drain(..TAG_LEN);
        Some(data)
    }

    /// Deletes least recently used entries until the directory is at most
    /// 80% of its limit (when it is over the limit). Returns bytes freed.
    pub fn evict(&self) -> u64 {
        let mut entries = vec![];
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(list) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in list.flatten() {
                let Ok(m) = e.metadata() else { continue };
                if m.is_dir() {
                    stack.push(e.path());
                } else if e.path() != self.root.join("key") {
                    let used = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    entries.push((used, m.len(), e.path()));
                }
            }
        }
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        if total <= self.max_bytes {
            return 0;
        }
        entries.sort();
        let target = self.max_bytes / 10 * 8;
        let mut freed = 0;
        for (_, len, path) in entries {
            if total <= target {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                freed += len;
            }
        }
        freed
    }

    pub fn components(&self) -> CompileCache {
        CompileCache { dir: self.clone() }
    }

    pub fn functions(&self) -> FunctionCache {
        FunctionCache { dir: self.clone() }
    }
}

/// Refuses a cache directory another user owns or others may write to. Owner:
/// a file created in it is ours; the directory must have the same owner.
#[cfg(unix)]
fn check_private(root: &Path) -> Result<(), HostError> {
    use std::os::unix::fs::MetadataExt;
    let refuse = |why: String| {
        Err(HostError::Io(format!(
            "compile cache {} refused: {why}",
            root.display()
        )))
    };
    let meta = std::fs::symlink_metadata(root)
        .map_err(|e| HostError::Io(format!("compile cache {}: {e}", root.display())))?;
    if !meta.is_dir() {
        return refuse("not a directory (a symlink is not accepted)".into());
    }
    if meta.mode() & 0o022 != 0 {
        return refuse(format!(
            "mode {:o} lets others write to it (chmod 700)",
            meta.mode() & 0o777
        ));
    }
    let probe = tempfile::NamedTempFile::new_in(root)
        .map_err(|e| HostError::Io(format!("compile cache {}: {e}", root.display())))?;
    let me = probe
        .as_file()
        .metadata()
        .map_err(|e| HostError::Io(format!("compile cache {}: {e}", root.display())))?
        .uid();
    if meta.uid() != me {
        return refuse(format!("owned by uid {}, not this user ({me})", meta.uid()));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_root: &Path) -> Result<(), HostError> {
    Ok(())
}

/// Where a loaded component's code came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Compiled by this process.
    Compiled,
    /// This engine's own earlier compilation.
    Cache,
    /// Compiled elsewhere for this architecture (a provisioning bundle).
    Precompiled,
}

/// Compiled components, one sealed file per component and engine configuration.
pub struct CompileCache {
    dir: CacheDir,
}

impl CompileCache {
    /// The component cache of the (private) directory `dir`.
    pub fn open(dir: &Path) -> Result<CompileCache, HostError> {
        Ok(CacheDir::open(dir)?.components())
    }

    fn name(&self, engine: &Engine, content_sha256: &str) -> String {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        CODEGEN_PATCHES.hash(&mut h);
        format!("{content_sha256}-{:016x}.cwasm", h.finish())
    }

    /// The name of a compilation made elsewhere for machines of `arch` (as
    /// `std::env::consts::ARCH` spells it): it cannot carry the device's own
    /// compatibility hash (that hashes the CPU features the device detects),
    /// so wasmtime's checks at load time decide whether it fits this engine.
    fn precompiled_name(arch: &str, content_sha256: &str) -> String {
        let patches = &wasmops_trust::sha256_hex(CODEGEN_PATCHES.as_bytes())[..16];
        format!("precompiled/{content_sha256}-{arch}-{patches}.cwasm")
    }

    /// A cached compilation, if one is present, sealed by this cache and loads:
    /// this engine's own, else one precompiled for this architecture (by
    /// `wasmops provision`). A refused or unreadable entry is removed.
    pub fn load(&self, engine: &Engine, content_sha256: &str) -> Option<(Component, Origin)> {
        let own = self.name(engine, content_sha256);
        let pre = Self::precompiled_name(std::env::consts::ARCH, content_sha256);
        [(own, Origin::Cache), (pre, Origin::Precompiled)]
            .into_iter()
            .find_map(|(name, origin)| {
                let bytes = self.dir.read_sealed(&name)?;
                // SAFETY: the entry carries this cache's seal, which only
                // `store`/`store_precompiled` make, from `Component::serialize`;
                // wasmtime also checks the header, its version, the target, and
                // that every setting and CPU feature the code assumes holds here.
                match unsafe { Component::deserialize(engine, &bytes) } {
                    Ok(c) => Some((c, origin)),
                    Err(e) => {
                        tracing::warn!("discarding unusable compiled component {name}: {e:#}");
                        let _ = std::fs::remove_file(self.dir.root.join(&name));
                        None
                    }
                }
            })
    }

    /// Seals `serialized` (a component compiled for machines of `arch`) as
    /// their precompiled entry; a device of that architecture opening this
    /// cache loads it instead of compiling.
    pub fn store_precompiled(
        &self,
        arch: &str,
        content_sha256: &str,
        serialized: &[u8],
    ) -> std::io::Result<PathBuf> {
        self.dir
            .write_sealed(&Self::precompiled_name(arch, content_sha256), serialized)
    }

    /// Writes a sealed entry (synced, renamed into place: a crash never leaves
    /// half an artifact), then evicts old entries if the cache is over its limit.
    pub fn store(
        &self,
        engine: &Engine,
        content_sha256: &str,
        component: &Component,
    ) -> std::io::Result<PathBuf> {
        let bytes = component.serialize().map_err(std::io::Error::other)?;
        let path = self
            .dir
            .write_sealed(&self.name(engine, content_sha256), &bytes)?;
        let freed = self.dir.evict();
        if freed > 0 {
            tracing::info!("compile cache: evicted {freed} bytes of least recently used entries");
        }
        Ok(path)
    }
}

/// Cranelift's per-function cache. Every model component carries the same
/// generic guest code and differs only in its data, so once one model has been
/// compiled, the next compiles mostly from here (see `cargo bench`/README).
#[derive(Debug)]
pub struct FunctionCache {
    dir: CacheDir,
}

impl FunctionCache {
    fn name(key: &[u8]) -> String {
        let name = wasmops_trust::sha256_hex(key);
        format!("functions/{}/{}", &name[..2], &name[2..])
    }
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        self.dir
            .read_sealed(&Self::name(key))
            .map(std::borrow::Cow::Owned)
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        self.dir.write_sealed(&Self::name(key), &value).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_sealed_to_their_cache_and_name() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("cache");
        let cache = CacheDir::open(&root).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&root), 0o700);
            assert_eq!(mode(&root.join("key")), 0o600);
        }
        cache.write_sealed("a.cwasm", b"native code").unwrap();
        assert_eq!(cache.read_sealed("a.cwasm").unwrap(), b"native code");
        // Reopened: same key, same entries.
        let again = CacheDir::open(&root).unwrap();
        assert_eq!(again.read_sealed("a.cwasm").unwrap(), b"native code");
        // Renamed: refused (the seal covers the name) and removed.
        std::fs::copy(root.join("a.cwasm"), root.join("b.cwasm")).unwrap();
        assert!(cache.read_sealed("b.cwasm").is_none());
        assert!(!root.join("b.cwasm").exists());
        // Altered: refused and removed.
        let mut bytes = std::fs::read(root.join("a.cwasm")).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(root.join("a.cwasm"), &bytes).unwrap();
        assert!(cache.read_sealed("a.cwasm").is_none());
        // Planted (what an unsealed cache held): refused.
        std::fs::write(root.join("c.cwasm"), b"\x7fELF not ours").unwrap();
        assert!(cache.read_sealed("c.cwasm").is_none());
        // Another cache's entry: refused.
        let other = CacheDir::open(&tmp.path().join("other")).unwrap();
        other.write_sealed("d.cwasm", b"theirs").unwrap();
        std::fs::copy(tmp.path().join("other/d.cwasm"), root.join("d.cwasm")).unwrap();
        assert!(cache.read_sealed("d.cwasm").is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_directory_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("shared");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = CacheDir::open(&root).unwrap_err().to_string();
        assert!(err.contains("lets others write"), "{err}");
        let link = tmp.path().join("link");
        let private = tmp.path().join("private");
        std::fs::create_dir(&private).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let err = CacheDir::open(&link).unwrap_err().to_string();
        assert!(err.contains("symlink"), "{err}");
    }

    #[test]
    fn least_recently_used_entries_are_evicted_past_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let mut cache = CacheDir::open(tmp.path()).unwrap();
        cache.max_bytes = 10_000;
        let entry = vec![7u8; 2_000];
        for i in 0..4 {
            cache.write_sealed(&format!("e{i}"), &entry).unwrap();
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i);
            std::fs::File::options()
                .write(true)
                .open(tmp.path().join(format!("e{i}")))
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        assert_eq!(cache.evict(), 0, "under the limit: nothing goes");
        // e0 is used again: e1 is now the oldest.
        cache.read_sealed("e0").unwrap();
        cache.write_sealed("e4", &entry).unwrap();
        cache.write_sealed("e5", &entry).unwrap();
        assert!(cache.evict() > 0);
        let left: Vec<bool> = (0..6)
            .map(|i| tmp.path().join(format!("e{i}")).exists())
            .collect();
        assert_eq!(left, [true, false, false, false, true, true], "{left:?}");
        assert!(tmp.path().join("key").exists());
    }
}
