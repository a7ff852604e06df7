//! The agent proper: the active, staged and shadow slots, the install path
//! that fills them (see the crate docs), and predictions served from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, QoS};
use serde::{Deserialize, Serialize};
use wasmops_protocol::device::{ActiveInfo, Desired, InstallState, Mode, Status};
use wasmops_protocol::{now_ms, topics};
use wasmops_runtime::LoadedModel;
use wasmops_runtime::bindings::{ModelInfo, Tensor, TensorData};
use wasmops_runtime::synthetic::{Fill, synthetic_inputs};
use wasmops_trust::{StateDir, Timestamp};

use crate::config::AgentConfig;
use crate::control::Control;
use crate::store::ModelStore;
use crate::telemetry::{Counting, Observation, Outbox, Window, rows_of, views};

struct Slot {
    record: SlotRecord,
    loaded: Arc<LoadedModel>,
    metadata: ModelInfo,
    /// How its telemetry columns are named and binned (its signed profile).
    counting: Counting,
}

impl Slot {
    fn new(record: SlotRecord, loaded: Arc<LoadedModel>, metadata: ModelInfo) -> Arc<Slot> {
        let profile = loaded
            .accepted
            .as_ref()
            .and_then(|a| a.claims.as_ref())
            .and_then(|c| c.profile.as_ref());
        let counting = Counting::of(profile);
        Arc::new(Slot {
            record,
            loaded,
            metadata,
            counting,
        })
    }
}

/// A version this device accepted, as `active.json` keeps it.
#[derive(Clone, Serialize, Deserialize)]
struct SlotRecord {
    #[serde(flatten)]
    info: ActiveInfo,
    /// When the trust policy accepted it (unix seconds): a restart judges it as
    /// of then, so the passing of time never takes away an accepted model.
    /// Absent in files written before this field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    accepted_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct ActiveFile {
    active: SlotRecord,
    previous: Option<SlotRecord>,
}

/// Live-prediction counters since the agent started (for `/v1/status` and the simulator).
#[derive(Debug, Default, Serialize)]
pub struct Served {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Agent {
    pub(crate) config: AgentConfig,
    store: Arc<ModelStore>,
    state: StateDir,
    active: RwLock<Option<Arc<Slot>>>,
    staged: RwLock<Option<Arc<Slot>>>,
    shadow: RwLock<Option<Arc<Slot>>>,
    /// The version before the active one (kept on disk for a fallback).
    previous: RwLock<Option<SlotRecord>>,
    /// What went wrong restoring the slots after a restart, reported until the next install.
    restore_note: RwLock<Option<String>>,
    pub(crate) last_status: RwLock<Option<Status>>,
    window: Mutex<Window>,
    /// Set (under the window lock) when the agent is halted as a killed
    /// process would be: nothing it computes afterwards is recorded.
    halted: AtomicBool,
    outbox: Mutex<Outbox>,
    pub served: Served,
    /// Whose signed messages this device acts on.
    pub control: Control,
    /// What it trusts, and the certificate it presents.
    tls: wasmops_tls::ClientTls,
}

impl Agent {
    /// An agent with its own model store in its state directory.
    pub fn new(config: AgentConfig, tls: wasmops_tls::ClientTls) -> Result<Agent> {
        let store = ModelStore::new(
            config.host_config(config.state_dir.join("cache"))?,
            config.state_dir.join("slots"),
            false,
            tls.clone(),
        )?;
        Agent::with_store(config, Arc::new(store), tls)
    }

    /// An agent using `store` (shared by a simulated fleet), with `tls` its own.
    pub fn with_store(
        config: AgentConfig,
        store: Arc<ModelStore>,
        tls: wasmops_tls::ClientTls,
    ) -> Result<Agent> {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create {}", config.state_dir.display()))?;
        let outbox = Outbox::open(&config.state_dir.join("telemetry"), config.telemetry_buffer)?;
        Ok(Agent {
            store,
            state: StateDir::new(config.state_dir.join("trust-state")),
            active: RwLock::new(None),
            staged: RwLock::new(None),
            shadow: RwLock::new(None),
            previous: RwLock::new(None),
            restore_note: RwLock::new(None),
            last_status: RwLock::new(None),
            window: Mutex::new(Window::new(now_ms())),
            halted: AtomicBool::new(false),
            outbox: Mutex::new(outbox),
            served: Served::default(),
            control: Control::open(
                &config.device_id,
                &config.state_dir,
                config.control_key.as_deref(),
            )?,
            config,
            tls,
        })
    }

