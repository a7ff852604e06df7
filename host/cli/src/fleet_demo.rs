//! The fleet scenario behind `wasmops demo` and `wasmops fleet bench-rollout`:
//! a coordinator on embedded defaults (SQLite, local artifacts, rumqttd — or an
//! external broker), a simulated fleet sending traffic, two signed versions of
//! a model, a first deployment and then a canary rollout followed live.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmops_cli::coordinator_client::Connection;
use wasmops_devices::agent::TrustConfig;
use wasmops_devices::fleet::{Fleet, FleetConfig};

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
}

pub struct Outcome {
    pub rollout_time: Duration,
    pub fleet_start_time: Duration,
    pub first_deploy_time: Duration,
}

fn free_addr() -> Result<std::net::SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Runs the scenario; with `keep_serving`, waits for Ctrl-C before stopping.
pub fn run(s: &Scenario, keep_serving: bool, quiet: bool) -> Result<Outcome> {
    let rt = tokio::runtime::Runtime::new()?;
    let say = |m: String| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let trust = wasmops_trust::TrustPolicy::keys(vec![crate::read_public(&s.trust_key)?]);
    let coordinator = InProcess::start(&rt, &s.dir.join("coordinator"), trust, s.mqtt.as_deref())?;
    let (api, mqtt_url, token_file) = (coordinator.api.clone(), coordinator.mqtt.clone(), coordinator.token_file.clone());
    say(format!("coordinator API on {api} (MQTT {mqtt_url}); admin token in {}", token_file.display()));
    let conn = Connection { coordinator: api.clone(), token: None, token_file: Some(token_file.clone()) };
    for wasm in [&s.v1, &s.v2] {
        let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
        conn.send(conn.request(reqwest::Method::POST, "/v1/models")?.body(bytes))?;
    }
    let v1 = wasmops_trust::Claims::read(&std::fs::read(&s.v1)?)?.context("v1 has no claims")?;
    let v2 = wasmops_trust::Claims::read(&std::fs::read(&s.v2)?)?.context("v2 has no claims")?;
    say(format!("registered {} {} and {}", v1.name, v1.version, v2.version));
    let enrolment: serde_json::Value = conn.send(conn.request(reqwest::Method::POST, "/v1/enrolments")?.json(&serde_json::json!({"devices": "sim-*"})))?.json()?;

    let fleet_started = Instant::now();
    let fleet_config = FleetConfig {
        devices: s.devices,
        id_prefix: "sim-".into(),
        labels: [("fleet".to_string(), "demo".to_string())].into(),
        spread: Some(("site".into(), vec!["eu".into(), "us".into()])),
        coordinator: api.clone(),
        enrolment_token: enrolment["token"].as_str().unwrap_or_default().to_string(),
        mqtt: mqtt_url,
        state_dir: s.dir.join("fleet"),
        trust: TrustConfig { root: None, trust_dir: None, keys: vec![s.trust_key.clone()] },
        telemetry_interval_ms: s.telemetry_interval_ms,
        rate: s.rate,
        sample: Some(s.sample.clone()),
    };
    let fleet = rt.block_on(Fleet::start(fleet_config))?;
    wait_for(Duration::from_secs(120), || {
        let d = conn.get("/v1/devices")?;
        Ok(d.as_array().map(|l| l.iter().filter(|x| x["state"] == "online").count()).unwrap_or(0) >= s.devices)
    })
    .context("the simulated devices did not all come online")?;
    let fleet_start_time = fleet_started.elapsed();
    say(format!("{} simulated devices enrolled (each its own credential) and online in {:.1} s (each its own MQTT connection), sending {} predictions/s each", s.devices, fleet_start_time.as_secs_f64(), s.rate));

    let first = Instant::now();
    say(format!("deploying {} {} to fleet=demo", v1.name, v1.version));
    // The devices' health probe: the application's own request.
    let probe = s.dir.join("probe.json");
    std::fs::write(&probe, &s.sample)?;
    wasmops_cli::coordinator_client::deploy_and_wait(&conn, &v1.name, &v1.version, &[], &["fleet=demo".into()], Some(&probe), Some(600))?;
    let first_deploy_time = first.elapsed();

    say(format!("canary rollout of {} {}: waves 10%, 50%, 100%; gates: failure rate ≤ 1%, p95 latency ≤ 250 ms", v2.name, v2.version));
    let rollout_started = Instant::now();
    let body = serde_json::json!({
        "model": v2.name, "version": v2.version, "selector": {"fleet": "demo"}, "strategy": "canary", "waves": [10, 50, 100],
        "gates": {"max_failure_rate": 0.01, "max_latency_ms": 250.0, "min_predictions": 5, "bake_s": s.bake_s, "timeout_s": 600},
        "probe": serde_json::from_str::<serde_json::Value>(&s.sample)?,
    });
    let r: serde_json::Value = conn.send(conn.request(reqwest::Method::POST, "/v1/rollouts")?.json(&body))?.json()?;
    let id = r["id"].as_str().unwrap_or_default().to_string();
    let followed = wasmops_cli::rollout::follow(&conn, &id, 900);
    let rollout_time = rollout_started.elapsed();
    followed?;
    let view = rt.block_on(async { fleet.view() });
    say(format!("rollout {id} done in {:.1} s; fleet now runs {:?}; {} predictions served, {} failed", rollout_time.as_secs_f64(), view.versions, view.ok, view.failed));
    if keep_serving {
        eprintln!("\nThe coordinator keeps running with the simulated fleet. Try:");
        eprintln!("  export WASMOPS_COORDINATOR={api} WASMOPS_TOKEN=$(cat {})", token_file.display());
        eprintln!("  wasmops devices; wasmops rollout list; wasmops rollout status {id}; curl -H \"Authorization: Bearer $WASMOPS_TOKEN\" $WASMOPS_COORDINATOR/v1/telemetry");
        eprintln!("Press Ctrl-C to stop.");
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    rt.block_on(fleet.stop());
    coordinator.stop(&rt);
    Ok(Outcome { rollout_time, fleet_start_time, first_deploy_time })
}

/// A coordinator served on this process's runtime on a free port, with
/// zero-setup defaults in `data_dir` and the embedded broker unless `mqtt` names one.
pub struct InProcess {
    pub api: String,
    pub mqtt: String,
    pub token_file: PathBuf,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<()>>,
}

impl InProcess {
    /// Returns once the API answers.
    pub fn start(rt: &tokio::runtime::Runtime, data_dir: &Path, trust: wasmops_trust::TrustPolicy, mqtt: Option<&str>) -> Result<InProcess> {
        let listen = free_addr()?;
        let (mqtt_config, mqtt) = match mqtt {
            Some(url) => (wasmops_cloud::MqttConfig::External(url.to_string()), url.to_string()),
            None => {
                let a = free_addr()?;
                (wasmops_cloud::MqttConfig::Embedded(a), format!("mqtt://{a}"))
            }
        };
        let config = wasmops_cloud::CoordinatorConfig {
            data_dir: data_dir.to_path_buf(),
            database: None,
            artifacts: None,
            listen,
            trust,
            max_artifact_bytes: 256 << 20,
            mqtt: mqtt_config,
            webhooks: vec![],
            telemetry_retention: Duration::from_secs(7 * 86_400),
        };
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = rt.spawn(wasmops_cloud::serve(config, async move {
            let _ = stop_rx.await;
        }));
        let api = format!("http://{listen}");
        let started = Instant::now();
        while reqwest::blocking::get(format!("{api}/healthz")).is_err() {
            if server.is_finished() || started.elapsed() > Duration::from_secs(30) {
                bail!("the coordinator did not start on {api}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(InProcess { api, mqtt, token_file: data_dir.join("admin.token"), stop, server })
    }

    pub fn admin_token(&self) -> Result<String> {
        Ok(std::fs::read_to_string(&self.token_file).with_context(|| format!("cannot read {}", self.token_file.display()))?.trim().to_string())
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

/// Builds and signs `versions` (version, sequence) of the bundled demo model into `dir`.
pub fn build_versions(dir: &Path, key: &Path, versions: &[(&str, u64)]) -> Result<Vec<PathBuf>> {
    let model = dir.join("churn.onnx");
    let pipeline = dir.join("churn.pipeline.toml");
    std::fs::write(&model, crate::DEMO_MODEL)?;
    std::fs::write(&pipeline, crate::DEMO_PIPELINE)?;
    let cache = crate::CacheArgs { cache_dir: None, no_cache: false };
    let mut out = vec![];
    for (version, sequence) in versions {
        let wasm = dir.join(format!("churn-{version}.wasm"));
        let claims = crate::ClaimsArgs { sequence: Some(*sequence), ..Default::default() };
        crate::build(&model, &wasm, Some(&pipeline), Some("churn".into()), version.to_string(), vec![], None, None, &claims, &cache)?;
        crate::sign(&wasm, key, None, None)?;
        out.push(wasm);
    }
    Ok(out)
}
