//! The device agent: keeps serving predictions from the active model while it
//! installs what the coordinator asks for.
//!
//! Install path (each step reported on the status topic): download (resumable,
//! size-capped, sha256) → trust policy (signature, delegation, claims) →
//! rollback check → compile and link → health probe (a prediction on the
//! deployment's stored sample, or a synthetic one) → atomic switch of the
//! active slot (previous kept for rollback) → sequence recorded. Any failure
//! leaves the running model untouched.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::QoS;
use serde::{Deserialize, Serialize};
use wasmops_host::bindings::{Dim, ElementType, ModelInfo, Tensor, TensorData};
use wasmops_host::{Host, HostConfig, LoadedModel, SignaturePolicy};
use wasmops_trust::{StateDir, TrustDir, TrustPolicy};

use crate::presence::Presence;
use crate::topics;

fn default_listen() -> SocketAddr {
    "127.0.0.1:9090".parse().expect("valid address")
}

fn default_max_artifact_mb() -> u64 {
    256
}

/// `agent.toml`. Relative paths are relative to the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub device_id: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Coordinator URL, for artifact downloads.
    pub coordinator: String,
    /// This device's API token.
    pub token: String,
    pub mqtt: String,
    pub state_dir: PathBuf,
    /// Local prediction endpoint for the device's applications.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_max_artifact_mb")]
    pub max_artifact_mb: u64,
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

    fn policy(&self) -> Result<TrustPolicy> {
        let read = |p: &Path| -> Result<wasmops_sign::PublicKey> { Ok(wasmops_sign::PublicKey::from_bytes(&std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?)?) };
        match (&self.trust.root, &self.trust.trust_dir) {
            (Some(root), Some(dir)) => Ok(TrustPolicy::root(vec![read(root)?], TrustDir::new(dir).load()?)),
            (None, None) if !self.trust.keys.is_empty() => Ok(TrustPolicy::keys(self.trust.keys.iter().map(|k| read(k)).collect::<Result<_>>()?)),
            _ => bail!("[trust] needs root + trust_dir, or keys"),
        }
    }
}

/// What the coordinator wants this device to run (retained on the desired topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub deployment: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// A stored sample for the health probe: `{"inputs":[…]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallState {
    Downloading,
    Verifying,
    Probing,
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

pub struct Agent {
    config: AgentConfig,
    host: Host,
    state: StateDir,
    http: reqwest::Client,
    active: RwLock<Option<Arc<Slot>>>,
    last_status: RwLock<Option<Status>>,
}

impl Agent {
    pub fn new(config: AgentConfig) -> Result<Agent> {
        std::fs::create_dir_all(config.state_dir.join("slots"))?;
        // Rollback is an install decision (recorded only after the probe passes),
        // so the host's policy has no state directory; the agent checks it itself.
        let host_config = HostConfig {
            cache_dir: Some(config.state_dir.join("cache")),
            memory_limit: 512 << 20,
            deadline: Duration::from_secs(10),
            ..HostConfig::new(SignaturePolicy::Trusted(config.policy()?))
        };
        Ok(Agent {
            host: Host::new(host_config)?,
            state: StateDir::new(config.state_dir.join("trust-state")),
            http: reqwest::Client::builder().timeout(Duration::from_secs(600)).build()?,
            active: RwLock::new(None),
            last_status: RwLock::new(None),
            config,
        })
    }

    fn slot_path(&self, sha: &str) -> PathBuf {
        self.config.state_dir.join("slots").join(format!("{sha}.wasm"))
    }

    pub fn active(&self) -> Option<ActiveInfo> {
        self.active.read().unwrap().as_ref().map(|s| s.info.clone())
    }

