//! The fleet simulator: N real agents in one process, each with its own MQTT
//! connection, state directory, rollback floor and telemetry outbox, sharing
//! one model store (one download and one compile per version). Each device
//! sends its application's traffic — the same sample at a set rate — through
//! the agent's normal prediction path, so telemetry and shadow runs are real.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use serde::Serialize;

use wasmops_agent::store::ModelStore;
use wasmops_agent::{self as agent, Agent, AgentConfig, Running, TrustConfig};

#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub devices: usize,
    /// Device ids are `{prefix}{index:04}`.
    pub id_prefix: String,
    /// Labels every device gets; `spread` adds `key=value` round-robin (e.g. site=eu,us).
    pub labels: BTreeMap<String, String>,
    pub spread: Option<(String, Vec<String>)>,
    pub coordinator: String,
    /// Enrolment token for the fleet's ids (e.g. for `sim-*`): each device enrols once.
    pub enrolment_token: String,
    pub mqtt: String,
    /// The coordinator's CA certificate (agent.toml `ca_cert`).
    pub ca_cert: Option<PathBuf>,
    pub state_dir: PathBuf,
    pub trust: TrustConfig,
    pub telemetry_interval_ms: u64,
    /// Predictions per second per device.
    pub rate: f64,
    /// The application's request body: `{"inputs":[…]}`.
    pub sample: Option<String>,
    /// Instead of `sample`: rows drawn from a training set, changed as the
    /// scenario says, with outcomes posted later under `api_token`.
    pub scenario: Option<crate::scenario::Scenario>,
    pub api_token: Option<String>,
    /// Raw input rows each device samples per telemetry window, by model
    /// (agent.toml `sample_rows`; production rows for retraining).
    pub sample_rows: BTreeMap<String, usize>,
}

/// A running simulated fleet.
pub struct Fleet {
    config: FleetConfig,
    store: Arc<ModelStore>,
    /// For enrolments.
    http: reqwest::Client,
    running: Mutex<Vec<Running>>,
    /// Predictions per second per device, in millihertz (changeable at run time).
    rate_mhz: Arc<AtomicU64>,
    /// Each running device's application, by device id.
    traffic: Mutex<BTreeMap<String, tokio::task::JoinHandle<()>>>,
    /// What crashed devices had served, and lost.
    crashed: Mutex<Crashed>,
    /// Outcomes to post (scenario traffic): (due, prediction id, outcome).
    outcomes: Option<tokio::sync::mpsc::UnboundedSender<Outcome>>,
    /// Whether the scenario's change has begun (at `change_after`, or when
    /// [`Fleet::change_now`] says).
    changed: Arc<std::sync::atomic::AtomicBool>,
    /// The devices' shared traffic scenario, if any.
    scenario: Option<Arc<crate::scenario::Scenario>>,
}

/// An outcome to post once due.
type Outcome = (std::time::Instant, String, String);

/// Counters of devices that crashed (their agents are gone; these stay).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Crashed {
    pub crashes: u64,
    pub ok: u64,
    pub failed: u64,
    /// Live predictions still in an open telemetry window when their device
    /// crashed: in memory only, so never reported (what a SIGKILL loses).
    pub unreported: u64,
}

#[derive(Debug, Serialize)]
pub struct DeviceView {
    pub id: String,
    pub active: Option<String>,
    pub shadow: Option<String>,
    pub ok: u64,
    pub failed: u64,
    pub pending_reports: usize,
    pub dropped_reports: u64,
}

#[derive(Debug, Serialize)]
pub struct FleetView {
    pub devices: Vec<DeviceView>,
    /// Devices per active version.
    pub versions: BTreeMap<String, usize>,
    pub ok: u64,
    pub failed: u64,
    pub pending_reports: usize,
    pub dropped_reports: u64,
    /// Devices crashed so far and what they had served (counted in `ok`/`failed` too).
    pub crashed: Crashed,
}

/// Devices starting at once.
const STARTING_AT_ONCE: usize = 8;

