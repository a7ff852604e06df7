//! `wasmops fleet …`: simulated fleets and the fleet benchmarks.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::args::{Connection, KeyArgs, parse_pairs};

/// Simulated fleets: `simulate` for tests and demos, benchmarks for load.
#[derive(Parser)]
pub struct FleetCommand {
    #[command(subcommand)]
    pub command: FleetVerb,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once from the command line"
)]
pub enum FleetVerb {
    /// Run N device agents in this process, each with its own MQTT connection.
    Simulate {
        #[arg(long)]
        devices: usize,
        /// Device ids are PREFIX0000, PREFIX0001, …
        #[arg(long, default_value = "sim-")]
        id_prefix: String,
        /// Label every device gets: KEY=VALUE; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A label spread round-robin: KEY=V1,V2,…
        #[arg(long)]
        spread: Option<String>,
        #[arg(long)]
        mqtt: String,
        /// Where each device keeps its state (one directory per device).
        #[arg(long)]
        state_dir: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
        /// Application traffic: predictions per second per device.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// The application's request ({"inputs":[...]}); no traffic without
        /// one (or a --scenario).
        #[arg(long)]
        sample: Option<PathBuf>,
        /// Traffic drawn from --training-data: steady, covariate-shift (two
        /// features move by half a std), stuck-sensor (one feature reads 0 on
        /// every tenth device) or concept-drift (outcomes change class).
        #[arg(long, requires = "training_data")]
        scenario: Option<String>,
        /// The rows scenarios draw from: CSV with a header, features in the
        /// model's order (and --label-column for outcomes).
        #[arg(long)]
        training_data: Option<PathBuf>,
        /// The column holding each row's outcome (posted as a delayed label,
        /// with the --token of a data-scientist or operator).
        #[arg(long)]
        label_column: Option<String>,
        /// Features the scenario moves or sticks (default: the first two, or the first).
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Seconds from the start until the scenario's change (or `POST /v1/fleet/change` on the fleet's API, any time).
        #[arg(long, default_value_t = 60.0)]
        change_after: f64,
        /// Seconds from a prediction until its outcome is posted.
        #[arg(long, default_value_t = 5.0)]
        label_delay: f64,
        /// Rows per prediction request.
        #[arg(long, default_value_t = 4)]
        rows_per_request: usize,
        /// The model's input tensor.
        #[arg(long, default_value = "X")]
        input: String,
        /// MODEL=N: each device samples N raw input rows of MODEL per
        /// telemetry window (production rows for retraining); repeatable.
        #[arg(long = "sample-rows", value_name = "MODEL=N")]
        sample_rows: Vec<String>,
        #[arg(long, default_value_t = 1000)]
        telemetry_interval_ms: u64,
        /// The simulator's status API (GET /v1/fleet).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Enrolment token for the fleet's device ids (`wasmops enrolment --devices 'sim-*'`).
        #[arg(long)]
        enrolment_token: String,
        /// Coordinator URL.
        #[command(flatten)]
        conn: Connection,
    },
    /// Time a canary rollout across N simulated devices (coordinator, broker and fleet in this process).
    BenchRollout {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// An external broker (e.g. mqtt://127.0.0.1:1883); the embedded one otherwise.
        #[arg(long)]
        mqtt: Option<String>,
        #[arg(long, default_value_t = 0.2)]
        rate: f64,
    },
    /// Time the closed loop: the built-in trainer on 100,000 rows × 20
    /// features, then a fleet of N simulated devices (coordinator, worker and
    /// fleet in this process) from a concept change to every device serving
    /// the retrained model, with each stage's share.
    BenchLoop {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 0.2)]
        rate: f64,
        /// The demo's 5 s / 30 s monitoring windows and two short waves
        /// instead of the defaults (60 s / 300 s; waves 10, 50, 100 %, 10 s bake).
        #[arg(long)]
        demo_windows: bool,
        /// Only the trainer timing.
        #[arg(long)]
        trainer_only: bool,
    },
    /// Soak: a fleet (private Mosquitto, the coordinator in its own process)
    /// through a deployment and three canaries (one aborted) while devices,
    /// the broker and the coordinator are killed; prints the figures and
    /// fails if a device ends on another version than its group's, a
    /// prediction goes uncounted, a stray file is left or memory grows.
    Soak {
        #[arg(long, default_value_t = 200)]
        devices: usize,
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// postgres://USER@HOST/DB (default: SQLite in a temporary directory).
        #[arg(long)]
        database: Option<String>,
        /// Predictions per second per device.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// Seeds which devices are killed, and when.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Monitoring: drift judged for N devices × F features × W windows from
    /// the folded buckets against the raw rows, telemetry bytes per device
    /// per minute, and the time to `DataDriftDetected` with the default windows.
    BenchMonitor {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 20)]
        features: usize,
        #[arg(long, default_value_t = 60)]
        windows: usize,
    },
    /// Telemetry ingestion through a broker: messages/s stored by the coordinator, against raw broker throughput.
    BenchTelemetry {
        /// An existing broker; by default a private Mosquitto on a free port.
        #[arg(long)]
        mqtt: Option<String>,
        /// Publishing connections (simulated devices).
        #[arg(long, default_value_t = 50)]
        devices: usize,
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
    },
}

