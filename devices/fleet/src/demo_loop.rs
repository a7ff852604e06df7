//! The closed loop, shown to a new user (`wasmops demo --scenario drift`):
//! a coordinator on embedded defaults with its training worker, a model
//! trained by the built-in trainer from a pushed dataset, a simulated fleet
//! serving it and posting outcomes; then the rule behind the label changes
//! (concept drift), monitoring raises `PerformanceDegraded`, the loop
//! retrains on fresh labelled production rows, the gate passes the candidate
//! against the champion, a canary rolls it out and `production` moves.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use wasmops_agent::TrustConfig;
use wasmops_api::{
    Client, DeployRequest, EnrolmentRequest, FromProductionSettings, Gate, LoopSettings, Release,
    RunKind, RunRequest, RunStatus, Trainer, Triggers,
};

use crate::demo::{InProcess, Progress};
use crate::scenario::{Kind, Scenario};
use crate::simulator::{Fleet, FleetConfig};

pub struct LoopScenario {
    pub dir: std::path::PathBuf,
    pub devices: usize,
    /// The key devices and the coordinator trust (the worker signs with its pair).
    pub trust_key: std::path::PathBuf,
    /// Monitoring windows (`None`: the coordinator's defaults, 60 s / 300 s).
    pub monitor: Option<wasmops_coordinator::monitor::MonitorConfig>,
    /// Predictions per second per device (4 rows each).
    pub rate: f64,
    /// How long the loop collects fresh production rows after its trigger
    /// (`15s`), and the canary waves.
    pub fresh: String,
    pub waves: Vec<u32>,
    pub bake_s: u64,
    /// Steady traffic before the change.
    pub steady: Duration,
}

impl LoopScenario {
    /// The demo's settings: short windows and waves, a few devices.
    pub fn demo(dir: std::path::PathBuf, devices: usize, trust_key: std::path::PathBuf) -> Self {
        LoopScenario {
            dir,
            devices,
            trust_key,
            monitor: Some(crate::demo::DEMO_MONITOR),
            rate: 4.0,
            fresh: "15s".into(),
            waves: vec![25, 100],
            bake_s: 3,
            steady: Duration::from_secs(15),
        }
    }
}

/// How long each part of the loop took.
pub struct LoopOutcome {
    /// Concept change → `PerformanceDegraded` (detection).
    pub detected: Duration,
    /// Fresh production rows collected after it (`fresh`).
    pub collected: Duration,
    /// Run start → candidate registered (train, build, gate, sign).
    pub trained: Duration,
    /// Registered → `production` moved (canary).
    pub promoted: Duration,
    /// The run's own seconds per stage (data, train, build, validate,
    /// sign_register), from its metrics.
    pub stages: serde_json::Value,
    pub total: Duration,
    pub version: String,
}

pub const MODEL: &str = "sensor";
const FEATURES: [&str; 3] = ["temperature", "vibration", "load"];
const ROWS: usize = 600;

/// Deterministic sensor rows (no randomness, no download) and the label a
/// failure follows: vibration plus four times the load above 7.
pub fn sensor_rows() -> (Vec<Vec<f64>>, Vec<String>) {
    let frac = |i: usize, k: f64| ((i as f64 + 1.0) * k) % 1.0;
    (0..ROWS)
        .map(|i| {
            let temperature = (20.0 + 60.0 * frac(i, 0.618_033_988_7) * 10.0).round() / 10.0;
            let vibration = (100.0 * frac(i, 0.754_877_666_2)).round() / 10.0;
            let load = (100.0 * frac(i, 0.569_840_290_9)).round() / 100.0;
            let failure = u8::from(vibration + 4.0 * load > 7.0);
            (vec![temperature, vibration, load], failure.to_string())
        })
        .unzip()
}

fn csv(rows: &[Vec<f64>], labels: &[String]) -> String {
    let mut out = format!("{},failure\n", FEATURES.join(","));
    for (r, l) in rows.iter().zip(labels) {
        let cells: Vec<String> = r.iter().map(|x| x.to_string()).collect();
        out.push_str(&format!("{},{l}\n", cells.join(",")));
    }
    out
}