    /// What this agent trusts to reach its coordinator and broker.
    pub fn tls(&self) -> &wasmops_tls::ClientTls {
        &self.tls
    }

    /// An HTTP client for the coordinator's API.
    pub fn http(&self) -> Result<reqwest::Client> {
        Ok(self.tls().http().build()?)
    }

    pub fn id(&self) -> &str {
        &self.config.device_id
    }

    pub fn active(&self) -> Option<ActiveInfo> {
        self.active
            .read()
            .unwrap()
            .as_ref()
            .map(|s| s.record.info.clone())
    }

    pub fn shadow(&self) -> Option<ActiveInfo> {
        self.shadow
            .read()
            .unwrap()
            .as_ref()
            .map(|s| s.record.info.clone())
    }

    pub(crate) fn status(
        &self,
        desired: Option<&Desired>,
        state: InstallState,
        error: Option<String>,
    ) -> Status {
        Status {
            deployment: desired.map(|d| d.deployment.clone()),
            state,
            model: desired.map(|d| d.model.clone()),
            version: desired.map(|d| d.version.clone()),
            error,
            active: self.active(),
            shadow: self.shadow(),
        }
    }

    /// Serves again what served before a restart. The active slot is judged as
    /// of when it was accepted (expiry since, a lapsed delegation or a clock
    /// jump do not stop it; a revoked key or damaged bytes do); if it cannot
    /// load, the previous one serves. Nothing is deleted (a damaged file is set
    /// aside for inspection and fetched again), and what happened is reported in the next status ([`Agent::restore_note`]).
    pub fn restore(&self) -> Result<()> {
        let path = self.config.state_dir.join("active.json");
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(());
        };
        let file: ActiveFile = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        let mut notes = vec![];
        let candidates = [Some(&file.active), file.previous.as_ref()];
        for (i, record) in candidates.into_iter().flatten().enumerate() {
            let (model, version) = (&record.info.model, &record.info.version);
            let role = if i == 0 { "active" } else { "previous" };
            match self.reopen(record) {
                Ok(slot) => {
                    if let Some(why) = self.store.refused_today(&record.info.sha256) {
                        notes.push(format!(
                            "serving {model} {version} accepted earlier, though a new install would be refused today: {why}"
                        ));
                    } else if i > 0 {
                        notes.push(format!("serving the previous version {model} {version}"));
                    }
                    self.set_active(slot);
                    *self.previous.write().unwrap() =
                        if i == 0 { file.previous.clone() } else { None };
                    break;
                }
                Err(e) => {
                    let aside = if self.store.set_aside_if_damaged(&record.info.sha256) {
                        " (its damaged file is kept as .wasm.damaged)"
                    } else {
                        ""
                    };
                    notes.push(format!(
                        "the {role} model {model} {version} cannot be loaded: {e:#}{aside}"
                    ))
                }
            }
        }
        let note = (!notes.is_empty()).then(|| notes.join("; "));
        if let Some(n) = &note {
            tracing::warn!("{}: {n}", self.id());
        }
        *self.restore_note.write().unwrap() = note.clone();
        match (self.active.read().unwrap().is_some(), note) {
            (false, Some(n)) => bail!("{n}"),
            _ => Ok(()),
        }
    }

    /// Whether this device's trust is anchored in a root (its metadata comes
    /// from the coordinator, see [`crate::trust`]).
    pub fn trusts_a_root(&self) -> bool {
        self.store.root_policy().is_some()
    }

