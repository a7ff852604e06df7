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