    /// Loads the active slot written before a restart.
    pub fn restore(&self) -> Result<()> {
        let path = self.config.state_dir.join("active.json");
        let Ok(bytes) = std::fs::read(&path) else { return Ok(()) };
        let file: ActiveFile = serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))?;
        let wasm = std::fs::read(self.slot_path(&file.active.sha256))?;
        let loaded = Arc::new(self.host.load(&wasm)?);
        let metadata = loaded.instantiate()?.metadata()?;
        *self.active.write().unwrap() = Some(Arc::new(Slot { info: file.active, loaded, metadata }));
        Ok(())
    }

    /// Runs one prediction on the active model.
    pub fn predict_json(&self, body: &str) -> Result<String> {
        let slot = self.active.read().unwrap().clone().context("no model is installed yet")?;
        let inputs = wasmops_host::tensors_json::parse_inputs(body, &slot.metadata)?;
        let outputs = slot.loaded.instantiate()?.predict(&inputs)?;
        Ok(wasmops_host::tensors_json::outputs_json(&outputs))
    }

    /// Installs `desired`, reporting each step through `report`. The active
    /// model keeps serving until the new one has passed its probe.
    pub async fn install(self: &Arc<Self>, desired: &Desired, report: &(dyn Fn(Status) + Send + Sync)) -> Result<ActiveInfo> {
        let status = |state: InstallState, error: Option<String>| Status {
            deployment: Some(desired.deployment.clone()),
            state,
            model: Some(desired.model.clone()),
            version: Some(desired.version.clone()),
            error,
            active: self.active(),
        };
        report(status(InstallState::Downloading, None));
        let path = self.slot_path(&desired.sha256);
        if !path.exists() {
            crate::download::download(&self.http, &self.config.coordinator, &self.config.token, &desired.sha256, desired.size_bytes, self.config.max_artifact_mb << 20, &path).await?;
        }
        report(status(InstallState::Verifying, None));
        let me = self.clone();
        let d = desired.clone();
        let (loaded, info) = tokio::task::spawn_blocking(move || me.verify_and_load(&d)).await??;
        report(status(InstallState::Probing, None));
        let me = self.clone();
        let probe = desired.probe.clone();
        let (loaded, metadata) = tokio::task::spawn_blocking(move || me.probe(loaded, probe.as_ref())).await??;
        self.switch(info.clone(), loaded, metadata)?;
        report(status(InstallState::Active, None));
        Ok(info)
    }

    fn verify_and_load(&self, d: &Desired) -> Result<(Arc<LoadedModel>, ActiveInfo)> {
        let path = self.slot_path(&d.sha256);
        let wasm = std::fs::read(&path)?;
        let result = (|| {
            let loaded = self.host.load(&wasm)?;
            let claims = loaded.accepted.as_ref().and_then(|a| a.claims.clone()).context("the component carries no claims")?;
            if claims.name != d.model || claims.version != d.version {
                bail!("the component says it is {} {}, the deployment says {} {}", claims.name, claims.version, d.model, d.version);
            }
            self.state.check_sequence(&claims.name, claims.sequence)?;
            Ok((Arc::new(loaded), ActiveInfo { model: claims.name, version: claims.version, sha256: d.sha256.clone(), sequence: claims.sequence }))
        })();
        if result.is_err() {
            // Never keep bytes that failed verification.
            let _ = std::fs::remove_file(&path);
        }
        result
    }

    fn probe(&self, loaded: Arc<LoadedModel>, sample: Option<&serde_json::Value>) -> Result<(Arc<LoadedModel>, ModelInfo)> {
        let mut instance = loaded.instantiate()?;
        let metadata = instance.metadata()?;
        let inputs = match sample {
            Some(s) => wasmops_host::tensors_json::parse_inputs(&s.to_string(), &metadata)?,
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
        Ok((loaded, metadata))
    }

    fn switch(&self, info: ActiveInfo, loaded: Arc<LoadedModel>, metadata: ModelInfo) -> Result<()> {
        self.state.accept(&info.model, info.sequence)?;
        let previous = self.active();
        let file = ActiveFile { active: info.clone(), previous: previous.clone() };
        wasmops_trust::write_atomic(&self.config.state_dir.join("active.json"), &serde_json::to_vec_pretty(&file)?)?;
        *self.active.write().unwrap() = Some(Arc::new(Slot { info: info.clone(), loaded, metadata }));
        // Keep two slots: the active one and the one before it.
        let keep: Vec<String> = [Some(info.sha256), previous.map(|p| p.sha256)].into_iter().flatten().map(|s| format!("{s}.wasm")).collect();
        if let Ok(entries) = std::fs::read_dir(self.config.state_dir.join("slots")) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".wasm") && !keep.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }
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

