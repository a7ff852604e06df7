//! `agent.toml`: who the device is, where its coordinator and broker are,
//! whom it trusts; and the credential it holds (configured, or bought once
//! with an enrolment token and kept in its state directory).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use wasmops_api::{Credential, EnrolRequest, ErrorBody};
use wasmops_protocol::topics;
use wasmops_runtime::{HostConfig, SignaturePolicy};
use wasmops_trust::TrustPolicy;

fn default_listen() -> SocketAddr {
    "127.0.0.1:9090".parse().expect("valid address")
}

/// Largest component a device downloads (MobileNet-sized components are ~8 MB).
fn default_max_artifact_mb() -> u64 {
    256
}

/// One report per 10 s: a 1,000-device fleet sends 100 reports/s, far below
/// the ~16,000/s the coordinator stores (README, Fleet benchmarks).
fn default_telemetry_interval_ms() -> u64 {
    10_000
}

/// Reports kept on disk while offline: a day at one report per 10 s.
fn default_telemetry_buffer() -> usize {
    10_000
}

/// Trust metadata fetched from the coordinator once a minute: a revocation
/// reaches a 1,000-device fleet within a minute at ~17 small requests/s.
fn default_trust_refresh_seconds() -> u64 {
    60
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
    /// The coordinator's control key (hex of its `.pub` bytes), pinned: only
    /// desired states and acks it signed are accepted. Without it the key
    /// comes with the enrolment (see [`crate::control`]).
    #[serde(default)]
    pub control_key: Option<String>,
    /// `mqtts://host:port` (or `mqtt://` in clear, when the coordinator runs
    /// `--insecure-plain`).
    pub mqtt: String,
    /// The CA certificate (PEM) the coordinator's and the broker's TLS
    /// certificates are checked against, besides the system's: the
    /// coordinator's `data_dir/tls/ca.pem` (provisioning bundles carry it).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
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
    /// How often the trust metadata (root, delegations, revocations) is
    /// fetched from the coordinator and applied, under a root (`[trust] root`).
    #[serde(default = "default_trust_refresh_seconds")]
    pub trust_refresh_seconds: u64,
    /// Linear memory cap per model instance, MiB (default: the runtime's).
    #[serde(default)]
    pub memory_limit_mb: Option<usize>,
    /// Per-prediction deadline, ms (default: the runtime's).
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Opt-in, per model name: raw input rows kept per telemetry window (a
    /// uniform reservoir sample, at most 100) and sent to the coordinator
    /// for retraining and exact tests. Off for every model by default: raw
    /// rows may be personal data.
    #[serde(default)]
    pub sample_rows: BTreeMap<String, usize>,
    /// A signed component this device serves from its first start, before
    /// the coordinator asks for anything (a provisioning bundle's model; its
    /// compiled code may wait in the compile cache, precompiled). Judged by
    /// the trust policy like any download; ignored once a model is installed.
    #[serde(default)]
    pub preinstalled: Option<PathBuf>,
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
    /// A device with every optional setting at its default (what an
    /// `agent.toml` naming only these gets).
    pub fn new(
        device_id: String,
        coordinator: String,
        mqtt: String,
        state_dir: PathBuf,
        trust: TrustConfig,
    ) -> AgentConfig {
        AgentConfig {
            device_id,
            labels: BTreeMap::new(),
            coordinator,
            token: None,
            enrolment_token: None,
            control_key: None,
            mqtt,
            ca_cert: None,
            state_dir,
            listen: default_listen(),
            max_artifact_mb: default_max_artifact_mb(),
            telemetry_interval_ms: default_telemetry_interval_ms(),
            telemetry_buffer: default_telemetry_buffer(),
            trust,
            trust_refresh_seconds: default_trust_refresh_seconds(),
            memory_limit_mb: None,
            deadline_ms: None,
            sample_rows: BTreeMap::new(),
            preinstalled: None,
        }
    }

    pub fn from_file(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut c: AgentConfig = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid agent config", path.display()))?;
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
        c.preinstalled.as_mut().map(fix);
        c.ca_cert.as_mut().map(fix);
        anyhow::ensure!(
            topics::valid_device_id(&c.device_id),
            "device_id `{}` must be letters, digits, `-`, `_` or `.`",
            c.device_id
        );
        Ok(c)
    }

    /// What this device trusts to reach its coordinator and broker, and
    /// the certificate it presents once enrolment gave it one.
    pub fn tls(&self) -> Result<wasmops_tls::ClientTls> {
        self.identity(&wasmops_tls::ClientTls::from_file(self.ca_cert.as_deref())?)
    }

    /// `base` presenting this device's certificate, if it has one
    /// (`state_dir/tls/device.pem` for the key in `device.key`).
    pub fn identity(&self, base: &wasmops_tls::ClientTls) -> Result<wasmops_tls::ClientTls> {
        let (cert, key) = self.device_files();
        match std::fs::read(&cert) {
            Ok(pem) => {
                let key = wasmops_tls::DeviceKey::load_or_create(&key)?;
                Ok(base.with_identity(&pem, key.pem().as_bytes())?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(base.clone()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", cert.display())),
        }
    }

    /// This device's certificate and key files.
    fn device_files(&self) -> (PathBuf, PathBuf) {
        let dir = self.state_dir.join("tls");
        (dir.join("device.pem"), dir.join("device.key"))
    }

    pub fn policy(&self) -> Result<TrustPolicy> {
        let t = &self.trust;
        wasmops_trust::ops::policy_from_files(t.root.as_deref(), t.trust_dir.as_deref(), &t.keys)?
            .context("[trust] needs root + trust_dir, or keys")
    }

    /// Makes sure `token` holds this device's credential: from the config, from
    /// an earlier enrolment, or by enrolling now with the enrolment token.
    ///
    /// An enrolment token other than the one the saved credential came from
    /// is an operator's answer to a revoked credential (`wasmops devices
    /// reset`): the agent enrols with it, and keeps its saved credential if
    /// the coordinator says that one is still live (409) or refuses the token.
    pub async fn ensure_credential(&mut self, http: &reqwest::Client) -> Result<()> {
        let file = self.state_dir.join("credentials.json");
        let given = self
            .enrolment_token
            .as_deref()
            .map(|t| wasmops_trust::sha256_hex(t.as_bytes()));
        if let Ok(bytes) = std::fs::read(&file) {
            let saved: serde_json::Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt", file.display()))?;
            if saved["device"] == self.device_id.as_str()
                && let Some(t) = saved["token"].as_str()
            {
                self.token = Some(t.to_string());
                let fresh = given
                    .as_deref()
                    .is_some_and(|g| saved["enrolment_sha256"].as_str() != Some(g));
                if fresh && let Err(e) = self.enrol(http, &file).await {
                    tracing::warn!(
                        "kept the saved credential; enrolling with the new enrolment token failed: {e:#}"
                    );
                    self.token = Some(t.to_string());
                    // Refused: the next start does not ask again (unreachable:
                    // it does).
                    if e.downcast_ref::<reqwest::Error>().is_none() {
                        self.save_credential(&file, t, given.as_deref().unwrap_or_default())?;
                    }
                }
                return Ok(());
            }
        }
        if self.token.is_some() {
            return Ok(());
        }
        self.enrol(http, &file).await
    }

    /// Asks the coordinator whether it still takes this device's credential,
    /// and says loudly what to do when it does not (revoked by `wasmops
    /// devices reset`, or replaced). The agent serves its installed model
    /// either way; an unreachable coordinator is not an answer. Returns the
    /// control key the coordinator names when it takes the credential.
    pub async fn check_credential(&self, http: &reqwest::Client) -> Option<String> {
        let url = format!("{}/v1/whoami", self.coordinator.trim_end_matches('/'));
        let resp = http
            .get(&url)
            .bearer_auth(self.credential())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match resp {
            Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => {
                let why = r
                    .json::<ErrorBody>()
                    .await
                    .map(|b| b.error)
                    .unwrap_or_default();
                tracing::error!(
                    "the coordinator refuses device {}'s credential ({why}): it was revoked or replaced. \
                     The installed model keeps serving, but no update, status or telemetry gets through. \
                     An operator gives this device a fresh enrolment token (`wasmops enrolment --devices {}`); \
                     put it in agent.toml as enrolment_token and restart: the agent enrols with it.",
                    self.device_id,
                    self.device_id
                );
                None
            }
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["control_key"].as_str().map(str::to_string)),
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("cannot check the credential at {url}: {e}");
                None
            }
        }
    }

    /// Enrols with the enrolment token and saves the credential in `file`.
    async fn enrol(&mut self, http: &reqwest::Client, file: &std::path::Path) -> Result<()> {
        let Some(enrolment) = &self.enrolment_token else {
            bail!(
                "device {} has no credential: set `token` or `enrolment_token`",
                self.device_id
            )
        };
        let url = format!("{}/v1/enrol", self.coordinator.trim_end_matches('/'));
        // The device's own key: made here, kept here; only its public half
        // is sent, for the coordinator's CA to certify.
        let (cert_file, key_file) = self.device_files();
        let key = wasmops_tls::DeviceKey::load_or_create(&key_file)?;
        let resp = http
            .post(&url)
            .bearer_auth(enrolment)
            .json(&EnrolRequest {
                device: self.device_id.clone(),
                public_key: Some(hex::encode(key.public_key())),
            })
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        if !status.is_success() {
            let message = resp
                .json::<ErrorBody>()
                .await
                .map(|b| b.error)
                .unwrap_or_else(|_| "(no message)".into());
            bail!(
                "enrolment of {} refused ({status}): {message}",
                self.device_id
            );
        }
        let credential = resp
            .json::<Credential>()
            .await
            .context("the enrolment answer is not a credential")?;
        if let Some(key) = &credential.control_key {
            crate::control::Control::open(
                &self.device_id,
                &self.state_dir,
                self.control_key.as_deref(),
            )?
            .learn(key, true)
            .context("the enrolment answer's control key")?;
        }
        if let Some(cert) = &credential.client_cert {
            wasmops_trust::write_atomic_mode(&cert_file, cert.as_bytes(), Some(0o644))?;
        }
        let used = wasmops_trust::sha256_hex(enrolment.as_bytes());
        self.save_credential(file, &credential.token, &used)?;
        self.token = Some(credential.token);
        Ok(())
    }

    /// Saves `token` as this device's credential, with the enrolment token
    /// (its sha256) last tried.
    fn save_credential(
        &self,
        file: &std::path::Path,
        token: &str,
        enrolment_sha256: &str,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.state_dir)?;
        wasmops_trust::write_atomic_mode(
            file,
            &serde_json::to_vec(&serde_json::json!({
                "device": self.device_id, "token": token, "enrolment_sha256": enrolment_sha256,
            }))?,
            Some(0o600),
        )?;
        Ok(())
    }

    pub(crate) fn credential(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// The host settings agents use: no state directory in the policy, because
    /// rollback is an install decision the agent records only after the probe.
    pub fn host_config(&self, cache_dir: PathBuf) -> Result<HostConfig> {
        let mut config = HostConfig {
            cache_dir: Some(cache_dir),
            ..HostConfig::new(SignaturePolicy::Trusted(self.policy()?))
        };
        if let Some(mb) = self.memory_limit_mb {
            config.memory_limit = mb
                .checked_mul(1 << 20)
                .context("memory_limit_mb is too large")?;
        }
        if let Some(ms) = self.deadline_ms {
            config.deadline = Duration::from_millis(ms);
        }
        Ok(config)
    }
}