impl Fleet {
    pub async fn start(c: FleetConfig) -> Result<Fleet> {
        anyhow::ensure!(c.devices > 0, "a fleet needs at least one device");
        let first = agent_config(&c, 0);
        // One set of roots for the whole fleet (reading the system's costs
        // milliseconds: not a thousand times).
        let tls = first.tls()?;
        let http = tls.http().build()?;
        let store = Arc::new(ModelStore::new(
            first.host_config(c.state_dir.join("cache"))?,
            c.state_dir.join("slots"),
            true,
            tls,
        )?);
        let outcomes = match (&c.scenario, &c.api_token) {
            (Some(s), Some(token)) if !s.outcomes.is_empty() => {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(post_outcomes(
                    http.clone(),
                    c.coordinator.clone(),
                    token.clone(),
                    rx,
                ));
                Some(tx)
            }
            _ => None,
        };
        let changed: Arc<std::sync::atomic::AtomicBool> = Default::default();
        if let Some(after) = c.scenario.as_ref().map(|s| s.change_after) {
            let flag = changed.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                flag.store(true, Ordering::Relaxed);
            });
        }
        let fleet = Fleet {
            outcomes,
            changed,
            scenario: c.scenario.clone().map(Arc::new),
            rate_mhz: Arc::new(AtomicU64::new((c.rate * 1000.0) as u64)),
            running: Mutex::new(Vec::with_capacity(c.devices)),
            traffic: Default::default(),
            crashed: Default::default(),
            store,
            http,
            config: c,
        };
        // A few at a time: each enrols (the coordinator's database and two
        // file writes on the device side) before it connects, so one at a
        // time spends the wait serially; a few also spread the broker's load.
        let mut starts = futures::stream::iter(0..fleet.config.devices)
            .map(|i| {
                let fleet = &fleet;
                async move {
                    fleet
                        .start_device(i)
                        .await
                        .with_context(|| format!("device {i}"))
                }
            })
            .buffer_unordered(STARTING_AT_ONCE);
        while let Some(started) = starts.next().await {
            started?;
        }
        drop(starts);
        Ok(fleet)
    }

    /// Starts device `i` from its state directory: enrols the first time,
    /// restores its active model, connects, and starts its traffic.
    async fn start_device(&self, i: usize) -> Result<()> {
        let mut config = agent_config(&self.config, i);
        config.ensure_credential(&self.http).await?;
        let tls = config.identity(self.store.tls())?;
        let agent = Arc::new(Agent::with_store(config, self.store.clone(), tls)?);
        if let Err(e) = agent.restore() {
            tracing::error!("{}: could not restore the active model: {e:#}", agent.id());
        }
        let running = agent::start(agent.clone())?;
        let traffic = match (&self.scenario, &self.config.sample) {
            (Some(s), _) => Some(Traffic::Scenario {
                scenario: s.clone(),
                changed: self.changed.clone(),
                outcomes: self.outcomes.clone(),
            }),
            (None, Some(sample)) => Some(Traffic::Sample(sample.clone())),
            (None, None) => None,
        };
        if let Some(traffic) = traffic {
            let traffic = tokio::spawn(drive(agent.clone(), traffic, self.rate_mhz.clone(), i));
            self.traffic
                .lock()
                .unwrap()
                .insert(agent.id().to_string(), traffic);
        }
        self.running.lock().unwrap().push(running);
        Ok(())
    }

    /// Makes device `id` vanish as a SIGKILL would (no goodbye: the broker
    /// publishes its Last Will; an install or download stops where it is);
    /// false if it is not running.
    pub fn crash(&self, id: &str) -> bool {
        let removed = {
            let mut running = self.running.lock().unwrap();
            let i = running.iter().position(|r| r.agent.id() == id);
            i.map(|i| running.remove(i))
        };
        let Some(r) = removed else {
            return false;
        };
        if let Some(t) = self.traffic.lock().unwrap().remove(id) {
            t.abort();
        }
        let a = r.agent.clone();
        r.crash();
        // Aborted tasks may still be inside a blocking prediction: after the
        // halt nothing more is counted, so what the kill lost is exact.
        a.halt();
        let mut c = self.crashed.lock().unwrap();
        c.crashes += 1;
        c.ok += a.served.ok.load(Ordering::Relaxed);
        c.failed += a.served.failed.load(Ordering::Relaxed);
        c.unreported += a.unreported_predictions();
        true
    }

    /// Starts a crashed device again from its state directory (as a reboot
    /// would); false if `id` is no device of this fleet or is running.
    pub async fn restart(&self, id: &str) -> Result<bool> {
        let Some(i) = (0..self.config.devices).find(|i| device_id(&self.config, *i) == id) else {
            return Ok(false);
        };
        if self
            .running
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.agent.id() == id)
        {
            return Ok(false);
        }
        self.start_device(i).await?;
        Ok(true)
    }

    /// Ids of the devices not running (crashed and not restarted).
    pub fn down(&self) -> Vec<String> {
        let running = self.running.lock().unwrap();
        (0..self.config.devices)
            .map(|i| device_id(&self.config, i))
            .filter(|id| !running.iter().any(|r| r.agent.id() == id))
            .collect()
    }

    /// Begins the scenario's change now (whatever its `change_after`).
    pub fn change_now(&self) {
        self.changed.store(true, Ordering::Relaxed);
    }

    pub fn set_rate(&self, per_device_per_s: f64) {
        self.rate_mhz.store(
            (per_device_per_s.max(0.0) * 1000.0) as u64,
            Ordering::Relaxed,
        );
    }

    /// Closes every device's telemetry window now (the reports go out on the next tick).
    pub fn flush_telemetry(&self) {
        for r in self.running.lock().unwrap().iter() {
            let _ = r.agent.close_window();
        }
    }

    pub fn view(&self) -> FleetView {
        let mut v = FleetView {
            devices: vec![],
            versions: BTreeMap::new(),
            ok: 0,
            failed: 0,
            pending_reports: 0,
            dropped_reports: 0,
            crashed: *self.crashed.lock().unwrap(),
        };
        v.ok = v.crashed.ok;
        v.failed = v.crashed.failed;
        for r in self.running.lock().unwrap().iter() {
            let a = &r.agent;
            let (pending, (dropped, _)) = a.telemetry_backlog();
            let active = a.active().map(|x| format!("{}@{}", x.model, x.version));
            *v.versions
                .entry(active.clone().unwrap_or_else(|| "none".into()))
                .or_default() += 1;
            let d = DeviceView {
                id: a.id().to_string(),
                active,
                shadow: a.shadow().map(|x| format!("{}@{}", x.model, x.version)),
                ok: a.served.ok.load(Ordering::Relaxed),
                failed: a.served.failed.load(Ordering::Relaxed),
                pending_reports: pending,
                dropped_reports: dropped,
            };
            v.ok += d.ok;
            v.failed += d.failed;
            v.pending_reports += pending;
            v.dropped_reports += dropped;
            v.devices.push(d);
        }
        // Devices start (and restart) in any order.
        v.devices.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    pub async fn stop(self) {
        for t in self.traffic.lock().unwrap().values() {
            t.abort();
        }
        let running = std::mem::take(&mut *self.running.lock().unwrap());
        let mut stopping = tokio::task::JoinSet::new();
        for r in running {
            stopping.spawn(r.stop());
        }
        while stopping.join_next().await.is_some() {}
    }
}