    /// Puts trust metadata from the coordinator in force (judged against
    /// this device's anchor and trust state: nothing goes back), keeps it in
    /// the trust directory for the next start, and when it changed judges
    /// the installed models again ([`Agent::rejudge`]).
    pub(crate) fn apply_trust(
        &self,
        metadata: wasmops_trust::TrustMetadata,
    ) -> Result<wasmops_trust::Applied> {
        let policy = self
            .store
            .root_policy()
            .context("this device trusts plain keys, not a root")?;
        let applied = policy.apply(metadata.clone(), Some(&self.state))?;
        if applied.changed {
            if let Some(dir) = &self.config.trust.trust_dir
                && let Err(e) = wasmops_trust::TrustDir::new(dir).save_all(&metadata)
            {
                // In force now; the next start fetches it again.
                tracing::error!("{}: cannot keep the trust metadata: {e}", self.id());
            }
            self.rejudge();
        }
        Ok(applied)
    }

    /// Judges the installed models against the trust in force, as a restart
    /// would: one whose signer it no longer vouches for (a key or delegation
    /// revoked since it was accepted) stops serving, and the previous version
    /// serves instead if it still holds; a staged or shadow one is dropped.
    /// What happened is the status note. Returns it.
    pub fn rejudge(&self) -> Option<String> {
        let refused = |r: &SlotRecord| {
            let at = r
                .accepted_at
                .map_or_else(Timestamp::now, Timestamp::from_unix);
            self.store.refused_as_of(&r.info.sha256, at)
        };
        let mut notes = vec![];
        for (slot, role) in [(&self.staged, "staged"), (&self.shadow, "shadow")] {
            let current = slot.read().unwrap().clone();
            if let Some(s) = current
                && let Some(why) = refused(&s.record)
            {
                notes.push(format!(
                    "the {role} model {} {} is dropped: {why}",
                    s.record.info.model, s.record.info.version
                ));
                *slot.write().unwrap() = None;
            }
        }
        let active = self.active.read().unwrap().clone();
        if let Some(a) = active
            && let Some(why) = refused(&a.record)
        {
            let (model, version) = (&a.record.info.model, &a.record.info.version);
            notes.push(format!("{model} {version} stopped serving: {why}"));
            let previous = self.previous.read().unwrap().clone();
            let fallback = previous
                .filter(|p| refused(p).is_none())
                .and_then(|p| self.reopen(&p).ok());
            match fallback {
                Some(slot) => {
                    notes.push(format!(
                        "serving the previous version {} {}",
                        slot.record.info.model, slot.record.info.version
                    ));
                    self.set_active(slot);
                }
                None => *self.active.write().unwrap() = None,
            }
            *self.previous.write().unwrap() = None;
        }
        if notes.is_empty() {
            return None;
        }
        let note = notes.join("; ");
        tracing::error!("{}: {note}", self.id());
        *self.restore_note.write().unwrap() = Some(note.clone());
        Some(note)
    }

    /// What went wrong at the last restore, until the next install replaces it.
    pub fn restore_note(&self) -> Option<String> {
        self.restore_note.read().unwrap().clone()
    }

    fn reopen(&self, record: &SlotRecord) -> Result<Arc<Slot>> {
        let at = record
            .accepted_at
            .map_or_else(Timestamp::now, Timestamp::from_unix);
        let loaded = self.store.reload(&record.info.sha256, at)?;
        let metadata = loaded.instantiate()?.metadata()?;
        Ok(Slot::new(record.clone(), loaded, metadata))
    }

