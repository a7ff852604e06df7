//! `wasmops coordinator`: the registry, artifact store, HTTP API and fleet controller.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use wasmops_coordinator::Settings;
use wasmops_coordinator::config::{TlsSettings, TrustSettings, WorkerSettings, defaults};

use crate::args::TrustArgs;

/// Run the coordinator: registry, artifact store and HTTP API.
///
/// Settings come from --config (TOML), then these flags, then defaults.
#[derive(Parser)]
pub struct CoordinatorCommand {
    /// A TOML settings file (same names as these flags, `[trust]` for root/trust_dir/keys).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the zero-setup defaults live (SQLite file, artifacts, admin token).
    #[arg(long, help = format!("Where the zero-setup state lives: SQLite file, artifacts, admin token [default: {}]", defaults::DATA_DIR))]
    pub data_dir: Option<PathBuf>,
    /// postgres://USER@HOST/DB or sqlite://FILE (default: DATA_DIR/wasmops.db).
    #[arg(long)]
    pub database: Option<String>,
    /// object_store URL for artifacts, e.g. file:///srv/wasmops (default: DATA_DIR/artifacts).
    #[arg(long)]
    pub artifacts: Option<String>,
    #[arg(long, help = format!("Where the HTTP API listens [default: {}]", defaults::LISTEN))]
    pub listen: Option<SocketAddr>,
    #[arg(long, help = format!("Largest component accepted, in MiB [default: {}]", defaults::MAX_ARTIFACT_MB))]
    pub max_artifact_mb: Option<usize>,
    /// External MQTT broker, e.g. mqtts://broker.example:8883 (default: an
    /// embedded broker).
    #[arg(long)]
    pub mqtt: Option<String>,
    #[arg(long, help = format!("Where the embedded broker listens [default: {}]", defaults::MQTT_LISTEN))]
    pub mqtt_listen: Option<SocketAddr>,
    /// With --mqtt: the directory `wasmops mosquitto-config` wrote for that
    /// Mosquitto; devices' logins and topic ACLs are then managed there.
    #[arg(long)]
    pub mosquitto_dir: Option<PathBuf>,
    /// TLS: the server certificate chain (PEM), with --tls-key (default: a
    /// certificate from a private CA in DATA_DIR/tls, made on first start).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// TLS: the CA certificate clients are told to trust (the one that
    /// signed --tls-cert, or an mqtts:// broker's).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
    /// TLS: another name or address devices reach this coordinator by, for
    /// the generated certificate; repeatable.
    #[arg(long = "tls-name")]
    pub tls_names: Vec<String>,
    /// Devices log in to the embedded broker with the certificate its CA
    /// gave them at enrolment, as well as their credential.
    #[arg(long)]
    pub client_certs: bool,
    /// Serve the API and MQTT in clear, and accept a plain mqtt:// broker:
    /// tokens and models then cross the network readable by anyone on it.
    #[arg(long)]
    pub insecure_plain: bool,
    /// POST every event (JSON) to this URL; repeatable.
    #[arg(long = "webhook")]
    pub webhooks: Vec<String>,
    #[arg(long, help = format!("Hours of telemetry kept; older windows are deleted [default: {}]", defaults::TELEMETRY_RETENTION_HOURS))]
    pub telemetry_retention_hours: Option<u64>,
    #[arg(long, help = format!("Monitoring: seconds per trend point [default: {}]", defaults::MONITOR_BUCKET_SECONDS))]
    pub monitor_bucket_seconds: Option<u64>,
    #[arg(long, help = format!("Monitoring: seconds of telemetry the drift watcher judges [default: {}]", defaults::MONITOR_WINDOW_SECONDS))]
    pub monitor_window_seconds: Option<u64>,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The in-process training worker's release key (it signs the candidates
    /// that pass validation); without one, runs stop after the gate.
    #[arg(long)]
    pub worker_key: Option<PathBuf>,
    /// The delegation that lets --worker-key sign (scoped to model names).
    #[arg(long)]
    pub worker_delegation: Option<PathBuf>,
    /// Where the in-process worker runs command trainers (default: here).
    #[arg(long)]
    pub worker_workdir: Option<PathBuf>,
    /// Let the in-process worker run command trainers: each runs as this
    /// coordinator's user (off by default: built-in trainers only).
    #[arg(long)]
    pub worker_commands: bool,
    /// Run no training worker in this process (use `wasmops worker` elsewhere).
    #[arg(long)]
    pub no_worker: bool,
    /// Fault injection for end-to-end tests: NAME=fail-every:N or NAME=hang-at:N.
    #[arg(long = "fault", hide = true)]
    pub faults: Vec<String>,
}

