//! The wasmops coordinator: the cloud side of the fleet loop.
//!
//! Data path: `POST /v1/models` (a signed component) → [`registry`] verifies it
//! with the trust chain and reads its signed claims → [`artifacts`] stores the
//! bytes content-addressed → the database ([`db`]) records the version, its
//! lineage and an [`audit`] entry. Devices later fetch artifacts by sha256
//! (with `Range`, so downloads resume).
//!
//! Fleet path: devices announce themselves over MQTT ([`mqtt`] → [`devices`];
//! the embedded broker lets each client do only what [`acl`] allows);
//! a [`deployments`] or a [`rollouts`] entry publishes their desired state
//! ([`bus`], signed with the control key); their status reports move it along; their [`telemetry`] (stored
//! once, acknowledged) feeds the rollout gates ([`rollouts::machine`]);
//! [`events`] tell the outside world; [`monitor`] folds the telemetry into
//! time buckets, judges drift, data quality and performance against the
//! profile signed with each version, and emits monitoring events. [`http`] serves the API whose bodies are
//! `wasmops_api`'s types; [`error`] says which failures are the caller's (4xx)
//! and which are the coordinator's (5xx). Settings: [`config`]. Both the API
//! and the embedded broker listen behind TLS ([`tls`]: a private CA by
//! default) unless `insecure_plain` says otherwise.
//!
//! Closed loop: [`datasets`] stores training data, [`runs`] queues runs
//! that workers (outside this crate) carry out, [`loops`] starts them on
//! triggers and promotes what passed.
//!
//! Module layers (each uses only those above it): error, acl, db, audit, auth,
//! events, artifacts, bus → registry, enrolment, devices → monitor →
//! telemetry, datasets, runs → deployments, rollouts → loops → mqtt → http;
//! config and tls stand apart.

pub mod acl;
pub mod artifacts;
pub mod audit;
pub mod auth;
pub mod bus;
pub mod config;
pub mod datasets;
pub mod db;
pub mod deployments;
pub mod devices;
pub mod enrolment;
pub mod error;
pub mod events;
pub mod faults;
pub mod groups;
pub mod http;
pub mod labels;
pub mod loops;
pub mod monitor;
pub mod mosquitto;
pub mod mqtt;
pub mod registry;
pub mod rollouts;
pub mod runs;
pub mod telemetry;
#[cfg(test)]
pub(crate) mod testing;
pub mod tls;
pub mod trust;

use std::sync::Arc;

use wasmops_trust::TrustPolicy;

pub use config::{CoordinatorConfig, MqttConfig, Settings};
pub use error::CoordinatorError;
pub use wasmops_protocol::now_ms;

/// Uploads verified at once. Two keep both cores busy (verification is a
/// SHA-256 pass, ~30 ms per 12 MB component here) while bounding memory to
/// twice the artifact limit.
pub const MAX_UPLOADS_IN_MEMORY: usize = 2;

/// Everything request handlers share.
pub struct Coordinator {
    pub db: db::Db,
    pub artifacts: artifacts::Artifacts,
    /// Who may sign what the registry takes and devices get; its metadata
    /// is replaced by `PUT /v1/trust` ([`trust`]).
    pub trust: Arc<TrustPolicy>,
    pub data_dir: std::path::PathBuf,
    pub max_artifact_bytes: usize,
    /// Uploads held in memory at once (each up to `max_artifact_bytes`): the
    /// rest wait, so a burst of uploads cannot exhaust memory.
    pub uploads: tokio::sync::Semaphore,
    /// Refused uploads whose body is being read and thrown away.
    pub discards: Arc<tokio::sync::Semaphore>,
    /// The MQTT client, once the subscriber has started.
    pub bus: std::sync::OnceLock<rumqttc::AsyncClient>,
    pub webhooks: Vec<String>,
    pub http: reqwest::Client,
    /// Held by the rollout controller and by rollout actions: one writer at a time.
    pub rollout_lock: tokio::sync::Mutex<()>,
    /// Device ids with a live credential.
    pub known: enrolment::KnownDevices,
    /// The coordinator's own password on the embedded broker (fresh each start).
    pub mqtt_secret: String,
    /// Signs what only the coordinator may tell a device (desired states,
    /// telemetry acks); devices learn its public half at enrolment. Kept in
    /// `data_dir/control.key` (0600).
    pub control: wasmops_sign::SecretKey,
    /// An external Mosquitto whose clients this coordinator manages
    /// ([`mosquitto`]): devices are added at enrolment, removed at reset.
    pub mosquitto: bool,
    /// The API's and the embedded broker's TLS ([`tls`]); `None` in clear.
    pub tls: Option<tls::ServerTls>,
    /// Rollout gates' telemetry sums, read incrementally.
    pub tallies: telemetry::Tallies,
    /// Injected faults (end-to-end tests only; none by default).
    pub faults: faults::Faults,
    /// Monitoring buckets and window.
    pub monitor: monitor::MonitorConfig,
    /// What the monitoring watcher announced last.
    pub monitor_announced: monitor::watch::Announced,
    /// Every event, for subscribers inside the coordinator (the loop's triggers).
    pub internal_events: tokio::sync::broadcast::Sender<events::Event>,
    /// True once the coordinator is shutting down: long-lived answers (the
    /// event stream) end, so the graceful shutdown does not wait on them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The pace of each device's telemetry over HTTP (browser pages).
    pub http_reports: http::ReportPace,
}

