//! Trust metadata as files, the way a release team keeps it and a device
//! receives it:
//!
//! ```text
//! trust/
//!   root.1.json root.2.json ...   the root chain (each signed by the one before)
//!   delegations/NAME.json         release keys the root vouches for
//!   revocations.json              revoked keys and delegations
//! ```
//!
//! Secret keys never live here.

use std::path::{Path, PathBuf};

use crate::TrustError;
use crate::metadata::{Delegation, Document, Revocations, Root, Signed};

/// Everything a verifier needs besides the root public key it is anchored
/// to; also the JSON a coordinator serves at `GET /v1/trust` and takes at
/// `PUT /v1/trust`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustMetadata {
    pub roots: Vec<Signed<Root>>,
    #[serde(default)]
    pub delegations: Vec<Signed<Delegation>>,
    #[serde(default)]
    pub revocations: Option<Signed<Revocations>>,
}

/// A delegation name usable as `delegations/NAME.json`: no separators, no
/// dot-files, not empty, short.
pub(crate) fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@+".contains(&b))
}

#[derive(Debug, Clone)]
pub struct TrustDir {
    dir: PathBuf,
}

fn io(path: &Path, e: impl std::fmt::Display) -> TrustError {
    TrustError::Io(format!("{}: {e}", path.display()))
}

fn read_doc<T: Document>(path: &Path) -> Result<Signed<T>, TrustError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    Signed::parse(&bytes).map_err(|e| match e {
        TrustError::MalformedMetadata { reason, .. } => TrustError::MalformedMetadata {
            what: path.display().to_string(),
            reason,
        },
        other => other,
    })
}

impl TrustDir {
    pub fn new(dir: impl Into<PathBuf>) -> TrustDir {
        TrustDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn root_path(&self, version: u64) -> PathBuf {
        self.dir.join(format!("root.{version}.json"))
    }

    pub fn delegation_path(&self, name: &str) -> PathBuf {
        self.dir.join("delegations").join(format!("{name}.json"))
    }

    pub fn revocations_path(&self) -> PathBuf {
        self.dir.join("revocations.json")
    }

    /// Reads every document; roots come back sorted by version.
    pub fn load(&self) -> Result<TrustMetadata, TrustError> {
        let mut meta = TrustMetadata::default();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io(&self.dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| io(&self.dir, e))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with("root.") && name.ends_with(".json") {
                meta.roots.push(read_doc(&path)?);
            }
        }
        meta.roots.sort_by_key(|r| r.signed.version);
        let delegations = self.dir.join("delegations");
        if delegations.is_dir() {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(&delegations)
                .map_err(|e| io(&delegations, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            paths.sort();
            for p in paths {
                meta.delegations.push(read_doc(&p)?);
            }
        }
        let revocations = self.revocations_path();
        if revocations.exists() {
            meta.revocations = Some(read_doc(&revocations)?);
        }
        Ok(meta)
    }

    /// The newest root in the directory.
    pub fn latest_root(&self) -> Result<Signed<Root>, TrustError> {
        self.load()?.roots.pop().ok_or_else(|| {
            TrustError::Io(format!(
                "{}: no root.N.json; run `wasmops trust init`",
                self.dir.display()
            ))
        })
    }

    /// Writes every document of `meta` (a newer set from the coordinator);
    /// documents only here stay (a delegation the set no longer names is
    /// judged by the revocation list, not by its absence).
    pub fn save_all(&self, meta: &TrustMetadata) -> Result<(), TrustError> {
        for r in &meta.roots {
            self.save_root(r)?;
        }
        for d in &meta.delegations {
            if !valid_file_name(&d.signed.name) {
                return Err(TrustError::MalformedMetadata {
                    what: format!("delegation `{}`", d.signed.name),
                    reason: "its name cannot be a file name".into(),
                });
            }
            self.save_delegation(d)?;
        }
        if let Some(list) = &meta.revocations {
            self.save_revocations(list)?;
        }
        Ok(())
    }

    pub fn save_root(&self, root: &Signed<Root>) -> Result<PathBuf, TrustError> {
        self.save(&self.root_path(root.signed.version), &root.to_json())
    }

    pub fn save_delegation(&self, d: &Signed<Delegation>) -> Result<PathBuf, TrustError> {
        self.save(&self.delegation_path(&d.signed.name), &d.to_json())
    }

    pub fn save_revocations(&self, r: &Signed<Revocations>) -> Result<PathBuf, TrustError> {
        self.save(&self.revocations_path(), &r.to_json())
    }

    fn save(&self, path: &Path, bytes: &[u8]) -> Result<PathBuf, TrustError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        }
        crate::write_atomic(path, bytes).map_err(|e| io(path, e))?;
        Ok(path.to_path_buf())
    }
}
