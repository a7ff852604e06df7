//! The fleet scenario behind `wasmops demo` and `wasmops fleet bench-rollout`:
//! a coordinator on embedded defaults (SQLite, local artifacts, rumqttd — or an
//! external broker), a simulated fleet sending traffic, two signed versions of
//! a model, a first deployment and then a canary rollout followed live; with
//! a traffic scenario, then a drift moment: the devices' inputs shift and
//! the coordinator's monitoring raises `DataDriftDetected`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmops_agent::TrustConfig;
use wasmops_api::{
    Client, DeployRequest, Deployment, EnrolmentRequest, Gates, RolloutRequest, RolloutView,
};

use crate::simulator::{Fleet, FleetConfig};

/// How the scenario shows a deployment's and a rollout's progress (the CLI
/// draws progress bars); each returns the final state or why it failed.
pub trait Progress {
    fn deployment(&self, api: &Client, dep: &Deployment) -> Result<Deployment>;
    fn rollout(&self, api: &Client, id: &str) -> Result<RolloutView>;
}

pub struct Scenario {
    pub dir: PathBuf,
    pub devices: usize,
    /// An external broker; the embedded one otherwise.
    pub mqtt: Option<String>,
    /// Two signed components of the same model: the first deployed, the second rolled out.
    pub v1: PathBuf,
    pub v2: PathBuf,
    pub trust_key: PathBuf,
    pub sample: String,
    pub rate: f64,
    pub telemetry_interval_ms: u64,
    pub bake_s: u64,
    /// Traffic drawn from the training data instead of `sample` (which stays
    /// the health probe); its change is the drift moment after the rollout.
    pub traffic: Option<crate::scenario::Scenario>,
    /// What the traffic's change is, for people.
    pub change: String,
}

pub struct Outcome {
    /// From the inputs' shift to `DataDriftDetected`, when there was a drift moment.
    pub drift_detected: Option<Duration>,
    pub rollout_time: Duration,
    pub fleet_start_time: Duration,
    pub first_deploy_time: Duration,
}