impl Coordinator {
    /// Opens (and migrates) the database and the artifact store, and makes the
    /// first admin token when there is none (written to `data_dir/admin.token`).
    pub async fn open(config: &CoordinatorConfig) -> anyhow::Result<Arc<Coordinator>> {
        std::fs::create_dir_all(&config.data_dir)?;
        let url = match &config.database {
            Some(u) => u.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                config.data_dir.join("wasmops.db").display()
            ),
        };
        let db = db::Db::connect(&url).await?;
        let artifacts = artifacts::Artifacts::open(
            config.artifacts.as_deref(),
            &config.data_dir.join("artifacts"),
        )?;
        if let Some(token) = auth::bootstrap_admin(&db).await? {
            let path = config.data_dir.join("admin.token");
            wasmops_trust::write_atomic_mode(&path, token.as_bytes(), Some(0o600))?;
            tracing::warn!("created the first admin token in {}", path.display());
        }
        trust::restore(&config.trust, &config.data_dir);
        let mut listens = vec![config.listen];
        if let MqttConfig::Embedded(a) = &config.mqtt {
            listens.push(*a);
        }
        let tls = match &config.tls {
            Some(settings) => Some(tls::prepare(settings, &config.data_dir, &listens)?),
            None => None,
        };
        Ok(Arc::new(Coordinator {
            db,
            artifacts,
            trust: Arc::new(config.trust.clone()),
            data_dir: config.data_dir.clone(),
            max_artifact_bytes: config.max_artifact_bytes,
            uploads: tokio::sync::Semaphore::new(MAX_UPLOADS_IN_MEMORY),
            discards: Arc::new(tokio::sync::Semaphore::new(http::MAX_DISCARDS)),
            bus: Default::default(),
            webhooks: config.webhooks.clone(),
            http: reqwest::Client::new(),
            rollout_lock: Default::default(),
            known: Default::default(),
            mqtt_secret: auth::random_token("mq")?,
            control: control_key(&config.data_dir.join("control.key"))?,
            mosquitto: config.mosquitto_dir.is_some(),
            tls,
            tallies: Default::default(),
            faults: faults::Faults::parse(&config.faults)?,
            monitor: config.monitor,
            monitor_announced: Default::default(),
            internal_events: tokio::sync::broadcast::channel(1024).0,
            stopping: tokio::sync::watch::Sender::new(false),
            http_reports: Default::default(),
        }))
    }
}

