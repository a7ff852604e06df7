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
    #[cfg(feature = "full")]
    Build(BuildCommand),
    Sign(SignCommand),
    Verify(VerifyCommand),
    Trust(TrustCommand),
    Run(RunCommand),
    Inspect(InspectCommand),
    #[cfg(feature = "full")]
    Bench(BenchCommand),
    #[cfg(feature = "full")]
    Serve(ServeCommand),
    #[cfg(feature = "full")]
    ServeBench(ServeBenchCommand),
    #[cfg(feature = "full")]
    Web(WebCommand),
    #[cfg(feature = "full")]
    WebBench(WebBenchCommand),
    #[cfg(feature = "full")]
    Coordinator(CoordinatorCommand),
    #[cfg(feature = "full")]
    MosquittoConfig(MosquittoConfigCommand),
    #[cfg(feature = "full")]
    Model(ModelCommand),
    #[cfg(feature = "full")]
    Token(TokenCommand),
    #[cfg(feature = "full")]
    Enrolment(EnrolmentCommand),
    #[cfg(feature = "full")]
    Provision(ProvisionCommand),
    Agent(AgentCommand),
    #[cfg(feature = "full")]
    Deploy(DeployCommand),
    #[cfg(feature = "full")]
    Devices(DevicesCommand),
    #[cfg(feature = "full")]
    Audit(AuditCommand),
    #[cfg(feature = "full")]
    Events(EventsCommand),
    #[cfg(feature = "full")]
    Rollout(RolloutCommand),
    #[cfg(feature = "full")]
    Telemetry(TelemetryCommand),
    #[cfg(feature = "full")]
    Drift(DriftCommand),
    #[cfg(feature = "full")]
    Labels(LabelsCommand),
    #[cfg(feature = "full")]
    Monitor(MonitorCommand),
    #[cfg(feature = "full")]
    Dataset(DatasetCommand),
    #[cfg(feature = "full")]
    Runs(RunsCommand),
    #[cfg(feature = "full")]
    Retrain(RetrainCommand),
    #[cfg(feature = "full")]
    Worker(WorkerCommand),
    #[cfg(feature = "full")]
    Loop(LoopCommand),
    #[cfg(feature = "full")]
    Fleet(FleetCommand),
    #[cfg(feature = "full")]
    Demo(DemoCommand),
}

impl Wasmops {
    fn execute(self) -> anyhow::Result<()> {
        match self {
            Wasmops::Keygen(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Build(c) => c.execute(),
            Wasmops::Sign(c) => c.execute(),
            Wasmops::Verify(c) => c.execute(),
            Wasmops::Trust(c) => c.execute(),
            Wasmops::Run(c) => c.execute(),
            Wasmops::Inspect(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Bench(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Serve(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::ServeBench(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Web(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::WebBench(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Coordinator(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::MosquittoConfig(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Model(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Token(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Enrolment(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Provision(c) => c.execute(),
            Wasmops::Agent(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Deploy(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Devices(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Audit(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Events(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Rollout(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Telemetry(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Drift(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Labels(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Monitor(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Dataset(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Runs(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Retrain(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Worker(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Loop(c) => c.execute(),
            #[cfg(feature = "full")]
            Wasmops::Fleet(c) => c.execute(),
            #[cfg(feature = "full")]
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