fn free_addr() -> Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Runs the scenario; with `keep_serving`, waits for Ctrl-C before stopping.
pub fn run(
    s: &Scenario,
    keep_serving: bool,
    quiet: bool,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let rt = tokio::runtime::Runtime::new()?;
    let say = |m: String| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let trust =
        wasmops_trust::TrustPolicy::keys(vec![wasmops_trust::ops::read_public(&s.trust_key)?]);
    let coordinator = InProcess::start(&rt, &s.dir.join("coordinator"), trust, s.mqtt.as_deref())?;
    let (api, mqtt_url, token_file) = (
        coordinator.api.clone(),
        coordinator.mqtt.clone(),
        coordinator.token_file.clone(),
    );
    say(format!(
        "coordinator API on {api} (MQTT {mqtt_url}); admin token in {}{}",
        token_file.display(),
        match &coordinator.ca_cert {
            Some(ca) => format!("; TLS CA in {}", ca.display()),
            None => "; in clear".into(),
        }
    ));
    let client = coordinator.admin()?;
    for wasm in [&s.v1, &s.v2] {
        let bytes =
            std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
        client.register(bytes)?;
    }
    let v1 = wasmops_trust::Claims::read(&std::fs::read(&s.v1)?)?.context("v1 has no claims")?;
    let v2 = wasmops_trust::Claims::read(&std::fs::read(&s.v2)?)?.context("v2 has no claims")?;
    say(format!(
        "registered {} {} and {}",
        v1.name, v1.version, v2.version
    ));
    let enrolment = client.create_enrolment(&EnrolmentRequest::new("sim-*"))?;

    let fleet_started = Instant::now();
    let fleet_config = FleetConfig {
        devices: s.devices,
        id_prefix: "sim-".into(),
        labels: [("fleet".to_string(), "demo".to_string())].into(),
        spread: Some(("site".into(), vec!["eu".into(), "us".into()])),
        coordinator: api.clone(),
        enrolment_token: enrolment.token,
        mqtt: mqtt_url,
        ca_cert: coordinator.ca_cert.clone(),
        state_dir: s.dir.join("fleet"),
        trust: TrustConfig {
            root: None,
            trust_dir: None,
            keys: vec![s.trust_key.clone()],
        },
        telemetry_interval_ms: s.telemetry_interval_ms,
        rate: s.rate,
        sample: Some(s.sample.clone()),
        scenario: s.traffic.clone(),
        api_token: None,
        sample_rows: Default::default(),
    };
    let fleet = rt.block_on(Fleet::start(fleet_config))?;
    wait_for(Duration::from_secs(120), || {
        Ok(client
            .devices()?
            .iter()
            .filter(|d| d.state == "online")
            .count()
            >= s.devices)
    })
    .context("the simulated devices did not all come online")?;
    let fleet_start_time = fleet_started.elapsed();
    say(format!(
        "{} simulated devices enrolled (each its own credential) and online in {:.1} s (each its own MQTT connection), sending {} predictions/s each",
        s.devices,
        fleet_start_time.as_secs_f64(),
        s.rate
    ));

    let first = Instant::now();
    say(format!(
        "deploying {} {} to fleet=demo",
        v1.name, v1.version
    ));
    // The devices' health probe: the application's own request.
    let probe: serde_json::Value =
        serde_json::from_str(&s.sample).context("the sample is not JSON")?;
    let fleet_selector: std::collections::BTreeMap<String, String> =
        [("fleet".to_string(), "demo".to_string())].into();
    let dep = client.deploy(&DeployRequest {
        model: v1.name.clone(),
        version: v1.version.clone(),
        devices: vec![],
        selector: fleet_selector.clone(),
        probe: Some(probe.clone()),
    })?;
    progress.deployment(&client, &dep)?;
    let first_deploy_time = first.elapsed();

    say(format!(
        "canary rollout of {} {}: waves 10%, 50%, 100%; gates: failure rate ≤ 1%, p95 latency ≤ 250 ms",
        v2.name, v2.version
    ));
    let rollout_started = Instant::now();
    let mut req = RolloutRequest::new(v2.name.clone(), v2.version.clone());
    req.selector = fleet_selector;
    req.waves = vec![10, 50, 100];
    req.gates = Gates {
        max_failure_rate: 0.01,
        max_latency_ms: Some(250.0),
        min_predictions: 5,
        bake_s: s.bake_s,
        timeout_s: 600,
        ..Gates::default()
    };
    req.probe = Some(probe);
    let id = client.create_rollout(&req)?.id;
    let followed = progress.rollout(&client, &id);
    let rollout_time = rollout_started.elapsed();
    followed?;
    let view = rt.block_on(async { fleet.view() });
    say(format!(
        "rollout {id} done in {:.1} s; fleet now runs {:?}; {} predictions served, {} failed",
        rollout_time.as_secs_f64(),
        view.versions,
        view.ok,
        view.failed
    ));
    let drift_detected = match &s.traffic {
        Some(t) => {
            let _ = t;
            say(format!(
                "drift moment: {}; waiting for the monitoring's DataDriftDetected",
                s.change
            ));
            let (took, event) = drift_moment(&fleet, &client)?;
            say(format!(
                "DataDriftDetected after {:.1} s: {}",
                took.as_secs_f64(),
                event
            ));
            let report = client.monitor(&v2.name, None, 0, None)?;
            for c in &report.data_drift.columns {
                say(format!(
                    "  {:8} {} {:.3} (threshold {}){}",
                    c.name,
                    c.method,
                    c.score.unwrap_or(f64::NAN),
                    c.threshold,
                    if c.drifted { "  DRIFT" } else { "" }
                ));
            }
            Some(took)
        }
        None => None,
    };
    if keep_serving {
        eprintln!("\nThe coordinator keeps running with the simulated fleet. Try:");
        eprintln!(
            "  export WASMOPS_COORDINATOR={api} WASMOPS_TOKEN=$(cat {})",
            token_file.display()
        );
        eprintln!(
            "  wasmops devices; wasmops rollout list; wasmops rollout status {id}; curl -H \"Authorization: Bearer $WASMOPS_TOKEN\" $WASMOPS_COORDINATOR/v1/telemetry"
        );
        eprintln!("Press Ctrl-C to stop.");
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    rt.block_on(fleet.stop());
    coordinator.stop(&rt);
    Ok(Outcome {
        drift_detected,
        rollout_time,
        fleet_start_time,
        first_deploy_time,
    })
}

/// Shifts the fleet's inputs and waits for the coordinator's
/// `DataDriftDetected` on its event stream: how long it took, and the
/// event's columns.
fn drift_moment(fleet: &Fleet, client: &wasmops_api::Client) -> Result<(Duration, String)> {
    let events = client
        .events(&["DataDriftDetected"])
        .context("cannot watch the coordinator's events")?;
    fleet.change_now();
    let shifted = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    // The stream blocks; it ends when the coordinator stops.
    std::thread::spawn(move || {
        for e in events {
            if tx.send(e).is_err() {
                return;
            }
        }
    });
    let deadline = shifted + Duration::from_secs(180);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(e)) => {
                return Ok((
                    shifted.elapsed(),
                    format!("{} drifted in {}", e.subject, e.detail["columns"]),
                ));
            }
            Ok(Err(wasmops_api::ApiError::Missed(_))) => {}
            Ok(Err(e)) => bail!("cannot watch events: {e}"),
            Err(_) => bail!("no DataDriftDetected within 3 minutes of the shift"),
        }
    }
}