impl FleetCommand {
    pub fn execute(self) -> Result<()> {
        match self.command {
            FleetVerb::Simulate {
                devices,
                id_prefix,
                labels,
                spread,
                mqtt,
                state_dir,
                keys,
                rate,
                sample,
                scenario,
                training_data,
                label_column,
                features,
                change_after,
                label_delay,
                rows_per_request,
                input,
                sample_rows,
                telemetry_interval_ms,
                listen,
                enrolment_token,
                conn,
            } => {
                let scenario = match (scenario, training_data) {
                    (Some(kind), Some(data)) => Some(scenario_of(
                        &kind,
                        &data,
                        label_column.as_deref(),
                        &features,
                        ScenarioTiming {
                            change_after,
                            label_delay,
                            rows_per_request,
                        },
                        input,
                    )?),
                    _ => None,
                };
                let api_token = match &scenario {
                    Some(s) if !s.outcomes.is_empty() => Some(conn.token()?),
                    _ => None,
                };
                let spread = match spread {
                    Some(s) => {
                        let (k, vs) = s
                            .split_once('=')
                            .with_context(|| format!("--spread `{s}`: expected KEY=V1,V2"))?;
                        Some((k.to_string(), vs.split(',').map(str::to_string).collect()))
                    }
                    None => None,
                };
                let sample = sample
                    .map(|p| {
                        std::fs::read_to_string(&p)
                            .with_context(|| format!("cannot read {}", p.display()))
                    })
                    .transpose()?;
                let config = wasmops_fleet::simulator::FleetConfig {
                    devices,
                    id_prefix,
                    labels: parse_pairs("label", &labels)?,
                    spread,
                    coordinator: conn.coordinator.clone(),
                    enrolment_token,
                    mqtt,
                    ca_cert: conn.ca_cert_path(),
                    state_dir,
                    trust: wasmops_agent::TrustConfig {
                        root: keys.root,
                        trust_dir: keys.trust_dir,
                        keys: keys.trust,
                    },
                    telemetry_interval_ms,
                    rate,
                    sample,
                    scenario,
                    api_token,
                    sample_rows: parse_pairs("sample-rows", &sample_rows)?
                        .into_iter()
                        .map(|(m, n)| {
                            n.parse()
                                .map(|n| (m.clone(), n))
                                .map_err(|_| anyhow::anyhow!("--sample-rows {m}={n}: N is a count"))
                        })
                        .collect::<Result<_>>()?,
                };
                let rt = tokio::runtime::Runtime::new()?;
                rt.block_on(wasmops_fleet::simulator::run(config, listen, async {
                    let _ = tokio::signal::ctrl_c().await;
                }))
            }
            FleetVerb::BenchRollout {
                devices,
                mqtt,
                rate,
            } => bench_rollout(devices, mqtt, rate),
            FleetVerb::BenchLoop {
                devices,
                rate,
                demo_windows,
                trainer_only,
            } => bench_loop(devices, rate, demo_windows, trainer_only),
            FleetVerb::Soak {
                devices,
                minutes,
                database,
                rate,
                seed,
            } => soak(devices, minutes, database, rate, seed),
            FleetVerb::BenchMonitor {
                devices,
                features,
                windows,
            } => bench_monitor(devices, features, windows),
            FleetVerb::BenchTelemetry {
                mqtt,
                devices,
                messages,
            } => wasmops_fleet::bench::telemetry(mqtt.as_deref(), devices, messages),
        }
    }
}

