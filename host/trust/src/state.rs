//! What a device has accepted, kept across restarts: the highest sequence per
//! model name (rollback protection), the newest root it has walked to and the
//! newest revocation list version (metadata rollback protection).
//!
//! One JSON file, rewritten atomically under an exclusive file lock, so two
//! processes sharing a state directory cannot lose each other's updates.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrustError;
use crate::metadata::{Root, Signed};

const STATE_FILE: &str = "trust-state.json";
const LOCK_FILE: &str = "trust-state.lock";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Highest accepted sequence per model name.
    #[serde(default)]
    pub models: BTreeMap<String, u64>,
    /// The newest root this device has verified; walks start here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<Signed<Root>>,
    #[serde(default)]
    pub revocations_version: u64,
}

impl State {
    /// Refuses `sequence` if a higher one was accepted for `name`.
    pub fn check_sequence(&self, name: &str, sequence: u64) -> Result<(), TrustError> {
        match self.models.get(name) {
            Some(&highest) if sequence < highest => Err(TrustError::Rollback {
                name: name.into(),
                sequence,
                highest,
            }),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    pub fn new(dir: impl Into<PathBuf>) -> StateDir {
        StateDir { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn err(&self, reason: impl std::fmt::Display) -> TrustError {
        TrustError::State {
            path: self.dir.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// The current state; empty for a new directory. A corrupt file is an error,
    /// never silently reset (that would re-open every rollback).
    pub fn load(&self) -> Result<State, TrustError> {
        match std::fs::read(self.dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.err(format!("{STATE_FILE} is corrupt ({e}); refusing to guess"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Applies `change` to the state under the lock and writes it atomically.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut State) -> Result<R, TrustError>,
    ) -> Result<R, TrustError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.err(e))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(LOCK_FILE))
            .map_err(|e| self.err(e))?;
        lock.lock()
            .map_err(|e| self.err(format!("cannot lock: {e}")))?;
        let mut state = self.load()?;
        let before = state.clone();
        let result = change(&mut state)?;
        if state != before {
            let bytes = serde_json::to_vec_pretty(&state).expect("state serialises");
            crate::write_atomic(&self.dir.join(STATE_FILE), &bytes).map_err(|e| self.err(e))?;
        }
        Ok(result)
    }

    /// Refuses `sequence` if a higher one was accepted for `name`.
    pub fn check_sequence(&self, name: &str, sequence: u64) -> Result<(), TrustError> {
        self.load()?.check_sequence(name, sequence)
    }

    /// Records that (`name`, `sequence`) was accepted, re-checking under the lock.
    pub fn accept(&self, name: &str, sequence: u64) -> Result<(), TrustError> {
        self.update(|s| {
            s.check_sequence(name, sequence)?;
            s.models.insert(name.to_string(), sequence);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_is_refused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::new(dir.path().join("state"));
        s.accept("churn", 5).unwrap();
        s.accept("churn", 5).unwrap(); // reinstalling the same release is fine
        s.accept("fraud", 1).unwrap();
        let reopened = StateDir::new(dir.path().join("state"));
        assert!(matches!(
            reopened.check_sequence("churn", 4),
            Err(TrustError::Rollback { highest: 5, .. })
        ));
        assert!(matches!(
            reopened.accept("churn", 3),
            Err(TrustError::Rollback { .. })
        ));
        reopened.accept("churn", 6).unwrap();
        assert_eq!(reopened.load().unwrap().models["churn"], 6);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_not_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let err = StateDir::new(dir.path())
            .check_sequence("x", 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("corrupt"), "{err}");
    }
}