fn device_id(c: &FleetConfig, i: usize) -> String {
    format!("{}{i:04}", c.id_prefix)
}

/// Device `i`'s agent settings.
fn agent_config(c: &FleetConfig, i: usize) -> AgentConfig {
    let id = device_id(c, i);
    let mut labels = c.labels.clone();
    if let Some((k, values)) = &c.spread {
        labels.insert(k.clone(), values[i % values.len()].clone());
    }
    AgentConfig {
        labels,
        enrolment_token: Some(c.enrolment_token.clone()),
        ca_cert: c.ca_cert.clone(),
        listen: "127.0.0.1:0".parse().expect("address"),
        telemetry_interval_ms: c.telemetry_interval_ms,
        sample_rows: c.sample_rows.clone(),
        ..AgentConfig::new(
            id.clone(),
            c.coordinator.clone(),
            c.mqtt.clone(),
            c.state_dir.join(&id),
            c.trust.clone(),
        )
    }
}

/// What a device's application sends: the same sample each time, or a
/// scenario's rows (whose answers' prediction ids are queued with their
/// outcomes, to be posted after the scenario's delay).
enum Traffic {
    Sample(String),
    Scenario {
        scenario: Arc<crate::scenario::Scenario>,
        changed: Arc<std::sync::atomic::AtomicBool>,
        outcomes: Option<tokio::sync::mpsc::UnboundedSender<Outcome>>,
    },
}

