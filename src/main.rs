//! `wasmops`: ML models from the cloud to the edge as signed WebAssembly
//! components. Parses the command line and dispatches to `wasmops_cli::commands`.

use clap::Parser;
use wasmops_cli::commands::*;

#[derive(Parser)]
#[command(
    name = "wasmops",
    version,
    about = "ML models from the cloud to the edge as signed WebAssembly components"
)]
enum Wasmops {
    Keygen(KeygenCommand),
    Build(BuildCommand),
    Sign(SignCommand),
    Verify(VerifyCommand),
    Trust(TrustCommand),
    Run(RunCommand),
    Inspect(InspectCommand),
    Bench(BenchCommand),
    Coordinator(CoordinatorCommand),
    MosquittoConfig(MosquittoConfigCommand),
    Model(ModelCommand),
    Token(TokenCommand),
    Enrolment(EnrolmentCommand),
    Provision(ProvisionCommand),
    Agent(AgentCommand),
    Deploy(DeployCommand),
    Devices(DevicesCommand),
    Audit(AuditCommand),
    Events(EventsCommand),
    Rollout(RolloutCommand),
    Telemetry(TelemetryCommand),
    Drift(DriftCommand),
    Labels(LabelsCommand),
    Monitor(MonitorCommand),
    Dataset(DatasetCommand),
    Runs(RunsCommand),
    Retrain(RetrainCommand),
    Worker(WorkerCommand),
    Loop(LoopCommand),
    Fleet(FleetCommand),
    Demo(DemoCommand),
}

impl Wasmops {
    fn execute(self) -> anyhow::Result<()> {
        match self {
            Wasmops::Keygen(c) => c.execute(),
            Wasmops::Build(c) => c.execute(),
            Wasmops::Sign(c) => c.execute(),
            Wasmops::Verify(c) => c.execute(),
            Wasmops::Trust(c) => c.execute(),
            Wasmops::Run(c) => c.execute(),
            Wasmops::Inspect(c) => c.execute(),
            Wasmops::Bench(c) => c.execute(),
            Wasmops::Coordinator(c) => c.execute(),
            Wasmops::MosquittoConfig(c) => c.execute(),
            Wasmops::Model(c) => c.execute(),
            Wasmops::Token(c) => c.execute(),
            Wasmops::Enrolment(c) => c.execute(),
            Wasmops::Provision(c) => c.execute(),
            Wasmops::Agent(c) => c.execute(),
            Wasmops::Deploy(c) => c.execute(),
            Wasmops::Devices(c) => c.execute(),
            Wasmops::Audit(c) => c.execute(),
            Wasmops::Events(c) => c.execute(),
            Wasmops::Rollout(c) => c.execute(),
            Wasmops::Telemetry(c) => c.execute(),
            Wasmops::Drift(c) => c.execute(),
            Wasmops::Labels(c) => c.execute(),
            Wasmops::Monitor(c) => c.execute(),
            Wasmops::Dataset(c) => c.execute(),
            Wasmops::Runs(c) => c.execute(),
            Wasmops::Retrain(c) => c.execute(),
            Wasmops::Worker(c) => c.execute(),
            Wasmops::Loop(c) => c.execute(),
            Wasmops::Fleet(c) => c.execute(),
            Wasmops::Demo(c) => c.execute(),
        }
    }
}

fn main() {
    // The embedded broker (rumqttd) logs routine disconnects as errors: silent
    // unless asked for (WASMOPS_LOG=rumqttd=info).
    let filter = tracing_subscriber::EnvFilter::try_from_env("WASMOPS_LOG")
        .unwrap_or_else(|_| "warn,rumqttd=off".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = Wasmops::parse().execute() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