fn wait_run(client: &Client, id: &str, limit: Duration) -> Result<wasmops_api::Run> {
    let started = Instant::now();
    loop {
        let run = client.run(id)?;
        if run.status.is_final() {
            return Ok(run);
        }
        if started.elapsed() > limit {
            bail!("run {id} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

pub fn run(
    s: &LoopScenario,
    progress: &dyn Progress,
    start_worker: impl FnOnce(wasmops_coordinator::Ready) + Send + 'static,
) -> Result<LoopOutcome> {
    let rt = tokio::runtime::Runtime::new()?;
    let trust =
        wasmops_trust::TrustPolicy::keys(vec![wasmops_trust::ops::read_public(&s.trust_key)?]);
    let coordinator = InProcess::start_with(
        &rt,
        &s.dir.join("coordinator"),
        trust,
        None,
        s.monitor,
        start_worker,
    )?;
    let client = coordinator.admin()?;
    eprintln!(
        "coordinator API on {} with its training worker; admin token in {}",
        coordinator.api,
        coordinator.token_file.display()
    );

    // The first model, trained here.
    let (rows, labels) = sensor_rows();
    let pushed = client.push_dataset(
        "sensors",
        &wasmops_api::DatasetPush {
            label: "failure".into(),
            format: Some(wasmops_api::DatasetFormat::Csv),
            file: Some("sensors.csv".into()),
        },
        csv(&rows, &labels).into_bytes(),
    )?;
    eprintln!(
        "wasmops dataset push sensors.csv --name sensors --label failure → sensors@{} ({} rows)",
        pushed.version, pushed.rows
    );
    let first = client.create_run(&RunRequest {
        model: MODEL.into(),
        kind: RunKind::Train,
        trainer: Trainer::Builtin {
            algorithm: "logistic".into(),
            params: serde_json::Value::Null,
        },
        dataset: "sensors".into(),
        holdout: None,
        holdout_share: None,
        trigger: Some("demo".into()),
        time_limit_s: None,
        gate: Gate::default(),
    })?;
    let first = wait_run(&client, &first.id, Duration::from_secs(300))?;
    if first.status != RunStatus::Succeeded {
        bail!(
            "the first training run failed: {}",
            first.error.unwrap_or_default()
        );
    }
    let v1 = first
        .candidate
        .clone()
        .context("the first run registered nothing")?;
    client.set_alias(MODEL, "production", &v1)?;
    eprintln!(
        "wasmops retrain sensor --dataset sensors → {MODEL} {v1} (built-in logistic regression; holdout accuracy {:.3}), alias production",
        first.metrics["candidate"]["accuracy"]
            .as_f64()
            .unwrap_or(f64::NAN)
    );

    let fleet_selector: std::collections::BTreeMap<String, String> =
        [("fleet".to_string(), "demo".to_string())].into();
    let settings = LoopSettings {
        trainer: "builtin:logistic".into(),
        params: serde_json::Value::Null,
        dataset: None,
        from_production: Some(FromProductionSettings {
            since: "10m".into(),
            min_rows: 200,
            fresh: Some(s.fresh.clone()),
        }),
        holdout: None,
        holdout_share: None,
        time_limit: None,
        triggers: Triggers {
            on: vec!["PerformanceDegraded".into()],
            new_labels: None,
            schedule: None,
            cooldown: Some("10m".into()),
        },
        gate: Gate::default(),
        release: Release {
            approval: "auto".into(),
            alias: "production".into(),
            rollout: Some(serde_json::json!({
                "selector": fleet_selector,
                "waves": s.waves,
                "gates": {"bake_s": s.bake_s, "min_predictions": 5},
            })),
        },
    };
    client.set_loop(MODEL, &settings)?;
    eprintln!(
        "wasmops loop set sensor loop.toml: on PerformanceDegraded collect {} of fresh labelled production rows and retrain on them; gate: match or beat the champion; release: auto, canary {:?} %",
        s.fresh, s.waves
    );

    // The fleet, serving v1 and posting outcomes a second later.
    let enrolment = client.create_enrolment(&EnrolmentRequest::new("sim-*"))?;
    let probe = serde_json::json!({"inputs": [
        {"name": "X", "shape": [1, 3], "data": rows[0]},
    ]});
    let fleet = rt.block_on(Fleet::start(FleetConfig {
        devices: s.devices,
        id_prefix: "sim-".into(),
        labels: fleet_selector.clone(),
        spread: Some(("site".into(), vec!["eu".into(), "us".into()])),
        coordinator: coordinator.api.clone(),
        enrolment_token: enrolment.token,
        mqtt: coordinator.mqtt.clone(),
        ca_cert: coordinator.ca_cert.clone(),
        state_dir: s.dir.join("fleet"),
        trust: TrustConfig {
            root: None,
            trust_dir: None,
            keys: vec![s.trust_key.clone()],
        },
        telemetry_interval_ms: 1000,
        rate: s.rate,
        sample: Some(probe.to_string()),
        scenario: Some(Scenario {
            kind: Kind::ConceptDrift,
            input: "X".into(),
            rows: rows.clone(),
            text: vec![],
            outcomes: labels.clone(),
            features: vec![],
            change_after: Duration::from_secs(365 * 86_400),
            rows_per_request: 4,
            label_delay: Duration::from_secs(1),
        }),
        api_token: Some(coordinator.admin_token()?),
        sample_rows: [(MODEL.to_string(), 20)].into(),
    }))?;
    let started = Instant::now();
    while client
        .devices()?
        .iter()
        .filter(|d| d.state == "online")
        .count()
        < s.devices
    {
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the simulated devices did not all come online");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let dep = client.deploy(&DeployRequest {
        model: MODEL.into(),
        version: v1.clone(),
        devices: vec![],
        selector: fleet_selector,
        probe: Some(probe),
    })?;
    progress.deployment(&client, &dep)?;
    eprintln!(
        "{} simulated devices serve {MODEL} {v1}, sample 20 rows a second each, and their applications post outcomes 1 s later",
        s.devices
    );
    std::thread::sleep(s.steady);
    let before = client.monitor(
        MODEL,
        Some(&v1),
        wasmops_protocol::now_ms() - s.steady.as_millis() as i64,
        None,
    )?;
    eprintln!(
        "realised accuracy before the change: {:.3} ({} labelled predictions)",
        before.performance.accuracy.unwrap_or(f64::NAN),
        before.performance.labelled
    );

    // The concept drift, and the loop closing.
    fleet.change_now();
    let changed = Instant::now();
    eprintln!(
        "concept drift: from now on a failure follows the opposite rule; waiting for the loop…"
    );
    let limit = Duration::from_secs(900);
    let mut detected = None;
    let run = loop {
        if detected.is_none()
            && client.loop_settings(MODEL)?.last_trigger.as_deref() == Some("PerformanceDegraded")
        {
            let took = changed.elapsed();
            eprintln!(
                "{:6.1} s  PerformanceDegraded: collecting {} of fresh production rows",
                took.as_secs_f64(),
                s.fresh
            );
            detected = Some(took);
        }
        let runs = client.runs(Some(MODEL), None, None)?;
        if let Some(r) = runs.into_iter().find(|r| {
            r.model.as_deref() == Some(MODEL) && r.trigger.as_deref() == Some("PerformanceDegraded")
        }) {
            break r;
        }
        if changed.elapsed() > limit {
            bail!("no retraining run within {limit:?} of the change");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let queued = changed.elapsed();
    let detected = detected.unwrap_or(queued);
    eprintln!(
        "{:6.1} s  run {} queued on them",
        queued.as_secs_f64(),
        run.id
    );
    let run = wait_run(&client, &run.id, limit)?;
    let collected = queued - detected;
    let trained = changed.elapsed() - queued;
    if run.status != RunStatus::Succeeded {
        bail!(
            "the retraining run {}: {}",
            run.status.as_str(),
            run.error.unwrap_or_default()
        );
    }
    let version = run
        .candidate
        .clone()
        .context("the run registered nothing")?;
    eprintln!(
        "{:6.1} s  run {}: trained, built, validated (accuracy {:.3} against the champion's {:.3} on the same rows), signed, registered {MODEL} {version}",
        changed.elapsed().as_secs_f64(),
        run.id,
        run.metrics["candidate"]["accuracy"]
            .as_f64()
            .unwrap_or(f64::NAN),
        run.metrics["champion"]["accuracy"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    let mut said = String::new();
    loop {
        let view = client.loop_settings(MODEL)?;
        if let Some(p) = view.promotions.iter().find(|p| p.run == run.id) {
            if p.state != said {
                eprintln!(
                    "{:6.1} s  {MODEL} {version}: {}",
                    changed.elapsed().as_secs_f64(),
                    p.state.replace('_', " ")
                );
                said = p.state.clone();
            }
            match p.state.as_str() {
                "promoted" => break,
                "failed" => bail!(
                    "the promotion failed: {}",
                    p.reason.clone().unwrap_or_default()
                ),
                _ => {}
            }
        }
        if changed.elapsed() > limit {
            bail!("{version} was not promoted within {limit:?} of the change");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let total = changed.elapsed();
    let promoted = total - queued - trained;
    std::thread::sleep(Duration::from_secs(5));
    let after = client.monitor(
        MODEL,
        Some(&version),
        wasmops_protocol::now_ms() - 5_000,
        None,
    )?;
    eprintln!(
        "production → {version}; the fleet's realised accuracy over the last 5 s: {:.3} ({} labelled)",
        after.performance.accuracy.unwrap_or(f64::NAN),
        after.performance.labelled
    );
    eprintln!(
        "loop closed in {:.1} s: detection {:.1} s, fresh rows {:.1} s, training + validation + release {:.1} s, canary and promotion {:.1} s",
        total.as_secs_f64(),
        detected.as_secs_f64(),
        collected.as_secs_f64(),
        trained.as_secs_f64(),
        promoted.as_secs_f64()
    );
    rt.block_on(fleet.stop());
    coordinator.stop(&rt);
    Ok(LoopOutcome {
        detected,
        collected,
        trained,
        promoted,
        total,
        version,
        stages: run.metrics["stages_s"].clone(),
    })
}