fn bench_monitor(devices: usize, features: usize, windows: usize) -> Result<()> {
    anyhow::ensure!(
        devices > 0 && features > 0 && windows > 0,
        "devices, features and windows must be positive"
    );
    let dir = tempfile::tempdir()?;
    let rt = tokio::runtime::Runtime::new()?;
    let f = rt.block_on(wasmops_coordinator::monitor::bench::run(
        dir.path(),
        devices,
        features,
        windows,
    ))?;
    println!(
        "{devices} devices × {features} features × {windows} windows: stored and folded in {:.1} s",
        f.store_s
    );
    println!(
        "judging the range (per bucket and merged): {:.0} ms from folded buckets, {:.0} ms from raw rows ({:.1}× faster)",
        f.report_ms, f.raw_ms, f.raw_over_folded
    );
    println!(
        "telemetry: {} bytes per report with {features} features, {} bytes per device per minute (10 s windows)",
        f.report_bytes, f.bytes_per_device_per_minute
    );
    println!(
        "DataDriftDetected {:.0} s after the first shifted row (60 s buckets, 300 s window, 10 devices at 2 rows/s)",
        f.detection_s
    );
    println!("{}", serde_json::to_string(&f)?);
    Ok(())
}

/// When a scenario changes, and how its traffic is cut.
struct ScenarioTiming {
    change_after: f64,
    label_delay: f64,
    rows_per_request: usize,
}

/// A scenario from a training CSV: its feature columns (all but the label)
/// in file order, the label column as outcomes.
fn scenario_of(
    kind: &str,
    data: &std::path::Path,
    label: Option<&str>,
    features: &[String],
    t: ScenarioTiming,
    input: String,
) -> Result<wasmops_fleet::scenario::Scenario> {
    use wasmops_drift::{Table, Values};
    use wasmops_fleet::scenario::Kind;
    let kind: Kind = kind.parse().map_err(anyhow::Error::msg)?;
    let table = Table::read(data, "training data", None)?;
    if let Some(l) = label
        && table.column(l).is_none()
    {
        anyhow::bail!("{}: no label column `{l}`", data.display());
    }
    let mut names = vec![];
    let mut columns = vec![];
    for c in &table.columns {
        if Some(c.name.as_str()) == label {
            continue;
        }
        match &c.values {
            Values::Numeric(v) => {
                names.push(c.name.clone());
                columns.push(v);
            }
            Values::Categorical(_) => anyhow::bail!(
                "{}: column `{}` is not numeric; scenarios send numbers",
                data.display(),
                c.name
            ),
        }
    }
    anyhow::ensure!(
        !columns.is_empty() && table.rows > 0,
        "{}: no feature rows",
        data.display()
    );
    let rows: Vec<Vec<f64>> = (0..table.rows)
        .map(|r| columns.iter().map(|c| c[r].unwrap_or(f64::NAN)).collect())
        .collect();
    let outcomes = match label.and_then(|l| table.column(l)) {
        Some(c) => match &c.values {
            Values::Numeric(v) => v
                .iter()
                .map(|x| x.map_or(String::new(), wasmops_profile::code_key))
                .collect(),
            Values::Categorical(v) => v.iter().map(|x| x.clone().unwrap_or_default()).collect(),
        },
        None => vec![],
    };
    let chosen: Vec<usize> = if features.is_empty() {
        let n = if kind == Kind::CovariateShift { 2 } else { 1 };
        (0..n.min(names.len())).collect()
    } else {
        features
            .iter()
            .map(|f| {
                names
                    .iter()
                    .position(|n| n == f)
                    .with_context(|| format!("--features: no column `{f}` in {}", data.display()))
            })
            .collect::<Result<_>>()?
    };
    let seconds = |s: f64, what: &str| {
        anyhow::ensure!(
            s.is_finite() && s >= 0.0,
            "--{what} must be a number of seconds"
        );
        Ok(std::time::Duration::from_secs_f64(s))
    };
    Ok(wasmops_fleet::scenario::Scenario {
        kind,
        input,
        rows,
        text: vec![],
        outcomes,
        features: chosen,
        change_after: seconds(t.change_after, "change-after")?,
        rows_per_request: t.rows_per_request.max(1),
        label_delay: seconds(t.label_delay, "label-delay")?,
    })
}