/// One device's application: its traffic at the fleet's rate, with a per-device phase.
async fn drive(agent: Arc<Agent>, traffic: Traffic, rate_mhz: Arc<AtomicU64>, index: usize) {
    let mut rng = crate::scenario::Rng::new(index as u64 + 1);
    tokio::time::sleep(Duration::from_millis((index as u64 * 37) % 1000)).await;
    loop {
        let mhz = rate_mhz.load(Ordering::Relaxed);
        if mhz == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        if agent.active().is_some() {
            match &traffic {
                Traffic::Sample(sample) => {
                    let _ = agent.serve(sample.clone()).await;
                }
                Traffic::Scenario {
                    scenario,
                    changed,
                    outcomes,
                } => {
                    let (body, expected) =
                        scenario.request(index, changed.load(Ordering::Relaxed), &mut rng);
                    if let Ok(answer) = agent.serve(body).await
                        && let Some(tx) = outcomes
                    {
                        let ids: Vec<String> = serde_json::from_str::<serde_json::Value>(&answer)
                            .ok()
                            .and_then(|v| {
                                serde_json::from_value(v.get("prediction_ids")?.clone()).ok()
                            })
                            .unwrap_or_default();
                        let due = std::time::Instant::now() + scenario.label_delay;
                        for (id, outcome) in ids.into_iter().zip(expected) {
                            let _ = tx.send((due, id, outcome));
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_micros(1_000_000_000 / mhz)).await;
    }
}

/// Posts outcomes once due, in batches (`POST /v1/labels`). A batch the
/// coordinator refuses as unknown ids (the predictions' telemetry has not
/// arrived yet) is tried again a little later, up to five times.
async fn post_outcomes(
    http: reqwest::Client,
    coordinator: String,
    token: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Outcome>,
) {
    let url = format!("{}/v1/labels", coordinator.trim_end_matches('/'));
    let mut waiting: std::collections::VecDeque<(std::time::Instant, String, String, u32)> =
        Default::default();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Some((due, id, outcome)) => waiting.push_back((due, id, outcome, 0)),
                None => return,
            },
            _ = tick.tick() => {
                let now = std::time::Instant::now();
                let mut due = vec![];
                while waiting.front().is_some_and(|w| w.0 <= now) && due.len() < 5000 {
                    due.push(waiting.pop_front().expect("front"));
                }
                if due.is_empty() {
                    continue;
                }
                let labels: Vec<wasmops_api::Label> = due
                    .iter()
                    .map(|(_, id, outcome, _)| wasmops_api::Label {
                        prediction_id: id.clone(),
                        outcome: wasmops_api::Outcome::Class(outcome.clone()),
                    })
                    .collect();
                let sent = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&wasmops_api::LabelsRequest { labels })
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    other => {
                        match other {
                            Ok(r) => tracing::debug!("labels refused: {}", r.status()),
                            Err(e) => tracing::warn!("cannot post labels: {e}"),
                        }
                        let later = now + Duration::from_secs(2);
                        for (_, id, outcome, tries) in due {
                            if tries < 5 {
                                waiting.push_back((later, id, outcome, tries + 1));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The simulator's own HTTP API: `GET /v1/fleet` (each device's active
/// version and counters), `POST /v1/fleet/traffic?rate=R`, `POST /v1/fleet/flush`,
/// `POST /v1/fleet/devices/{id}/crash`, `POST /v1/fleet/devices/{id}/restart`,
/// `POST /v1/fleet/change` (the scenario's change, now).
pub fn api(fleet: Arc<Fleet>) -> axum::Router {
    use axum::extract::{Query, State};
    use axum::routing::{get, post};
    #[derive(serde::Deserialize)]
    struct Rate {
        rate: f64,
    }
    axum::Router::new()
        .route(
            "/v1/fleet",
            get(|State(f): State<Arc<Fleet>>| async move { axum::Json(f.view()) }),
        )
        .route(
            "/v1/fleet/traffic",
            post(
                |State(f): State<Arc<Fleet>>, Query(r): Query<Rate>| async move {
                    f.set_rate(r.rate);
                    "ok"
                },
            ),
        )
        .route(
            "/v1/fleet/devices/{id}/crash",
            post(
                |State(f): State<Arc<Fleet>>,
                 axum::extract::Path(id): axum::extract::Path<String>| async move {
                    if f.crash(&id) {
                        axum::http::StatusCode::OK
                    } else {
                        axum::http::StatusCode::NOT_FOUND
                    }
                },
            ),
        )
        .route(
            "/v1/fleet/devices/{id}/restart",
            post(
                |State(f): State<Arc<Fleet>>,
                 axum::extract::Path(id): axum::extract::Path<String>| async move {
                    match f.restart(&id).await {
                        Ok(true) => axum::http::StatusCode::OK,
                        Ok(false) => axum::http::StatusCode::CONFLICT,
                        Err(e) => {
                            tracing::error!("cannot restart {id}: {e:#}");
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR
                        }
                    }
                },
            ),
        )
        .route(
            "/v1/fleet/change",
            post(|State(f): State<Arc<Fleet>>| async move {
                f.change_now();
                "ok"
            }),
        )
        .route(
            "/v1/fleet/flush",
            post(|State(f): State<Arc<Fleet>>| async move {
                f.flush_telemetry();
                "ok"
            }),
        )
        .with_state(fleet)
}

/// Runs a fleet until `shutdown`, serving [`api`] on `listen`.
pub async fn run(
    c: FleetConfig,
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let n = c.devices;
    let fleet = Arc::new(Fleet::start(c).await?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    // Tests and scripts wait for this line.
    println!(
        "wasmops fleet: {n} simulated devices; status on http://{}/v1/fleet",
        listener.local_addr()?
    );
    axum::serve(listener, api(fleet.clone()))
        .with_graceful_shutdown(shutdown)
        .await?;
    match Arc::try_unwrap(fleet) {
        Ok(f) => f.stop().await,
        Err(_) => tracing::warn!("fleet still referenced at shutdown"),
    }
    Ok(())
}
