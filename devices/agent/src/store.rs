//! Where a device keeps components: content-addressed slot files, downloaded
//! once (resumable, size-capped, sha256-checked) and verified once per
//! process. One agent owns its store; a simulated fleet shares one, so a
//! thousand devices in one process download and compile a version once.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, Result};
use wasmops_runtime::{Host, HostConfig, LoadedModel};

pub struct ModelStore {
    host: Host,
    dir: PathBuf,
    /// Shared by several devices: never delete slots another device may use.
    shared: bool,
    http: reqwest::Client,
    loaded: Mutex<HashMap<String, Weak<LoadedModel>>>,
    /// One verification and compile per sha at a time; the others wait and share it.
    loading: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    fetching: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ModelStore {
    pub fn new(host_config: HostConfig, dir: PathBuf, shared: bool) -> Result<ModelStore> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(ModelStore {
            host: Host::new(host_config)?,
            dir,
            shared,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(600))
                .build()?,
            loaded: Mutex::default(),
            loading: Mutex::default(),
            fetching: Default::default(),
        })
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
        if !path.exists() {
            crate::download::download(&self.http, coordinator, token, sha256, size, cap, &path)
                .await?;
        }
        Ok(path)
    }

    /// Verifies (trust policy) and compiles the slot `sha256`, or returns the
    /// copy already loaded in this process. Bytes that fail verification are deleted.
    pub fn load(&self, sha256: &str) -> Result<Arc<LoadedModel>> {
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
        match self.host.load(&wasm) {
            Ok(m) => {
                let m = Arc::new(m);
                let mut loaded = self.loaded.lock().unwrap();
                loaded.retain(|_, w| w.strong_count() > 0);
                loaded.insert(sha256.to_string(), Arc::downgrade(&m));
                Ok(m)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e.into())
            }
        }
    }

    /// Deletes every slot not in `keep` (a device's own store only).
    pub fn keep_only(&self, keep: &[&str]) {
        if self.shared {
            return;
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(sha) = name.strip_suffix(".wasm")
                && !keep.contains(&sha)
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}