    /// Serves one prediction from the active model (JSON in, JSON out),
    /// records it for telemetry, and runs the shadow model, if any, on the same
    /// inputs in the background.
    pub async fn serve(self: &Arc<Self>, body: String) -> Result<String> {
        if self.active.read().unwrap().is_none() {
            bail!("no model is installed yet");
        }
        let me = self.clone();
        let (result, shadow_job) =
            tokio::task::spawn_blocking(move || me.predict_live(&body)).await?;
        if let Some((slot, body, live)) = shadow_job {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.predict_shadow(&slot, &body, &live));
        }
        result
    }

    /// Stops the agent's memory as a SIGKILL would: predictions still being
    /// computed are neither counted nor recorded, and no window is closed
    /// afterwards. Once this returns, `served` and `unreported_predictions`
    /// no longer change, so a simulator can account for what the kill lost.
    pub fn halt(&self) {
        let _window = self.window.lock().unwrap();
        self.halted.store(true, Ordering::SeqCst);
    }

    #[allow(clippy::type_complexity)]
    fn predict_live(
        &self,
        body: &str,
    ) -> (Result<String>, Option<(Arc<Slot>, String, Vec<Tensor>)>) {
        let Some(slot) = self.active.read().unwrap().clone() else {
            return (Err(anyhow::anyhow!("no model is installed yet")), None);
        };
        let started = Instant::now();
        let inputs = wasmops_runtime::tensors_json::parse_inputs(body, &slot.metadata);
        let outputs = match &inputs {
            Ok(i) => slot
                .loaded
                .instantiate()
                .and_then(|mut inst| inst.predict(i))
                .map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let empty = vec![];
        // One id per row: what an application attaches an outcome to later.
        let input_views = views(inputs.as_ref().unwrap_or(&empty));
        let output_views = outputs.as_ref().ok().map(|o| views(o));
        let ids = match &output_views {
            Some(out) => crate::telemetry::prediction_ids(rows_of(out)),
            None => vec![],
        };
        // Counted and recorded together, under the window lock: a halt sees
        // both or neither.
        let mut window = self.window.lock().unwrap();
        if self.halted.load(Ordering::SeqCst) {
            return (Err(anyhow::anyhow!("the agent has halted")), None);
        }
        match &outputs {
            Ok(_) => self.served.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.served.failed.fetch_add(1, Ordering::Relaxed),
        };
        window.record(Observation {
            model: &slot.record.info.model,
            version: &slot.record.info.version,
            shadow: false,
            latency_ms,
            inputs: &input_views,
            outputs: output_views.as_deref(),
            agreed: false,
            counting: &slot.counting,
            ids: &ids,
            sample_rows: self
                .config
                .sample_rows
                .get(&slot.record.info.model)
                .copied()
                .unwrap_or(0),
            at_ms: wasmops_protocol::now_ms(),
        });
        drop(window);
        match outputs {
            Ok(out) => {
                let json = with_ids(wasmops_runtime::tensors_json::outputs_json(&out), &ids);
                let shadow = self
                    .shadow
                    .read()
                    .unwrap()
                    .clone()
                    .map(|s| (s, body.to_string(), out));
                (Ok(json), shadow)
            }
            Err(e) => (Err(e), None),
        }
    }

    fn predict_shadow(&self, slot: &Slot, body: &str, live: &[Tensor]) {
        let started = Instant::now();
        let outputs = wasmops_runtime::tensors_json::parse_inputs(body, &slot.metadata)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|i| Ok(slot.loaded.instantiate()?.predict(&i)?));
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let agreed = outputs.as_ref().is_ok_and(|o| agree(live, o));
        let output_views = outputs.as_ref().ok().map(|o| views(o));
        self.window.lock().unwrap().record(Observation {
            model: &slot.record.info.model,
            version: &slot.record.info.version,
            shadow: true,
            latency_ms,
            inputs: &[],
            outputs: output_views.as_deref(),
            agreed,
            counting: &slot.counting,
            ids: &[],
            sample_rows: 0,
            at_ms: wasmops_protocol::now_ms(),
        });
    }

    /// Acts on a desired-state message, reporting each step through `report`.
    pub async fn apply(
        self: &Arc<Self>,
        desired: &Desired,
        report: &(dyn Fn(Status) + Send + Sync),
    ) -> Result<()> {
        let same_as = |slot: &RwLock<Option<Arc<Slot>>>| {
            slot.read()
                .unwrap()
                .as_ref()
                .filter(|s| s.record.info.sha256 == desired.sha256)
                .cloned()
        };
        match desired.mode {
            Mode::Active => {
                if let Some(slot) = same_as(&self.active) {
                    // Already serving it: commit the floor if asked, drop any shadow.
                    if !desired.provisional {
                        self.state
                            .accept(&slot.record.info.model, slot.record.info.sequence)?;
                    }
                    *self.shadow.write().unwrap() = None;
                    report(self.status(Some(desired), InstallState::Active, None));
                    return Ok(());
                }
                // Blue-green: the staged slot switches without download or probe.
                let slot = match same_as(&self.staged) {
                    Some(slot) => slot,
                    None => self.prepare(desired, report).await?,
                };
                self.switch(slot, desired.provisional)?;
                report(self.status(Some(desired), InstallState::Active, None));
            }
            Mode::Staged => {
                let slot = match same_as(&self.staged) {
                    Some(s) => s,
                    None => self.prepare(desired, report).await?,
                };
                *self.staged.write().unwrap() = Some(slot);
                report(self.status(Some(desired), InstallState::Staged, None));
            }
            Mode::Shadow => {
                let slot = match same_as(&self.shadow) {
                    Some(s) => s,
                    None => self.prepare(desired, report).await?,
                };
                *self.shadow.write().unwrap() = Some(slot);
                report(self.status(Some(desired), InstallState::Shadow, None));
            }
        }
        Ok(())
    }

    /// Download → verify → rollback check → probe: a slot ready to serve. A
    /// download that fails verification or its probe is deleted unless a slot
    /// (or the previous version) uses it.
    async fn prepare(
        self: &Arc<Self>,
        desired: &Desired,
        report: &(dyn Fn(Status) + Send + Sync),
    ) -> Result<Arc<Slot>> {
        let prepared = self.prepare_slot(desired, report).await;
        if prepared.is_err() && !self.in_use(&desired.sha256) {
            self.store.discard(&desired.sha256);
        }
        prepared
    }

    fn in_use(&self, sha256: &str) -> bool {
        let held = |slot: &RwLock<Option<Arc<Slot>>>| {
            slot.read()
                .unwrap()
                .as_ref()
                .is_some_and(|s| s.record.info.sha256 == sha256)
        };
        held(&self.active)
            || held(&self.staged)
            || held(&self.shadow)
            || self
                .previous
                .read()
                .unwrap()
                .as_ref()
                .is_some_and(|p| p.info.sha256 == sha256)
    }

    async fn prepare_slot(
        self: &Arc<Self>,
        desired: &Desired,
        report: &(dyn Fn(Status) + Send + Sync),
    ) -> Result<Arc<Slot>> {
        report(self.status(Some(desired), InstallState::Downloading, None));
        self.store
            .fetch(
                &self.config.coordinator,
                self.config.credential(),
                &desired.sha256,
                desired.size_bytes,
                self.config.max_artifact_mb << 20,
            )
            .await?;
        report(self.status(Some(desired), InstallState::Verifying, None));
        let (me, d) = (self.clone(), desired.clone());
        let (loaded, info) = tokio::task::spawn_blocking(move || me.verify(&d)).await??;
        report(self.status(Some(desired), InstallState::Probing, None));
        let probe = match (&desired.probe, &desired.probe_artifact) {
            (Some(inline), _) => Some(inline.clone()),
            (None, Some(a)) => Some(
                self.store
                    .fetch_probe(&self.config.coordinator, self.config.credential(), a)
                    .await?,
            ),
            (None, None) => None,
        };
        let metadata = tokio::task::spawn_blocking({
            let loaded = loaded.clone();
            move || probe_model(&loaded, probe.as_ref())
        })
        .await??;
        Ok(Slot::new(
            SlotRecord {
                info,
                accepted_at: Some(Timestamp::now().unix()),
            },
            loaded,
            metadata,
        ))
    }

    fn verify(&self, d: &Desired) -> Result<(Arc<LoadedModel>, ActiveInfo)> {
        let (loaded, info) = self.verify_slot(&d.sha256)?;
        if info.model != d.model || info.version != d.version {
            bail!(
                "the component says it is {} {}, the deployment says {} {}",
                info.model,
                info.version,
                d.model,
                d.version
            );
        }
        Ok((loaded, info))
    }

    /// Trust policy and rollback floor for slot `sha256`: what it says it is.
    fn verify_slot(&self, sha256: &str) -> Result<(Arc<LoadedModel>, ActiveInfo)> {
        let loaded = self.store.load(sha256)?;
        let claims = loaded
            .accepted
            .as_ref()
            .and_then(|a| a.claims.clone())
            .context("the component carries no claims")?;
        self.state.check_sequence(&claims.name, claims.sequence)?;
        Ok((
            loaded,
            ActiveInfo {
                model: claims.name,
                version: claims.version,
                sha256: sha256.to_string(),
                sequence: claims.sequence,
            },
        ))
    }

    /// Installs `agent.toml`'s `preinstalled` component when nothing serves
    /// yet (a freshly flashed gateway): the same checks as a download
    /// (trust policy, rollback floor, a synthetic health probe), then it
    /// serves as the active version. Returns what it installed.
    pub fn preinstall(&self) -> Result<Option<ActiveInfo>> {
        let Some(path) = &self.config.preinstalled else {
            return Ok(None);
        };
        if self.active.read().unwrap().is_some() {
            return Ok(None);
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let sha256 = wasmops_trust::sha256_hex(&bytes);
        let slot = self.store.path(&sha256);
        if !slot.exists() {
            wasmops_trust::write_atomic(&slot, &bytes)?;
        }
        let installed = self.verify_slot(&sha256).and_then(|(loaded, info)| {
            let metadata = probe_model(&loaded, None)?;
            let record = SlotRecord {
                info: info.clone(),
                accepted_at: Some(Timestamp::now().unix()),
            };
            self.switch(Slot::new(record, loaded, metadata), false)?;
            Ok(info)
        });
        match installed {
            Ok(info) => Ok(Some(info)),
            Err(e) => {
                self.store.discard(&sha256);
                Err(e.context(format!("preinstalled component {}", path.display())))
            }
        }
    }

    /// Serves `slot` from now on.
    fn set_active(&self, slot: Arc<Slot>) {
        *self.active.write().unwrap() = Some(slot);
    }

    fn switch(&self, slot: Arc<Slot>, provisional: bool) -> Result<()> {
        let info = slot.record.info.clone();
        if provisional {
            self.state.check_sequence(&info.model, info.sequence)?;
        } else {
            self.state.accept(&info.model, info.sequence)?;
        }
        let previous = self
            .active
            .read()
            .unwrap()
            .as_ref()
            .map(|s| s.record.clone());
        let file = ActiveFile {
            active: slot.record.clone(),
            previous: previous.clone(),
        };
        wasmops_trust::write_atomic(
            &self.config.state_dir.join("active.json"),
            &serde_json::to_vec_pretty(&file)?,
        )?;
        self.set_active(slot);
        *self.previous.write().unwrap() = previous.clone();
        *self.restore_note.write().unwrap() = None;
        let mut staged = self.staged.write().unwrap();
        if staged
            .as_ref()
            .is_some_and(|s| s.record.info.sha256 == info.sha256)
        {
            *staged = None;
        }
        *self.shadow.write().unwrap() = None;
        // Keep the active slot, the one before it, and a staged one.
        let staged_sha = staged.as_ref().map(|s| s.record.info.sha256.clone());
        let keep: Vec<&str> = [
            Some(info.sha256.as_str()),
            previous.as_ref().map(|p| p.info.sha256.as_str()),
            staged_sha.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.store.keep_only(&keep);
        Ok(())
    }

    /// Closes the telemetry window into numbered reports in the outbox (one
    /// unless it is too big for a message); returns the last number, or
    /// nothing when no prediction was made.
    pub fn close_window(&self) -> Result<Option<u64>> {
        let (started, stats) = {
            let mut window = self.window.lock().unwrap();
            if self.halted.load(Ordering::SeqCst) {
                return Ok(None);
            }
            window.take(now_ms())
        };
        if stats.is_empty() {
            return Ok(None);
        }
        let reports =
            self.outbox
                .lock()
                .unwrap()
                .push(&self.config.device_id, started, now_ms(), stats)?;
        Ok(reports.last().map(|r| r.seq))
    }

    /// Live predictions not yet in a report (lost if the process dies now).
    pub fn unreported_predictions(&self) -> u64 {
        self.window.lock().unwrap().live_predictions()
    }

    /// Publishes every unacknowledged report (QoS 1).
    pub(crate) fn send_pending(&self, client: &AsyncClient, skip: &mut BTreeMap<u64, Instant>) {
        let outbox = self.outbox.lock().unwrap();
        let Ok(pending) = outbox.pending() else {
            return;
        };
        let topic = topics::telemetry(&self.config.device_id);
        skip.retain(|seq, _| pending.contains(seq));
        for seq in pending {
            // Give a sent report time to be acknowledged before sending it again.
            if skip
                .get(&seq)
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
            {
                continue;
            }
            let Some(payload) = outbox.payload(seq) else {
                continue;
            };
            if client
                .try_publish(&topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                break; // the client's queue is full (offline): try again next tick
            }
            skip.insert(seq, Instant::now());
        }
    }

    pub(crate) fn acked(&self, payload: &[u8]) {
        match self.control.ack(payload) {
            Ok(a) => self.outbox.lock().unwrap().ack(&a.seqs),
            Err(e) => tracing::warn!("{}: ignoring a telemetry ack: {e}", self.id()),
        }
    }

    /// Reports waiting for an acknowledgement, and the (reports, predictions) dropped so far.
    pub fn telemetry_backlog(&self) -> (usize, (u64, u64)) {
        let o = self.outbox.lock().unwrap();
        (o.pending().map(|p| p.len()).unwrap_or(0), o.dropped())
    }

    pub fn status_json(&self) -> serde_json::Value {
        let (pending, (dropped_reports, dropped_predictions)) = self.telemetry_backlog();
        serde_json::json!({
            "device": self.config.device_id,
            "active": self.active(),
            "shadow": self.shadow(),
            "last_status": self.last_status.read().unwrap().clone(),
            "restore_note": self.restore_note(),
            // Where the active model's code came from, and what loading it cost.
            "active_load": self.active.read().unwrap().as_ref().map(|s| serde_json::json!({
                "origin": s.loaded.origin,
                "compile_ms": s.loaded.compile_time.as_secs_f64() * 1e3,
            })),
            "served": self.served,
            "telemetry": {"pending_reports": pending, "dropped_reports": dropped_reports, "dropped_predictions": dropped_predictions},
        })
    }
}

/// The `run` JSON of a prediction with its row ids added:
/// `{"outputs": […], "prediction_ids": ["p…", …]}`.
fn with_ids(outputs_json: String, ids: &[String]) -> String {
    match serde_json::from_str::<serde_json::Value>(&outputs_json) {
        Ok(serde_json::Value::Object(mut o)) => {
            o.insert("prediction_ids".into(), serde_json::json!(ids));
            serde_json::Value::Object(o).to_string()
        }
        _ => outputs_json,
    }
}

/// Whether a shadow's outputs match the live ones: integer and text outputs
/// exactly, floats within 1e-3 (relative, absolute near zero).
fn agree(live: &[Tensor], shadow: &[Tensor]) -> bool {
    wasmops_runtime::output_difference(live, shadow).is_ok_and(|d| d <= 1e-3)
}

/// The health probe: one prediction on the stored sample (or zeros of each
/// declared input); it must succeed with finite outputs.
fn probe_model(loaded: &LoadedModel, sample: Option<&serde_json::Value>) -> Result<ModelInfo> {
    let mut instance = loaded.instantiate()?;
    let metadata = instance.metadata()?;
    let inputs = match sample {
        Some(s) => wasmops_runtime::tensors_json::parse_inputs(&s.to_string(), &metadata)
            .context("health probe failed")?,
        None => synthetic_inputs(&metadata, 1, Fill::Zeros).map_err(anyhow::Error::msg)?,
    };
    let outputs = instance.predict(&inputs).context("health probe failed")?;
    for t in &outputs {
        if let TensorData::Float32(v) = &t.data
            && v.iter().any(|x| !x.is_finite())
        {
            bail!("health probe failed: output `{}` is not finite", t.name);
        }
    }
    Ok(metadata)
}