/// Runs the agent until `shutdown` resolves: presence, desired-state
/// subscription, installs, and the local prediction endpoint.
pub async fn run(config: AgentConfig, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<()> {
    let agent = Arc::new(Agent::new(config.clone())?);
    if let Err(e) = agent.restore() {
        tracing::error!("could not restore the active model: {e:#}");
    }
    let (presence, mut incoming) = Presence::start_with(&config.mqtt, &config.device_id, config.labels.clone(), Duration::from_secs(10), vec![topics::desired(&config.device_id)])?;
    let client = presence.client().clone();
    let status_topic = topics::status(&config.device_id);
    let publisher = {
        let agent = agent.clone();
        move |s: Status| {
            *agent.last_status.write().unwrap() = Some(s.clone());
            let payload = serde_json::to_vec(&s).expect("status serialises");
            if let Err(e) = client.try_publish(&status_topic, QoS::AtLeastOnce, true, payload) {
                tracing::warn!("cannot queue a status report: {e}");
            }
        }
    };
    // Say what runs after a restart.
    publisher(Status { deployment: None, state: InstallState::Active, model: None, version: None, error: None, active: agent.active() });

    let installer = {
        let agent = agent.clone();
        tokio::spawn(async move {
            while let Some(msg) = incoming.recv().await {
                if msg.payload.is_empty() {
                    continue;
                }
                let desired: Desired = match serde_json::from_slice(&msg.payload) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!("ignoring a malformed desired-state message: {e}");
                        continue;
                    }
                };
                if agent.active().is_some_and(|a| a.sha256 == desired.sha256) {
                    publisher(Status { deployment: Some(desired.deployment.clone()), state: InstallState::Active, model: Some(desired.model), version: Some(desired.version), error: None, active: agent.active() });
                    continue;
                }
                if let Err(e) = agent.install(&desired, &publisher).await {
                    tracing::warn!("install of {} {} failed: {e:#}", desired.model, desired.version);
                    publisher(Status {
                        deployment: Some(desired.deployment.clone()),
                        state: InstallState::Failed,
                        model: Some(desired.model),
                        version: Some(desired.version),
                        error: Some(format!("{e:#}")),
                        active: agent.active(),
                    });
                }
            }
        })
    };

    let app = local_api(agent.clone());
    let listener = tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("cannot listen on {}", config.listen))?;
    println!("wasmops agent {} serving predictions on http://{}", config.device_id, listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await?;
    installer.abort();
    presence.stop().await;
    Ok(())
}

fn local_api(agent: Arc<Agent>) -> axum::Router {
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/v1/predict",
            post(|axum::extract::State(a): axum::extract::State<Arc<Agent>>, body: String| async move {
                match tokio::task::spawn_blocking(move || a.predict_json(&body)).await {
                    Ok(Ok(json)) => (StatusCode::OK, [("content-type", "application/json")], json),
                    Ok(Err(e)) => (StatusCode::BAD_REQUEST, [("content-type", "application/json")], serde_json::json!({"error": format!("{e:#}")}).to_string()),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "application/json")], serde_json::json!({"error": e.to_string()}).to_string()),
                }
            }),
        )
        .route(
            "/v1/status",
            get(|axum::extract::State(a): axum::extract::State<Arc<Agent>>| async move {
                axum::Json(serde_json::json!({"device": a.config.device_id, "active": a.active(), "last_status": a.last_status.read().unwrap().clone()}))
            }),
        )
        .with_state(agent)
}