impl CoordinatorCommand {
    pub fn execute(self) -> Result<()> {
        let file = match &self.config {
            Some(p) => Settings::from_file(p)?,
            None => Settings::default(),
        };
        let k = &self.trust.keys;
        let flags = Settings {
            data_dir: self.data_dir,
            database: self.database,
            artifacts: self.artifacts,
            listen: self.listen,
            max_artifact_mb: self.max_artifact_mb,
            mqtt: self.mqtt,
            mqtt_listen: self.mqtt_listen,
            mosquitto_dir: self.mosquitto_dir,
            webhooks: self.webhooks,
            telemetry_retention_hours: self.telemetry_retention_hours,
            monitor_bucket_seconds: self.monitor_bucket_seconds,
            monitor_window_seconds: self.monitor_window_seconds,
            tls: TlsSettings {
                cert: self.tls_cert,
                key: self.tls_key,
                ca: self.tls_ca,
                names: self.tls_names,
                client_certs: self.client_certs.then_some(true),
            },
            insecure_plain: self.insecure_plain.then_some(true),
            trust: TrustSettings {
                root: k.root.clone(),
                trust_dir: k.trust_dir.clone(),
                keys: k.trust.clone(),
            },
            worker: WorkerSettings {
                enabled: self.no_worker.then_some(false),
                key: self.worker_key.clone(),
                delegation: self.worker_delegation.clone(),
                workdir: self.worker_workdir.clone(),
                commands: self.worker_commands.then_some(true),
            },
        };
        let settings = file.overridden_by(flags);
        let t = &settings.trust;
        let mut trust = wasmops_trust::ops::policy_from_files(t.root.as_deref(), t.trust_dir.as_deref(), &t.keys)?
            .context("the coordinator needs to know whom to trust: --root ROOT.pub --trust-dir DIR, or --trust KEY.pub (or [trust] in --config)")?;
        if let Some(dir) = &self.trust.state_dir {
            trust = trust.with_state(wasmops_trust::StateDir::new(dir));
        }
        if !self.trust.grants.is_empty() {
            trust.granted = self.trust.grants.clone();
        }
        let w = settings.worker.clone();
        let mut config = settings.resolve(trust);
        config.faults = self.faults;
        let cache = config.data_dir.join("worker-cache");
        let worker = w.enabled.unwrap_or(true).then_some(w);
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(wasmops_coordinator::serve_with(
            config,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            move |ready| {
                if let Some(w) = worker {
                    start_worker(ready, w, cache);
                }
            },
        ))
    }
}

/// The zero-setup worker: a thread of this process, talking to the API like
/// any other worker (training and the runtime stay out of the coordinator).
pub(crate) fn start_worker(ready: wasmops_coordinator::Ready, w: WorkerSettings, cache: PathBuf) {
    let config = wasmops_worker::WorkerConfig {
        coordinator: ready.url,
        tls: ready.tls,
        token: ready.worker_token,
        name: wasmops_coordinator::runs::IN_PROCESS_WORKER.into(),
        release_key: w.key,
        delegation: w.delegation,
        workdir: w.workdir.unwrap_or_else(|| ".".into()),
        allow_commands: w.commands.unwrap_or(false),
        cache_dir: Some(cache),
        poll: std::time::Duration::from_secs(1),
    };
    std::thread::spawn(move || match wasmops_worker::Worker::new(config) {
        Ok(w) => w.serve(&std::sync::atomic::AtomicBool::new(false)),
        Err(e) => tracing::error!("the in-process worker cannot start: {e}"),
    });
}
