//! How a coordinator is set up: [`Settings`] as read from a TOML file
//! (`wasmops coordinator --config coordinator.toml`) and overridden by flags,
//! with every default in one place ([`defaults`]); resolved into a
//! [`CoordinatorConfig`].
//!
//! ```toml
//! data_dir = "/var/lib/wasmops"
//! database = "postgres://wasmops@127.0.0.1/wasmops"   # default: SQLite in data_dir
//! artifacts = "file:///srv/wasmops/artifacts"         # default: data_dir/artifacts
//! listen = "0.0.0.0:8080"
//! mqtt = "mqtt://127.0.0.1:1883"                       # default: an embedded broker
//! mosquitto_dir = "/etc/mosquitto/wasmops"              # `wasmops mosquitto-config` wrote it
//! insecure_plain = false          # true: HTTP and MQTT in clear (never on a real network)
//! webhooks = ["https://hooks.example/wasmops"]
//! telemetry_retention_hours = 720
//! monitor_bucket_seconds = 60     # one trend point
//! monitor_window_seconds = 300    # what the watcher judges
//!
//! [trust]
//! root = "root.pub"
//! trust_dir = "trust"
//!
//! [tls]                           # default: a private CA in data_dir/tls
//! cert = "server.pem"             # or given certificates (chain, then key)
//! key = "server.key"
//! ca = "ca.pem"                   # what clients are told to trust
//! names = ["coordinator.plant.example"]   # more names for the generated certificate
//! client_certs = true             # devices log in to MQTT with their certificate too
//! ```
//! Relative paths are relative to the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wasmops_trust::TrustPolicy;

/// The defaults, each in one place.
pub mod defaults {
    /// Where the zero-setup state lives (SQLite file, artifacts, admin token).
    pub const DATA_DIR: &str = wasmops_api::DEFAULT_DATA_DIR;
    pub const LISTEN: &str = "127.0.0.1:8080";
    /// Away from 1883, where a system broker may run.
    pub const MQTT_LISTEN: &str = "127.0.0.1:18830";
    /// Largest component accepted (MobileNet-sized components are ~8 MB).
    pub const MAX_ARTIFACT_MB: usize = 256;
    /// A week of telemetry windows.
    pub const TELEMETRY_RETENTION_HOURS: u64 = 168;
    /// One trend point a minute: six 10 s device windows, and a day's trend
    /// of one version is 1,440 fleet rows.
    pub const MONITOR_BUCKET_SECONDS: u64 = 60;
    /// The watcher judges the last five minutes: at one prediction per
    /// second on 10 devices that is 3,000 values a column, enough for the
    /// drift rule's noise to stay far under its 0.1 threshold.
    pub const MONITOR_WINDOW_SECONDS: u64 = 300;
}

/// What a settings file (or the flags) may say; unset fields take [`defaults`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`.
    pub database: Option<String>,
    /// An `object_store` URL (`file:///…`).
    pub artifacts: Option<String>,
    pub listen: Option<SocketAddr>,
    pub max_artifact_mb: Option<usize>,
    /// An external broker, e.g. `mqtt://127.0.0.1:1883`.
    pub mqtt: Option<String>,
    /// Where the embedded broker listens when `mqtt` is not set.
    pub mqtt_listen: Option<SocketAddr>,
    /// With `mqtt`: the directory `wasmops mosquitto-config` wrote for that
    /// broker; the coordinator logs in with its password and manages the
    /// devices' logins and topic ACLs there.
    pub mosquitto_dir: Option<PathBuf>,
    #[serde(default)]
    pub webhooks: Vec<String>,
    pub telemetry_retention_hours: Option<u64>,
    pub monitor_bucket_seconds: Option<u64>,
    pub monitor_window_seconds: Option<u64>,
    #[serde(default)]
    pub trust: TrustSettings,
    /// TLS for the API and the embedded broker.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Serve HTTP and MQTT in clear, and accept a plain external broker.
    pub insecure_plain: Option<bool>,
    /// The training worker `wasmops coordinator` runs in its own process.
    #[serde(default)]
    pub worker: WorkerSettings,
}

/// The in-process training worker (the closed loop's compute for the
/// zero-setup default; `wasmops worker` runs more elsewhere).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// `false`: no worker in this process (default `true`).
    pub enabled: Option<bool>,
    /// The release key it signs passed candidates with; without one, runs
    /// stop after the gate.
    pub key: Option<PathBuf>,
    /// The delegation that lets that key sign (scoped to model names).
    pub delegation: Option<PathBuf>,
    /// Where command trainers run.
    pub workdir: Option<PathBuf>,
    /// Whether it runs command trainers (default `false`: each runs as the
    /// coordinator's user, so only built-in trainers unless asked).
    pub commands: Option<bool>,
}

