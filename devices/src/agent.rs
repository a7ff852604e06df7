//! The device agent: keeps serving predictions from the active model while it
//! installs what the coordinator asks for, and reports how its models do.
//!
//! Install path (each step reported on the status topic): download (resumable,
//! size-capped, sha256) → trust policy (signature, delegation, claims) →
//! rollback check → compile and link → health probe (a prediction on the
//! deployment's stored sample, or a synthetic one) → then, by mode:
//! - `active`: atomic switch of the active slot (previous kept for rollback);
//! - `staged`: kept loaded beside the active model, switched by a later
//!   `active` message for the same sha at once (blue-green);
//! - `shadow`: run beside the active model on the same inputs; only agreement
//!   and latency are reported, the application's answers come from the active one.
//!
//! A `provisional` install does not raise the rollback floor: a canary can
//! still be rolled back to the version before it; the coordinator commits the
//! floor (a non-provisional message for the same sha) when the rollout succeeds.
//! Any failure leaves the running model untouched.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, QoS};
use serde::{Deserialize, Serialize};
use wasmops_host::bindings::{Dim, ElementType, ModelInfo, Tensor, TensorData};
use wasmops_host::{HostConfig, LoadedModel, SignaturePolicy};
use wasmops_trust::{StateDir, TrustDir, TrustPolicy};

use crate::presence::Presence;
use crate::store::ModelStore;
use crate::telemetry::{Ack, Observation, Outbox, Window};
use crate::topics;

fn default_listen() -> SocketAddr {
    "127.0.0.1:9090".parse().expect("valid address")
}

fn default_max_artifact_mb() -> u64 {
    256
}

fn default_telemetry_interval_ms() -> u64 {
    10_000
}

fn default_telemetry_buffer() -> usize {
    10_000
}

/// `agent.toml`. Relative paths are relative to the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub device_id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Coordinator URL, for enrolment and artifact downloads.
    pub coordinator: String,
    /// This device's own credential (API token, and MQTT password with the
    /// device id as username), if provisioned directly…
    #[serde(default)]
    pub token: Option<String>,
    /// …or a one-time enrolment token that buys it on first start (kept in
    /// `state_dir/credentials.json`, mode 0600).
    #[serde(default)]
    pub enrolment_token: Option<String>,
    pub mqtt: String,
    pub state_dir: PathBuf,
    /// Local prediction endpoint for the device's applications.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_max_artifact_mb")]
    pub max_artifact_mb: u64,
    /// How often a telemetry report is sent.
    #[serde(default = "default_telemetry_interval_ms")]
    pub telemetry_interval_ms: u64,
    /// Reports kept on disk while the coordinator is unreachable; older ones are dropped and counted.
    #[serde(default = "default_telemetry_buffer")]
    pub telemetry_buffer: usize,
    pub trust: TrustConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Root public key and the metadata it signs (the production setup)…
    pub root: Option<PathBuf>,
    pub trust_dir: Option<PathBuf>,
    /// …or plain release keys.
    #[serde(default)]
    pub keys: Vec<PathBuf>,
}