/// The demo's scenario at fleet scale: time to online, first deployment, canary.
/// Seconds the built-in trainers take on `rows` × `features` synthetic rows
/// (a linear rule with noise; 20 % held out, the ONNX export checked).
fn bench_trainers(rows: usize, features: usize) -> Result<(f64, f64)> {
    use wasmops_trainer::{Algorithm, Frame, Settings, Target, train_builtin};
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    let x: Vec<f64> = (0..rows * features).map(|_| next() * 2.0 - 1.0).collect();
    let score = |i: usize| -> f64 {
        (0..features)
            .map(|j| x[i * features + j] * (j as f64 + 1.0) / features as f64)
            .sum()
    };
    let values: Vec<f64> = (0..rows).map(|i| score(i) + 0.1 * (next() - 0.5)).collect();
    let names: Vec<String> = (0..features).map(|j| format!("x{j}")).collect();
    let frame = |y: Target| Frame {
        features: names.clone(),
        x: x.clone(),
        y,
        unlabelled: 0,
    };
    let classes = frame(Target::Classes(
        values.iter().map(|v| i64::from(*v > 0.0)).collect(),
    ));
    let numbers = frame(Target::Values(values.clone()));
    let mut took = vec![];
    for (algorithm, data) in [
        (Algorithm::Logistic, &classes),
        (Algorithm::Linear, &numbers),
    ] {
        let (train, holdout) = data.split(0.2, 7)?;
        let started = std::time::Instant::now();
        let t = train_builtin(algorithm, &Settings::default(), &train, &holdout)?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "built-in {} on {} rows × {features} features: {secs:.2} s (holdout {})",
            algorithm.name(),
            train.rows(),
            t.metrics
        );
        took.push(secs);
    }
    Ok((took[0], took[1]))
}

fn bench_loop(devices: usize, rate: f64, demo_windows: bool, trainer_only: bool) -> Result<()> {
    let (logistic_s, linear_s) = bench_trainers(100_000, 20)?;
    if trainer_only {
        println!(
            "{}",
            serde_json::json!({"trainer_rows": 100_000, "trainer_features": 20, "logistic_s": logistic_s, "linear_s": linear_s})
        );
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let (secret, public) = super::keygen::keygen(&dir.path().join("release"))?;
    let mut scenario =
        wasmops_fleet::demo_loop::LoopScenario::demo(dir.path().to_path_buf(), devices, public);
    scenario.rate = rate;
    if !demo_windows {
        scenario.monitor = None;
        scenario.fresh = "60s".into();
        scenario.waves = wasmops_api::DEFAULT_WAVES.to_vec();
        scenario.bake_s = wasmops_api::Gates::default().bake_s;
        scenario.steady = std::time::Duration::from_secs(90);
    }
    let cache = dir.path().join("worker-cache");
    let worker = wasmops_coordinator::config::WorkerSettings {
        key: Some(secret),
        ..Default::default()
    };
    let o = wasmops_fleet::demo_loop::run(&scenario, &super::demo::ProgressBars, move |ready| {
        super::coordinator::start_worker(ready, worker, cache)
    })?;
    let share = |d: std::time::Duration| 100.0 * d.as_secs_f64() / o.total.as_secs_f64();
    println!(
        "{devices} devices ({} windows): change → fleet on the retrained model in {:.1} s: detection {:.1} s ({:.0} %), fresh rows {:.1} s ({:.0} %), training + build + gate + release {:.1} s ({:.0} %), canary + promotion {:.1} s ({:.0} %)",
        if demo_windows { "demo" } else { "default" },
        o.total.as_secs_f64(),
        o.detected.as_secs_f64(),
        share(o.detected),
        o.collected.as_secs_f64(),
        share(o.collected),
        o.trained.as_secs_f64(),
        share(o.trained),
        o.promoted.as_secs_f64(),
        share(o.promoted)
    );
    let stage = |name: &str| o.stages[name].as_f64().unwrap_or(f64::NAN);
    println!(
        "  the run's stages: data {:.1} s, training {:.1} s, validation gate {:.1} s, build {:.1} s, sign + register {:.1} s; the rest of {:.1} s is queueing and reporting",
        stage("data"),
        stage("train"),
        stage("validate"),
        stage("build"),
        stage("sign_register"),
        o.trained.as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "devices": devices, "default_windows": !demo_windows, "total_s": o.total.as_secs_f64(),
            "run_stages_s": o.stages,
            "detection_s": o.detected.as_secs_f64(), "fresh_rows_s": o.collected.as_secs_f64(), "train_build_gate_release_s": o.trained.as_secs_f64(),
            "canary_promotion_s": o.promoted.as_secs_f64(),
            "trainer_rows": 100_000, "trainer_features": 20, "logistic_s": logistic_s, "linear_s": linear_s,
        })
    );
    Ok(())
}