/// The control key in `path`, made on first start.
fn control_key(path: &std::path::Path) -> anyhow::Result<wasmops_sign::SecretKey> {
    use anyhow::Context;
    match std::fs::read(path) {
        Ok(bytes) => wasmops_sign::SecretKey::from_bytes(&bytes)
            .with_context(|| format!("{} is not a control key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = wasmops_sign::SecretKey::generate()?;
            wasmops_trust::write_atomic_mode(path, &key.to_bytes(), Some(0o600))?;
            tracing::info!("created the control key in {}", path.display());
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl Coordinator {
    /// The control key's public half as devices are given it (hex of the
    /// `.pub` file's bytes).
    pub fn control_key_hex(&self) -> String {
        hex::encode(self.control.public().to_bytes())
    }

    /// The private CA, which certifies devices' keys at enrolment; `None`
    /// with given certificates or in clear.
    pub fn device_ca(&self) -> Option<&wasmops_tls::Ca> {
        self.tls.as_ref()?.ca.as_ref()
    }

    /// Devices must present their certificate on MQTT (`[tls] client_certs`).
    pub fn client_certs(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.client_certs)
    }
}

/// What [`serve_with`] tells its caller once the API listens.
pub struct Ready {
    pub addr: std::net::SocketAddr,
    /// The API's URL as this host reaches it (`https://127.0.0.1:PORT`).
    pub url: String,
    /// What a client in this process trusts to reach it.
    pub tls: wasmops_tls::ClientTls,
    /// A fresh token with the worker role for a worker in this process (the
    /// previous process's is revoked).
    pub worker_token: String,
}

/// Serves the API until `shutdown` resolves.
pub async fn serve(
    config: CoordinatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(config, shutdown, |_| {}).await
}

/// A free port on the loopback interface (the embedded broker's own, behind
/// the TLS listener).
fn loopback_port() -> anyhow::Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// [`serve`], calling `ready` once the API listens (the CLI starts its
/// in-process training worker there: this crate stays free of the runtime).
pub async fn serve_with(
    config: CoordinatorConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ready: impl FnOnce(Ready) + Send,
) -> anyhow::Result<()> {
    let coordinator = Coordinator::open(&config).await?;
    let tls = coordinator.tls.as_ref();
    let clients = match tls {
        Some(t) => t.clients.clone(),
        None => wasmops_tls::ClientTls::new(None)?,
    };
    let (public_mqtt, subscribe_to, login) = match &config.mqtt {
        MqttConfig::Embedded(listen) => {
            // Behind TLS the broker itself listens on loopback only; the
            // TLS listener in front relays devices to it.
            let broker = match &tls {
                Some(t) => {
                    let front = wasmops_tls::Listener::bind(*listen, t.mqtt.clone()).await?;
                    let inner = loopback_port()?;
                    mqtt::start_embedded_broker(coordinator.clone(), inner).await?;
                    tokio::spawn(tls::relay_mqtt(front, inner, t.client_certs));
                    inner
                }
                None => {
                    mqtt::start_embedded_broker(coordinator.clone(), *listen).await?;
                    *listen
                }
            };
            let scheme = if tls.is_some() { "mqtts" } else { "mqtt" };
            (
                format!("{scheme}://{listen}"),
                format!("mqtt://{broker}"),
                Some((
                    mqtt::COORDINATOR_USER.to_string(),
                    coordinator.mqtt_secret.clone(),
                )),
            )
        }
        MqttConfig::External(url) => {
            wasmops_protocol::parse_mqtt_url(url)?;
            anyhow::ensure!(
                wasmops_protocol::mqtt_url_is_tls(url) || config.tls.is_none(),
                "the broker {url} is plain MQTT: use mqtts://, or --insecure-plain to run everything in clear"
            );
            let login = match &config.mosquitto_dir {
                Some(dir) => {
                    let file = dir.join(mosquitto::PASSWORD_FILE);
                    let password = std::fs::read_to_string(&file).map_err(|e| {
                        anyhow::anyhow!(
                            "cannot read {} (written by `wasmops mosquitto-config`): {e}",
                            file.display()
                        )
                    })?;
                    Some((
                        mqtt::COORDINATOR_USER.to_string(),
                        password.trim().to_string(),
                    ))
                }
                None => None,
            };
            (url.clone(), url.clone(), login)
        }
    };
    tokio::spawn(mqtt::run_subscriber(
        coordinator.clone(),
        subscribe_to,
        clients.clone(),
        login,
    ));
    tokio::spawn(rollouts::run_controller(coordinator.clone()));
    tokio::spawn(groups::run_reconciler(coordinator.clone()));
    tokio::spawn(monitor::watch::run(coordinator.clone()));
    tokio::spawn(runs::run_janitor(coordinator.clone()));
    tokio::spawn(loops::run(coordinator.clone()));
    tokio::spawn(telemetry::run_pruner(
        coordinator.clone(),
        config.telemetry_retention,
    ));
    let worker_token = auth::in_process_worker_token(&coordinator.db).await?;
    let lost = runs::recover(&coordinator, runs::IN_PROCESS_WORKER).await?;
    if lost > 0 {
        tracing::warn!("{lost} run(s) of the previous in-process worker ended by this restart");
    }
    let stopping = coordinator.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.stopping.send_replace(true);
    };
    let router = http::router(coordinator.clone());
    let serve_on = |addr: std::net::SocketAddr, scheme: &str| {
        let mut local = addr;
        if local.ip().is_unspecified() {
            local.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let ca = match tls.as_ref().and_then(|t| t.ca_path.as_ref()) {
            Some(p) => format!("; CA: {}", p.display()),
            None => String::new(),
        };
        // Tests and scripts wait for this line to learn the port.
        println!("wasmops coordinator listening on {scheme}://{addr} (MQTT: {public_mqtt}{ca})");
        ready(Ready {
            addr,
            url: format!("{scheme}://{local}"),
            tls: clients,
            worker_token,
        });
    };
    match &tls {
        Some(t) => {
            let listener = wasmops_tls::Listener::bind(config.listen, t.server.clone()).await?;
            serve_on(listener.local_addr(), "https");
            axum::serve(tls::HttpsListener(listener), router)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        None => {
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            serve_on(listener.local_addr()?, "http");
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
    }
    Ok(())
}