impl AgentConfig {
    pub fn from_file(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut c: AgentConfig = toml::from_str(&text).with_context(|| format!("{} is not a valid agent config", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut c.state_dir);
        c.trust.root.as_mut().map(fix);
        c.trust.trust_dir.as_mut().map(fix);
        c.trust.keys.iter_mut().for_each(fix);
        anyhow::ensure!(topics::valid_device_id(&c.device_id), "device_id `{}` must be letters, digits, `-`, `_` or `.`", c.device_id);
        Ok(c)
    }

    pub fn policy(&self) -> Result<TrustPolicy> {
        let read = |p: &Path| -> Result<wasmops_sign::PublicKey> { Ok(wasmops_sign::PublicKey::from_bytes(&std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?)?) };
        match (&self.trust.root, &self.trust.trust_dir) {
            (Some(root), Some(dir)) => Ok(TrustPolicy::root(vec![read(root)?], TrustDir::new(dir).load()?)),
            (None, None) if !self.trust.keys.is_empty() => Ok(TrustPolicy::keys(self.trust.keys.iter().map(|k| read(k)).collect::<Result<_>>()?)),
            _ => bail!("[trust] needs root + trust_dir, or keys"),
        }
    }

    /// Makes sure `token` holds this device's credential: from the config, from
    /// an earlier enrolment, or by enrolling now with the enrolment token.
    pub async fn ensure_credential(&mut self, http: &reqwest::Client) -> Result<()> {
        let file = self.state_dir.join("credentials.json");
        if let Ok(bytes) = std::fs::read(&file) {
            let saved: serde_json::Value = serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", file.display()))?;
            if saved["device"] == self.device_id.as_str() {
                if let Some(t) = saved["token"].as_str() {
                    self.token = Some(t.to_string());
                    return Ok(());
                }
            }
        }
        if self.token.is_some() {
            return Ok(());
        }
        let Some(enrolment) = &self.enrolment_token else { bail!("device {} has no credential: set `token` or `enrolment_token`", self.device_id) };
        let url = format!("{}/v1/enrol", self.coordinator.trim_end_matches('/'));
        let resp = http.post(&url).bearer_auth(enrolment).json(&serde_json::json!({"device": self.device_id})).send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("enrolment of {} refused ({status}): {}", self.device_id, body["error"].as_str().unwrap_or("(no message)"));
        }
        let token = body["token"].as_str().context("the enrolment answer has no token")?.to_string();
        std::fs::create_dir_all(&self.state_dir)?;
        wasmops_trust::write_atomic_mode(&file, &serde_json::to_vec(&serde_json::json!({"device": self.device_id, "token": token}))?, Some(0o600))?;
        self.token = Some(token);
        Ok(())
    }

    fn credential(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// The host settings agents use: no state directory in the policy, because
    /// rollback is an install decision the agent records only after the probe.
    pub fn host_config(&self, cache_dir: PathBuf) -> Result<HostConfig> {
        Ok(HostConfig { cache_dir: Some(cache_dir), memory_limit: 512 << 20, deadline: Duration::from_secs(10), ..HostConfig::new(SignaturePolicy::Trusted(self.policy()?)) })
    }
}

/// What to do with a version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Serve it.
    #[default]
    Active,
    /// Install and probe it, keep it ready beside the active model.
    Staged,
    /// Run it beside the active model and report agreement and latency.
    Shadow,
}

/// What the coordinator wants this device to run (retained on the desired topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// The deployment or rollout this belongs to.
    pub deployment: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// A stored sample for the health probe: `{"inputs":[…]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<serde_json::Value>,
    #[serde(default)]
    pub mode: Mode,
    /// Do not raise the rollback floor yet (canary in progress).
    #[serde(default)]
    pub provisional: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallState {
    Downloading,
    Verifying,
    Probing,
    /// Installed and probed, waiting beside the active model (blue-green).
    Staged,
    /// Running as a shadow of the active model.
    Shadow,
    Active,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveInfo {
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub sequence: u64,
}

/// One install state change (retained on the status topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub deployment: Option<String>,
    pub state: InstallState,
    pub model: Option<String>,
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is serving predictions now.
    pub active: Option<ActiveInfo>,
    /// What runs as a shadow, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ActiveInfo>,
}

struct Slot {
    info: ActiveInfo,
    loaded: Arc<LoadedModel>,
    metadata: ModelInfo,
}

#[derive(Serialize, Deserialize)]
struct ActiveFile {
    active: ActiveInfo,
    previous: Option<ActiveInfo>,
}

/// Live-prediction counters since the agent started (for `/v1/status` and the simulator).
#[derive(Debug, Default, Serialize)]
pub struct Served {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

pub struct Agent {
    config: AgentConfig,
    store: Arc<ModelStore>,
    state: StateDir,
    active: RwLock<Option<Arc<Slot>>>,
    staged: RwLock<Option<Arc<Slot>>>,
    shadow: RwLock<Option<Arc<Slot>>>,
    last_status: RwLock<Option<Status>>,
    window: Mutex<Window>,
    outbox: Mutex<Outbox>,
    pub served: Served,
}

impl Agent {
    /// An agent with its own model store in its state directory.
    pub fn new(config: AgentConfig) -> Result<Agent> {
        let store = ModelStore::new(config.host_config(config.state_dir.join("cache"))?, config.state_dir.join("slots"), false)?;
        Agent::with_store(config, Arc::new(store))
    }