fn bench_rollout(devices: usize, mqtt: Option<String>, rate: f64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (secret, public) = super::keygen::keygen(&dir.path().join("release"))?;
    let versions = super::demo::build_versions(dir.path(), &secret, &[("1.0.0", 1), ("1.1.0", 2)])?;
    let scenario = wasmops_fleet::demo::Scenario {
        dir: dir.path().to_path_buf(),
        devices,
        mqtt,
        v1: versions[0].clone(),
        v2: versions[1].clone(),
        trust_key: public,
        sample: super::demo::DEMO_INPUT.to_string(),
        rate,
        telemetry_interval_ms: 2000,
        bake_s: 2,
        traffic: None,
        change: String::new(),
    };
    let o = wasmops_fleet::demo::run(&scenario, false, false, &super::demo::ProgressBars)?;
    println!(
        "{devices} simulated devices: online in {:.1} s, first deployment {:.1} s, canary 10/50/100% (2 s bake per wave) {:.1} s",
        o.fleet_start_time.as_secs_f64(),
        o.first_deploy_time.as_secs_f64(),
        o.rollout_time.as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({"devices": devices, "fleet_online_s": o.fleet_start_time.as_secs_f64(), "first_deploy_s": o.first_deploy_time.as_secs_f64(), "canary_rollout_s": o.rollout_time.as_secs_f64(), "waves": 3, "bake_s_per_wave": 2})
    );
    Ok(())
}

/// Memory growth over the last coordinator life that fails the soak.
const MAX_RSS_GROWTH: f64 = 1.5;

fn soak(
    devices: usize,
    minutes: f64,
    database: Option<String>,
    rate: f64,
    seed: u64,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (secret, public) = super::keygen::keygen(&dir.path().join("release"))?;
    let versions = super::demo::build_versions(
        dir.path(),
        &secret,
        &[("1.0.0", 1), ("1.1.0", 2), ("1.2.0", 3)],
    )?;
    let config = wasmops_fleet::soak::SoakConfig {
        dir: dir.path().to_path_buf(),
        exe: std::env::current_exe()?,
        devices,
        duration: std::time::Duration::from_secs_f64(minutes * 60.0),
        database,
        versions: [
            versions[0].clone(),
            versions[1].clone(),
            versions[2].clone(),
        ],
        trust_key: public,
        sample: super::demo::DEMO_INPUT.to_string(),
        rate,
        seed,
    };
    let r = wasmops_fleet::soak::run(&config, &|line| eprintln!("{line}"))?;
    let lives: Vec<String> = r
        .coordinator_rss_mib
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let peak = l.iter().copied().fold(0.0, f64::max);
            format!("{:.0} → {:.0} MiB (peak {peak:.0})", l[0], l[l.len() - 1])
        })
        .collect();
    eprintln!(
        "soak: {} devices, {:.0} s: {} device kills, {} broker and {} coordinator restarts; rollouts {:?}",
        r.devices, r.seconds, r.device_kills, r.broker_restarts, r.coordinator_restarts, r.rollouts
    );
    eprintln!(
        "soak: {} predictions made ({} failed), {} stored by the coordinator, {} lost in killed devices' open windows; every device on {:?}",
        r.predictions_made,
        r.predictions_failed,
        r.predictions_stored,
        r.predictions_unreported,
        r.versions
    );
    eprintln!(
        "soak: coordinator memory per life: {}; last life grew ×{:.2}",
        lives.join("; "),
        r.rss_growth()
    );
    println!("{}", serde_json::to_string(&r)?);
    anyhow::ensure!(
        r.rss_growth() <= MAX_RSS_GROWTH,
        "the coordinator's memory grew ×{:.2} over its last life",
        r.rss_growth()
    );
    Ok(())
}