/// The coordinator's TLS: given certificates, or (default) a private CA in
/// `data_dir/tls` that signs a server certificate for `names` (plus
/// localhost, the loopback addresses, the listen addresses and this host's
/// name) at every start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The server certificate chain (PEM), with `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The CA certificate clients are told to trust (PEM): the one that
    /// signed `cert`, or an external `mqtts://` broker's.
    pub ca: Option<PathBuf>,
    /// More DNS names or addresses for the generated certificate.
    #[serde(default)]
    pub names: Vec<String>,
    /// Devices must log in to the embedded broker with the certificate the
    /// private CA gave them at enrolment (and their credential, as always).
    pub client_certs: Option<bool>,
}

/// Whom the registry trusts: a root and its metadata, or plain release keys.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSettings {
    pub root: Option<PathBuf>,
    pub trust_dir: Option<PathBuf>,
    #[serde(default)]
    pub keys: Vec<PathBuf>,
}

/// A settings file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

impl Settings {
    /// Reads a TOML settings file; relative paths in it become relative to it.
    pub fn from_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.into(),
            source,
        })?;
        let mut s: Settings = toml::from_str(&text).map_err(|source| SettingsError::Parse {
            path: path.into(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        s.data_dir.as_mut().map(fix);
        s.mosquitto_dir.as_mut().map(fix);
        s.trust.root.as_mut().map(fix);
        s.trust.trust_dir.as_mut().map(fix);
        s.trust.keys.iter_mut().for_each(fix);
        s.worker.key.as_mut().map(fix);
        s.worker.delegation.as_mut().map(fix);
        s.worker.workdir.as_mut().map(fix);
        s.tls.cert.as_mut().map(fix);
        s.tls.key.as_mut().map(fix);
        s.tls.ca.as_mut().map(fix);
        Ok(s)
    }

    /// `self` with every field `over` sets replaced (flags over the file).
    pub fn overridden_by(self, over: Settings) -> Settings {
        let trust = if over.trust.root.is_some()
            || over.trust.trust_dir.is_some()
            || !over.trust.keys.is_empty()
        {
            over.trust
        } else {
            self.trust
        };
        Settings {
            data_dir: over.data_dir.or(self.data_dir),
            database: over.database.or(self.database),
            artifacts: over.artifacts.or(self.artifacts),
            listen: over.listen.or(self.listen),
            max_artifact_mb: over.max_artifact_mb.or(self.max_artifact_mb),
            mqtt: over.mqtt.or(self.mqtt),
            mqtt_listen: over.mqtt_listen.or(self.mqtt_listen),
            mosquitto_dir: over.mosquitto_dir.or(self.mosquitto_dir),
            webhooks: if over.webhooks.is_empty() {
                self.webhooks
            } else {
                over.webhooks
            },
            telemetry_retention_hours: over
                .telemetry_retention_hours
                .or(self.telemetry_retention_hours),
            monitor_bucket_seconds: over.monitor_bucket_seconds.or(self.monitor_bucket_seconds),
            monitor_window_seconds: over.monitor_window_seconds.or(self.monitor_window_seconds),
            trust,
            tls: TlsSettings {
                cert: over.tls.cert.or(self.tls.cert),
                key: over.tls.key.or(self.tls.key),
                ca: over.tls.ca.or(self.tls.ca),
                names: if over.tls.names.is_empty() {
                    self.tls.names
                } else {
                    over.tls.names
                },
                client_certs: over.tls.client_certs.or(self.tls.client_certs),
            },
            insecure_plain: over.insecure_plain.or(self.insecure_plain),
            worker: WorkerSettings {
                enabled: over.worker.enabled.or(self.worker.enabled),
                key: over.worker.key.or(self.worker.key),
                delegation: over.worker.delegation.or(self.worker.delegation),
                workdir: over.worker.workdir.or(self.worker.workdir),
                commands: over.worker.commands.or(self.worker.commands),
            },
        }
    }

    /// The settings with defaults filled in, and `trust` (built by the caller
    /// from [`Settings::trust`]) as the registry's policy.
    pub fn resolve(self, trust: TrustPolicy) -> CoordinatorConfig {
        let mqtt = match self.mqtt {
            Some(url) => MqttConfig::External(url),
            None => MqttConfig::Embedded(
                self.mqtt_listen
                    .unwrap_or_else(|| defaults::MQTT_LISTEN.parse().expect("valid default")),
            ),
        };
        CoordinatorConfig {
            data_dir: self.data_dir.unwrap_or_else(|| defaults::DATA_DIR.into()),
            database: self.database,
            artifacts: self.artifacts,
            listen: self
                .listen
                .unwrap_or_else(|| defaults::LISTEN.parse().expect("valid default")),
            trust,
            max_artifact_bytes: self
                .max_artifact_mb
                .unwrap_or(defaults::MAX_ARTIFACT_MB)
                .saturating_mul(1 << 20),
            mqtt,
            mosquitto_dir: self.mosquitto_dir,
            tls: (!self.insecure_plain.unwrap_or(false)).then_some(self.tls),
            webhooks: self.webhooks,
            telemetry_retention: Duration::from_secs(
                self.telemetry_retention_hours
                    .unwrap_or(defaults::TELEMETRY_RETENTION_HOURS)
                    .saturating_mul(3600),
            ),
            monitor: crate::monitor::MonitorConfig {
                bucket: Duration::from_secs(
                    self.monitor_bucket_seconds
                        .unwrap_or(defaults::MONITOR_BUCKET_SECONDS)
                        .max(1),
                ),
                window: Duration::from_secs(
                    self.monitor_window_seconds
                        .unwrap_or(defaults::MONITOR_WINDOW_SECONDS)
                        .max(1),
                ),
            },
            faults: vec![],
        }
    }
}

/// A coordinator's resolved settings. Zero-setup defaults live in `data_dir`.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default a SQLite file in `data_dir`.
    pub database: Option<String>,
    /// An `object_store` URL (`file:///…`, `memory:///`); default `data_dir/artifacts`.
    pub artifacts: Option<String>,
    pub listen: SocketAddr,
    /// Who may sign components the registry accepts.
    pub trust: TrustPolicy,
    /// Largest component accepted, in bytes.
    pub max_artifact_bytes: usize,
    pub mqtt: MqttConfig,
    /// An external Mosquitto's `wasmops mosquitto-config` directory.
    pub mosquitto_dir: Option<PathBuf>,
    /// TLS for the API and the embedded broker; `None`: in clear
    /// (`insecure_plain`).
    pub tls: Option<TlsSettings>,
    /// URLs that receive every event as a JSON POST.
    pub webhooks: Vec<String>,
    /// Telemetry older than this is deleted (checked every minute).
    pub telemetry_retention: Duration,
    /// Monitoring: trend buckets and the watcher's window.
    pub monitor: crate::monitor::MonitorConfig,
    /// Fault injection specs (end-to-end tests; see [`crate::faults`]).
    pub faults: Vec<String>,
}