    /// An agent using `store` (shared by a simulated fleet).
    pub fn with_store(config: AgentConfig, store: Arc<ModelStore>) -> Result<Agent> {
        std::fs::create_dir_all(&config.state_dir).with_context(|| format!("cannot create {}", config.state_dir.display()))?;
        let outbox = Outbox::open(&config.state_dir.join("telemetry"), config.telemetry_buffer)?;
        Ok(Agent {
            store,
            state: StateDir::new(config.state_dir.join("trust-state")),
            active: RwLock::new(None),
            staged: RwLock::new(None),
            shadow: RwLock::new(None),
            last_status: RwLock::new(None),
            window: Mutex::new(Window::new(now_ms())),
            outbox: Mutex::new(outbox),
            served: Served::default(),
            config,
        })
    }

    pub fn id(&self) -> &str {
        &self.config.device_id
    }

    pub fn active(&self) -> Option<ActiveInfo> {
        self.active.read().unwrap().as_ref().map(|s| s.info.clone())
    }

    pub fn shadow(&self) -> Option<ActiveInfo> {
        self.shadow.read().unwrap().as_ref().map(|s| s.info.clone())
    }

    fn status(&self, desired: Option<&Desired>, state: InstallState, error: Option<String>) -> Status {
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

    /// Loads the active slot written before a restart.
    pub fn restore(&self) -> Result<()> {
        let path = self.config.state_dir.join("active.json");
        let Ok(bytes) = std::fs::read(&path) else { return Ok(()) };
        let file: ActiveFile = serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))?;
        let loaded = self.store.load(&file.active.sha256)?;
        let metadata = loaded.instantiate()?.metadata()?;
        self.set_active(Arc::new(Slot { info: file.active, loaded, metadata }));
        Ok(())
    }

