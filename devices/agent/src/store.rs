//! Where a device keeps components: content-addressed slot files, downloaded
//! once (resumable, size-capped, sha256-checked) and verified once per
//! process. One agent owns its store; a simulated fleet shares one, so a
//! thousand devices in one process download and compile a version once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmops_runtime::{Host, HostConfig, LoadedModel, SignaturePolicy};
use wasmops_trust::Timestamp;

use crate::download::{Request, Retry, download_with_retries};
use wasmops_protocol::device::ArtifactRef;

pub struct ModelStore {
    host: Host,
    dir: PathBuf,
    /// Shared by several devices: never delete slots another device may use.
    shared: bool,
    http: reqwest::Client,
    tls: wasmops_tls::ClientTls,
    loaded: Mutex<HashMap<String, Weak<LoadedModel>>>,
    /// One verification and compile per sha at a time; the others wait and share it.
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    fetching: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ModelStore {
    /// Downloads trust what `tls` does.
    pub fn new(
        host_config: HostConfig,
        dir: PathBuf,
        shared: bool,
        tls: wasmops_tls::ClientTls,
    ) -> Result<ModelStore> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(ModelStore {
            host: Host::new(host_config)?,
            dir,
            shared,
            // A transfer may take long on a slow link; a link silent for 30 s is dead.
            http: crate::download::client(&tls, Duration::from_secs(30))?,
            tls,
            loaded: Mutex::default(),
            loading: Mutex::default(),
            fetching: Default::default(),
        })
    }

    /// What this store's downloads (and its agents' other links) trust.
    pub fn tls(&self) -> &wasmops_tls::ClientTls {
        &self.tls
    }

    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.wasm"))
    }

    /// Downloads the artifact unless it is here already; concurrent callers
    /// for the same sha wait for one download.
    pub async fn fetch(
        &self,
        coordinator: &str,
        token: &str,
        sha256: &str,
        size: u64,
        cap: u64,
    ) -> Result<PathBuf> {
        let lock = self
            .fetching
            .lock()
            .await
            .entry(sha256.to_string())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let path = self.path(sha256);
        if path.exists() && !self.shared {
            // A slot damaged on disk is set aside, not trusted: fetch it again.
            self.set_aside_if_damaged(sha256);
        }
        if !path.exists() {
            let r = Request {
                coordinator,
                token,
                sha256,
                size,
                max_bytes: cap,
                out: &path,
            };
            download_with_retries(&self.http, &r, Retry::default()).await?;
        }
        Ok(path)
    }

    /// Downloads a health-probe sample stored as an artifact and parses it;
    /// nothing of it stays on disk.
    pub async fn fetch_probe(
        &self,
        coordinator: &str,
        token: &str,
        probe: &ArtifactRef,
    ) -> Result<serde_json::Value> {
        // One fetch of a sample at a time (a simulated fleet shares the directory).
        let lock = self
            .fetching
            .lock()
            .await
            .entry(probe.sha256.clone())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let path = self.dir.join(format!("{}.probe", probe.sha256));
        let r = Request {
            coordinator,
            token,
            sha256: &probe.sha256,
            size: probe.size_bytes,
            max_bytes: wasmops_protocol::MAX_PROBE_BYTES as u64,
            out: &path,
        };
        let fetched = download_with_retries(&self.http, &r, Retry::default()).await;
        let parsed = fetched.map_err(anyhow::Error::from).and_then(|()| {
            let bytes = std::fs::read(&path)?;
            serde_json::from_slice(&bytes).context("the probe sample is not JSON")
        });
        let _ = std::fs::remove_file(&path);
        parsed.context("cannot fetch the probe sample")
    }

    /// Verifies (trust policy) and compiles the slot `sha256`, or returns the
    /// copy already loaded in this process. Nothing is deleted on failure: the
    /// caller knows whether the slot is still in use (see [`ModelStore::discard`]).
    pub fn load(&self, sha256: &str) -> Result<Arc<LoadedModel>> {
        self.load_as_of(sha256, None)
    }

    /// Loads a slot this device accepted at `accepted_at` (a restart), judged
    /// as of then: see [`Host::reload`].
    pub fn reload(&self, sha256: &str, accepted_at: Timestamp) -> Result<Arc<LoadedModel>> {
        self.load_as_of(sha256, Some(accepted_at))
    }

    fn load_as_of(&self, sha256: &str, accepted_at: Option<Timestamp>) -> Result<Arc<LoadedModel>> {
        let lock = self
            .loading
            .lock()
            .unwrap()
            .entry(sha256.to_string())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = self
            .loaded
            .lock()
            .unwrap()
            .get(sha256)
            .and_then(Weak::upgrade)
        {
            return Ok(m);
        }
        let path = self.path(sha256);
        let wasm =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let m = Arc::new(match accepted_at {
            None => self.host.load(&wasm)?,
            Some(at) => self.host.reload(&wasm, at)?,
        });
        let mut loaded = self.loaded.lock().unwrap();
        loaded.retain(|_, w| w.strong_count() > 0);
        loaded.insert(sha256.to_string(), Arc::downgrade(&m));
        Ok(m)
    }

    /// Why the trust policy would refuse slot `sha256` as a new install today
    /// (expired claims or delegation, a revoked key), if it would.
    pub fn refused_today(&self, sha256: &str) -> Option<String> {
        self.refused_as_of(sha256, Timestamp::now())
    }

    /// Why the trust in force refuses slot `sha256` as accepted at `at` (a
    /// key or delegation revoked since), if it does; judged afresh, whatever
    /// copy is loaded.
    pub fn refused_as_of(&self, sha256: &str, at: Timestamp) -> Option<String> {
        let SignaturePolicy::Trusted(policy) = &self.host.config().signatures else {
            return None;
        };
        let wasm = std::fs::read(self.path(sha256)).ok()?;
        policy
            .check_accepted(&wasm, at)
            .err()
            .map(|e| e.to_string())
    }

    /// The trust policy when it is anchored in a root (so its metadata can
    /// be refreshed from the coordinator).
    pub fn root_policy(&self) -> Option<&wasmops_trust::TrustPolicy> {
        match &self.host.config().signatures {
            SignaturePolicy::Trusted(p) if p.metadata().is_some() => Some(p),
            _ => None,
        }
    }

    /// Moves slot `sha256` to `<sha256>.wasm.damaged` if its bytes no longer
    /// hash to its name (a device's own store only): kept for inspection, out
    /// of the way of a fresh download. Returns whether it did.
    pub fn set_aside_if_damaged(&self, sha256: &str) -> bool {
        let path = self.path(sha256);
        if self.shared || crate::download::file_sha256(&path).is_ok_and(|got| got == sha256) {
            return false;
        }
        let aside = self.dir.join(format!("{sha256}.wasm.damaged"));
        match std::fs::rename(&path, &aside) {
            Ok(()) => {
                tracing::warn!(
                    "slot {sha256} is damaged on disk; kept as {}",
                    aside.display()
                );
                true
            }
            Err(_) => false,
        }
    }

    /// Deletes slot `sha256` (a download that failed verification or its probe;
    /// a device's own store only).
    pub fn discard(&self, sha256: &str) {
        if !self.shared {
            let _ = std::fs::remove_file(self.path(sha256));
        }
    }

    /// Deletes every slot, and every partial download, not in `keep` (a
    /// device's own store only).
    pub fn keep_only(&self, keep: &[&str]) {
        if self.shared {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(sha) = name
                .strip_suffix(".wasm")
                .or_else(|| name.strip_suffix(".part"))
                .or_else(|| name.strip_suffix(".probe"))
                && !keep.contains(&sha)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