impl CoordinatorConfig {
    /// The defaults, with `data_dir` and `trust` (tests, the demo).
    pub fn new(data_dir: PathBuf, trust: TrustPolicy) -> CoordinatorConfig {
        Settings {
            data_dir: Some(data_dir),
            ..Settings::default()
        }
        .resolve(trust)
    }
}

/// Where devices talk to the coordinator.
#[derive(Debug, Clone)]
pub enum MqttConfig {
    /// Run rumqttd in-process on this address (the zero-setup default).
    Embedded(SocketAddr),
    /// An external broker, e.g. `mqtt://127.0.0.1:1883` (Mosquitto).
    External(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags_then_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "data_dir = \"state\"\nlisten = \"127.0.0.1:9000\"\nmax_artifact_mb = 8\n[trust]\nkeys = [\"k.pub\"]\n[worker]\nkey = \"loop.key\"\nworkdir = \"trainers\"\n").unwrap();
        let s = Settings::from_file(&file).unwrap();
        assert_eq!(s.worker.key, Some(dir.path().join("loop.key")));
        let off = Settings {
            worker: WorkerSettings {
                enabled: Some(false),
                ..Default::default()
            },
            ..Settings::default()
        };
        let merged = s.clone().overridden_by(off).worker;
        assert_eq!(merged.enabled, Some(false));
        assert_eq!(
            merged.workdir,
            Some(dir.path().join("trainers")),
            "the file's, not overridden"
        );
        assert_eq!(
            s.data_dir.as_deref(),
            Some(dir.path().join("state").as_path()),
            "relative to the file"
        );
        assert_eq!(s.trust.keys, vec![dir.path().join("k.pub")]);
        let flags = Settings {
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..Settings::default()
        };
        let c = s.overridden_by(flags).resolve(TrustPolicy::keys(vec![]));
        assert_eq!(c.listen.port(), 9100, "a flag wins over the file");
        assert_eq!(
            c.max_artifact_bytes,
            8 << 20,
            "the file wins over the default"
        );
        assert!(
            matches!(c.mqtt, MqttConfig::Embedded(a) if a.to_string() == defaults::MQTT_LISTEN)
        );
        assert_eq!(
            c.telemetry_retention,
            Duration::from_secs(defaults::TELEMETRY_RETENTION_HOURS * 3600)
        );
        std::fs::write(&file, "listen_on = 1").unwrap();
        assert!(
            Settings::from_file(&file)
                .unwrap_err()
                .to_string()
                .contains("listen_on"),
            "unknown keys are named"
        );
    }
}