/// Demo windows: a trend point every 5 s, the watcher judging 30 s.
pub const DEMO_MONITOR: wasmops_coordinator::monitor::MonitorConfig =
    wasmops_coordinator::monitor::MonitorConfig {
        bucket: Duration::from_secs(5),
        window: Duration::from_secs(30),
    };

/// A coordinator served on this process's runtime on a free port, with
/// zero-setup defaults in `data_dir` and the embedded broker unless `mqtt` names one.
pub struct InProcess {
    pub api: String,
    pub mqtt: String,
    pub token_file: PathBuf,
    /// The CA its devices and clients trust (`data_dir/tls/ca.pem`); `None`
    /// on a plain external broker, where everything runs in clear.
    pub ca_cert: Option<PathBuf>,
    pub tls: wasmops_tls::ClientTls,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<()>>,
}

impl InProcess {
    /// Returns once the API answers.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        data_dir: &Path,
        trust: wasmops_trust::TrustPolicy,
        mqtt: Option<&str>,
    ) -> Result<InProcess> {
        InProcess::start_with(rt, data_dir, trust, mqtt, Some(DEMO_MONITOR), |_| {})
    }

    /// [`InProcess::start`] with `monitor` windows (`None`: the coordinator's
    /// defaults), calling `ready` once the API listens (to start a training
    /// worker).
    pub fn start_with(
        rt: &tokio::runtime::Runtime,
        data_dir: &Path,
        trust: wasmops_trust::TrustPolicy,
        mqtt: Option<&str>,
        monitor: Option<wasmops_coordinator::monitor::MonitorConfig>,
        ready: impl FnOnce(wasmops_coordinator::Ready) + Send + 'static,
    ) -> Result<InProcess> {
        let listen = free_addr()?;
        // TLS with the coordinator's private CA, but for a plain external
        // broker (a local Mosquitto): then everything is in clear.
        let plain = mqtt.is_some_and(|url| !wasmops_protocol::mqtt_url_is_tls(url));
        let (mqtt_config, mqtt) = match mqtt {
            Some(url) => (
                wasmops_coordinator::MqttConfig::External(url.to_string()),
                url.to_string(),
            ),
            None => {
                let a = free_addr()?;
                (
                    wasmops_coordinator::MqttConfig::Embedded(a),
                    format!("mqtts://{a}"),
                )
            }
        };
        let mut config = wasmops_coordinator::CoordinatorConfig::new(data_dir.to_path_buf(), trust);
        config.listen = listen;
        if plain {
            config.tls = None;
        }
        let ca_cert = (!plain).then(|| {
            data_dir
                .join(wasmops_coordinator::tls::TLS_DIR)
                .join(wasmops_tls::CA_CERT)
        });
        if let Some(m) = monitor {
            config.monitor = m;
        }
        config.mqtt = mqtt_config;
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(wasmops_coordinator::serve_with(
            config,
            async move {
                let _ = stop_rx.await;
            },
            ready,
        ));
        let api = format!("{}://{listen}", if plain { "http" } else { "https" });
        let started = Instant::now();
        // The CA appears once the coordinator made it.
        let (tls, http) = loop {
            if server.is_finished() || started.elapsed() > Duration::from_secs(30) {
                bail!("the coordinator did not start on {api}");
            }
            if ca_cert.as_ref().is_none_or(|p| p.exists()) {
                let tls = wasmops_tls::ClientTls::from_file(ca_cert.as_deref())?;
                let http = tls.http_blocking().build()?;
                if http.get(format!("{api}/healthz")).send().is_ok() {
                    break (tls, http);
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(http);
        Ok(InProcess {
            api,
            mqtt,
            token_file: data_dir.join("admin.token"),
            ca_cert,
            tls,
            stop,
            server,
        })
    }

    /// An API client with the first admin token.
    pub fn admin(&self) -> Result<Client> {
        Ok(Client::with_tls(
            &self.api,
            &self.admin_token()?,
            self.tls.clone(),
        )?)
    }

    pub fn admin_token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.token_file)
            .with_context(|| format!("cannot read {}", self.token_file.display()))?
            .trim()
            .to_string())
    }

    pub fn stop(self, rt: &tokio::runtime::Runtime) {
        let _ = self.stop.send(());
        let _ = rt.block_on(self.server);
    }
}

fn wait_for(limit: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    loop {
        if ready()? {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