    /// Serves one prediction from the active model (JSON in, JSON out),
    /// records it for telemetry, and runs the shadow model, if any, on the same
    /// inputs in the background.
    pub async fn serve(self: &Arc<Self>, body: String) -> Result<String> {
        if self.active.read().unwrap().is_none() {
            bail!("no model is installed yet");
        }
        let me = self.clone();
        let (result, shadow_job) = tokio::task::spawn_blocking(move || me.predict_live(&body)).await?;
        if let Some((slot, body, live)) = shadow_job {
            let me = self.clone();
            tokio::task::spawn_blocking(move || me.predict_shadow(&slot, &body, &live));
        }
        match &result {
            Ok(_) => self.served.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.served.failed.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    #[allow(clippy::type_complexity)]
    fn predict_live(&self, body: &str) -> (Result<String>, Option<(Arc<Slot>, String, Vec<Tensor>)>) {
        let Some(slot) = self.active.read().unwrap().clone() else { return (Err(anyhow::anyhow!("no model is installed yet")), None) };
        let started = Instant::now();
        let inputs = wasmops_host::tensors_json::parse_inputs(body, &slot.metadata);
        let outputs = match &inputs {
            Ok(i) => slot.loaded.instantiate().and_then(|mut inst| inst.predict(i)).map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let empty = vec![];
        self.window.lock().unwrap().record(Observation {
            model: &slot.info.model,
            version: &slot.info.version,
            shadow: false,
            latency_ms,
            inputs: inputs.as_ref().unwrap_or(&empty),
            outputs: outputs.as_ref().ok().map(Vec::as_slice),
            agreed: false,
        });
        match outputs {
            Ok(out) => {
                let json = wasmops_host::tensors_json::outputs_json(&out);
                let shadow = self.shadow.read().unwrap().clone().map(|s| (s, body.to_string(), out));
                (Ok(json), shadow)
            }
            Err(e) => (Err(e), None),
        }
    }

    fn predict_shadow(&self, slot: &Slot, body: &str, live: &[Tensor]) {
        let started = Instant::now();
        let outputs = wasmops_host::tensors_json::parse_inputs(body, &slot.metadata)
            .map_err(|e| anyhow::anyhow!("{e:#}"))
            .and_then(|i| Ok(slot.loaded.instantiate()?.predict(&i)?));
        let latency_ms = started.elapsed().as_secs_f64() * 1e3;
        let agreed = outputs.as_ref().is_ok_and(|o| agree(live, o));
        self.window.lock().unwrap().record(Observation {
            model: &slot.info.model,
            version: &slot.info.version,
            shadow: true,
            latency_ms,
            inputs: &[],
            outputs: outputs.as_ref().ok().map(Vec::as_slice),
            agreed,
        });
    }

    /// Acts on a desired-state message, reporting each step through `report`.
    pub async fn apply(self: &Arc<Self>, desired: &Desired, report: &(dyn Fn(Status) + Send + Sync)) -> Result<()> {
        let same_as = |slot: &RwLock<Option<Arc<Slot>>>| slot.read().unwrap().as_ref().filter(|s| s.info.sha256 == desired.sha256).cloned();
        match desired.mode {
            Mode::Active => {
                if let Some(slot) = same_as(&self.active) {
                    // Already serving it: commit the floor if asked, drop any shadow.
                    if !desired.provisional {
                        self.state.accept(&slot.info.model, slot.info.sequence)?;
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

    /// Download → verify → rollback check → probe: a slot ready to serve.
    async fn prepare(self: &Arc<Self>, desired: &Desired, report: &(dyn Fn(Status) + Send + Sync)) -> Result<Arc<Slot>> {
        report(self.status(Some(desired), InstallState::Downloading, None));
        self.store.fetch(&self.config.coordinator, self.config.credential(), &desired.sha256, desired.size_bytes, self.config.max_artifact_mb << 20).await?;
        report(self.status(Some(desired), InstallState::Verifying, None));
        let (me, d) = (self.clone(), desired.clone());
        let (loaded, info) = tokio::task::spawn_blocking(move || me.verify(&d)).await??;
        report(self.status(Some(desired), InstallState::Probing, None));
        let probe = desired.probe.clone();
        let metadata = tokio::task::spawn_blocking({
            let loaded = loaded.clone();
            move || probe_model(&loaded, probe.as_ref())
        })
        .await??;
        Ok(Arc::new(Slot { info, loaded, metadata }))
    }

    fn verify(&self, d: &Desired) -> Result<(Arc<LoadedModel>, ActiveInfo)> {
        let loaded = self.store.load(&d.sha256)?;
        let claims = loaded.accepted.as_ref().and_then(|a| a.claims.clone()).context("the component carries no claims")?;
        if claims.name != d.model || claims.version != d.version {
            bail!("the component says it is {} {}, the deployment says {} {}", claims.name, claims.version, d.model, d.version);
        }
        self.state.check_sequence(&claims.name, claims.sequence)?;
        Ok((loaded, ActiveInfo { model: claims.name, version: claims.version, sha256: d.sha256.clone(), sequence: claims.sequence }))
    }

    /// Serves `slot` from now on; its live inputs are binned by its training quantiles.
    fn set_active(&self, slot: Arc<Slot>) {
        let bins = slot.loaded.accepted.as_ref().and_then(|a| a.claims.as_ref()).map(|c| c.feature_bins.clone()).unwrap_or_default();
        self.window.lock().unwrap().edges = bins;
        *self.active.write().unwrap() = Some(slot);
    }

    fn switch(&self, slot: Arc<Slot>, provisional: bool) -> Result<()> {
        let info = slot.info.clone();
        if provisional {
            self.state.check_sequence(&info.model, info.sequence)?;
        } else {
            self.state.accept(&info.model, info.sequence)?;
        }
        let previous = self.active();
        let file = ActiveFile { active: info.clone(), previous: previous.clone() };
        wasmops_trust::write_atomic(&self.config.state_dir.join("active.json"), &serde_json::to_vec_pretty(&file)?)?;
        self.set_active(slot);
        let mut staged = self.staged.write().unwrap();
        if staged.as_ref().is_some_and(|s| s.info.sha256 == info.sha256) {
            *staged = None;
        }
        *self.shadow.write().unwrap() = None;
        // Keep the active slot, the one before it, and a staged one.
        let staged_sha = staged.as_ref().map(|s| s.info.sha256.clone());
        let keep: Vec<&str> = [Some(info.sha256.as_str()), previous.as_ref().map(|p| p.sha256.as_str()), staged_sha.as_deref()].into_iter().flatten().collect();
        self.store.keep_only(&keep);
        Ok(())
    }

    /// Closes the telemetry window into a numbered report in the outbox
    /// (nothing when no prediction was made).
    pub fn close_window(&self) -> Result<Option<u64>> {
        let (started, stats) = self.window.lock().unwrap().take(now_ms());
        if stats.is_empty() {
            return Ok(None);
        }
        let report = self.outbox.lock().unwrap().push(&self.config.device_id, started, now_ms(), stats)?;
        Ok(Some(report.seq))
    }

    /// Publishes every unacknowledged report (QoS 1).
    fn send_pending(&self, client: &AsyncClient, skip: &mut BTreeMap<u64, Instant>) {
        let outbox = self.outbox.lock().unwrap();
        let Ok(pending) = outbox.pending() else { return };
        let topic = topics::telemetry(&self.config.device_id);
        skip.retain(|seq, _| pending.contains(seq));
        for seq in pending {
            // Give a sent report time to be acknowledged before sending it again.
            if skip.get(&seq).is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
                continue;
            }
            let Some(payload) = outbox.payload(seq) else { continue };
            if client.try_publish(&topic, QoS::AtLeastOnce, false, payload).is_err() {
                break; // the client's queue is full (offline): try again next tick
            }
            skip.insert(seq, Instant::now());
        }
    }

    fn acked(&self, payload: &[u8]) {
        match serde_json::from_slice::<Ack>(payload) {
            Ok(a) => self.outbox.lock().unwrap().ack(&a.seqs),
            Err(e) => tracing::warn!("ignoring a malformed telemetry ack: {e}"),
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
            "served": self.served,
            "telemetry": {"pending_reports": pending, "dropped_reports": dropped_reports, "dropped_predictions": dropped_predictions},
        })
    }
}

/// Whether a shadow's outputs match the live ones: integer and text outputs
/// exactly, floats within 1e-3 (relative, absolute near zero).
fn agree(live: &[Tensor], shadow: &[Tensor]) -> bool {
    wasmops_host::output_difference(live, shadow).is_ok_and(|d| d <= 1e-3)
}

/// The health probe: one prediction on the stored sample (or zeros of each
/// declared input); it must succeed with finite outputs.
fn probe_model(loaded: &LoadedModel, sample: Option<&serde_json::Value>) -> Result<ModelInfo> {
    let mut instance = loaded.instantiate()?;
    let metadata = instance.metadata()?;
    let inputs = match sample {
        Some(s) => wasmops_host::tensors_json::parse_inputs(&s.to_string(), &metadata).context("health probe failed")?,
        None => synthetic_inputs(&metadata),
    };
    let outputs = instance.predict(&inputs).context("health probe failed")?;
    for t in &outputs {
        if let TensorData::Float32(v) = &t.data {
            if v.iter().any(|x| !x.is_finite()) {
                bail!("health probe failed: output `{}` is not finite", t.name);
            }
        }
    }
    Ok(metadata)
}

/// Zeros of each declared input (symbolic dims → 1), for models deployed without a sample.
fn synthetic_inputs(info: &ModelInfo) -> Vec<Tensor> {
    info.inputs
        .iter()
        .map(|spec| {
            let shape: Vec<u32> = spec.shape.iter().map(|d| if let Dim::Fixed(n) = d { *n as u32 } else { 1 }).collect();
            let n = shape.iter().map(|d| *d as usize).product();
            let data = match spec.element_type {
                ElementType::Text => TensorData::Text(vec![String::new(); n]),
                ElementType::Int64 | ElementType::Int32 => TensorData::Int64(vec![0; n]),
                _ => TensorData::Float32(vec![0.0; n]),
            };
            Tensor { name: spec.name.clone(), shape, data }
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A connected agent's background work; stops on drop of [`Running::stop`].
pub struct Running {
    pub agent: Arc<Agent>,
    presence: Presence,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Says goodbye (retained `offline`) and stops.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        // A last report, so predictions made since the last tick are not left behind.
        let _ = self.agent.close_window();
        self.presence.stop().await;
    }

    /// Vanishes without a word (the broker publishes the Last Will).
    pub fn crash(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.presence.crash();
    }
}

/// Connects `agent` to MQTT: presence, desired-state installs, status
/// reports, telemetry with acknowledgements.
pub fn start(agent: Arc<Agent>) -> Result<Running> {
    let config = &agent.config;
    let subscriptions = vec![topics::desired(&config.device_id), topics::telemetry_ack(&config.device_id)];
    let login = Some(config.credential().to_string()).filter(|t| !t.is_empty());
    let (presence, mut incoming) = Presence::start_with(&config.mqtt, &config.device_id, login, config.labels.clone(), Duration::from_secs(10), subscriptions)?;
    let client = presence.client().clone();
    let status_topic = topics::status(&config.device_id);
    let publisher = {
        let (agent, client) = (agent.clone(), client.clone());
        Arc::new(move |s: Status| {
            *agent.last_status.write().unwrap() = Some(s.clone());
            let payload = serde_json::to_vec(&s).expect("status serialises");
            if let Err(e) = client.try_publish(&status_topic, QoS::AtLeastOnce, true, payload) {
                tracing::warn!("cannot queue a status report: {e}");
            }
        })
    };
    // Say what runs after a restart.
    publisher(agent.status(None, InstallState::Active, None));

    let (desired_tx, mut desired_rx) = tokio::sync::watch::channel::<Option<Desired>>(None);
    let router = {
        let agent = agent.clone();
        let ack_topic = topics::telemetry_ack(&config.device_id);
        tokio::spawn(async move {
            while let Some(msg) = incoming.recv().await {
                if msg.topic == ack_topic {
                    agent.acked(&msg.payload);
                    continue;
                }
                if msg.payload.is_empty() {
                    continue;
                }
                match serde_json::from_slice::<Desired>(&msg.payload) {
                    // Only the newest desired state matters: a slow install is not queued behind stale ones.
                    Ok(d) => {
                        desired_tx.send_replace(Some(d));
                    }
                    Err(e) => tracing::warn!("ignoring a malformed desired-state message: {e}"),
                }
            }
        })
    };
    let installer = {
        let agent = agent.clone();
        tokio::spawn(async move {
            while desired_rx.changed().await.is_ok() {
                let Some(desired) = desired_rx.borrow_and_update().clone() else { continue };
                if let Err(e) = agent.apply(&desired, &*publisher).await {
                    tracing::warn!("{}: install of {} {} failed: {e:#}", agent.id(), desired.model, desired.version);
                    publisher(agent.status(Some(&desired), InstallState::Failed, Some(format!("{e:#}"))));
                }
            }
        })
    };
    let telemetry = {
        let agent = agent.clone();
        let mut connections = presence.connections();
        let interval = Duration::from_millis(config.telemetry_interval_ms.max(50));
        tokio::spawn(async move {
            let mut sent = BTreeMap::new();
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = agent.close_window() {
                            tracing::error!("{}: cannot store a telemetry report: {e:#}", agent.id());
                        }
                    }
                    // Reconnected: everything unacknowledged goes out again at once.
                    Ok(()) = connections.changed() => sent.clear(),
                }
                agent.send_pending(&client, &mut sent);
            }
        })
    };
    Ok(Running { agent, presence, tasks: vec![router, installer, telemetry] })
}

/// Runs one agent until `shutdown` resolves: MQTT (see [`start`]) and the local
/// prediction endpoint.
pub async fn run(mut config: AgentConfig, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
    config.ensure_credential(&reqwest::Client::new()).await?;
    let agent = Arc::new(Agent::new(config.clone())?);
    if let Err(e) = agent.restore() {
        tracing::error!("could not restore the active model: {e:#}");
    }
    let running = start(agent.clone())?;
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    println!("wasmops agent {} serving predictions on http://{}", config.device_id, listener.local_addr()?);
    axum::serve(listener, local_api(agent)).with_graceful_shutdown(shutdown).await?;
    running.stop().await;
    Ok(())
}

fn local_api(agent: Arc<Agent>) -> axum::Router {
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    let json = [("content-type", "application/json")];
    axum::Router::new()
        .route(
            "/v1/predict",
            post(move |State(a): State<Arc<Agent>>, body: String| async move {
                match a.serve(body).await {
                    Ok(out) => (StatusCode::OK, json, out),
                    Err(e) => (StatusCode::BAD_REQUEST, json, serde_json::json!({"error": format!("{e:#}")}).to_string()),
                }
            }),
        )
        .route("/v1/status", get(|State(a): State<Arc<Agent>>| async move { axum::Json(a.status_json()) }))
        .with_state(agent)
}
