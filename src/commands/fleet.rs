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
        /// The application's request ({"inputs":[...]}); no traffic without one.
        #[arg(long)]
        sample: Option<PathBuf>,
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
                telemetry_interval_ms,
                listen,
                enrolment_token,
                conn,
            } => {
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
                    state_dir,
                    trust: wasmops_agent::TrustConfig {
                        root: keys.root,
                        trust_dir: keys.trust_dir,
                        keys: keys.trust,
                    },
                    telemetry_interval_ms,
                    rate,
                    sample,
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
            FleetVerb::Soak {
                devices,
                minutes,
                database,
                rate,
                seed,
            } => soak(devices, minutes, database, rate, seed),
            FleetVerb::BenchTelemetry {
                mqtt,
                devices,
                messages,
            } => wasmops_fleet::bench::telemetry(mqtt.as_deref(), devices, messages),
        }
    }
}

/// The demo's scenario at fleet scale: time to online, first deployment, canary.
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
