//! One module per `wasmops` verb, each a clap command with `execute`.
//!
//! Model path: [`keygen`] → [`build`] → [`sign`] → [`verify`] → [`run`] /
//! [`inspect`] / [`bench`]; [`serve`] answers predictions over HTTP
//! (serverless nodes) and [`serve_bench`] load-tests it; [`web`] writes a
//! browser bundle (`serve --web` serves it) and [`web_bench`] races it
//! against onnxruntime-web in Chromium; [`trust`] manages the root of trust.
//! Fleet path: [`coordinator`] serves the registry and API ([`mosquitto`]
//! configures an external broker for it, [`provision`] writes bundles that
//! flash gateways into it); [`model`],
//! [`token`], [`enrolment`], [`deploy`], [`rollout`], [`devices`], [`audit`], [`events`]
//! and [`telemetry`] talk to it; [`agent`] runs on a device; [`fleet`]
//! simulates many; [`demo`] runs all of it on embedded defaults.
//! Monitoring: [`drift`] compares a data scientist's own files; [`labels`]
//! posts outcomes for the fleet's predictions.
//! Closed loop: [`dataset`] stores training data; [`runs`] queues
//! (`retrain`) and shows runs; [`worker`] carries them out; [`loops`] sets
//! a model's triggers, gate and release.
//!
//! Without the `full` feature only the gateway's verbs are built: [`agent`],
//! [`run`], [`verify`], [`inspect`], [`keygen`], [`sign`], [`trust`].

pub mod agent;
#[cfg(feature = "full")]
pub mod audit;
#[cfg(feature = "full")]
pub mod bench;
#[cfg(feature = "full")]
pub mod build;
#[cfg(feature = "full")]
pub mod coordinator;
#[cfg(feature = "full")]
pub mod dataset;
#[cfg(feature = "full")]
pub mod demo;
#[cfg(feature = "full")]
pub mod deploy;
#[cfg(feature = "full")]
pub mod devices;
#[cfg(feature = "full")]
pub mod drift;
#[cfg(feature = "full")]
pub mod enrolment;
#[cfg(feature = "full")]
pub mod events;
#[cfg(feature = "full")]
pub mod fleet;
pub mod inspect;
pub mod keygen;
#[cfg(feature = "full")]
pub mod labels;
#[cfg(feature = "full")]
pub mod loops;
#[cfg(feature = "full")]
pub mod model;
#[cfg(feature = "full")]
pub mod monitor;
#[cfg(feature = "full")]
pub mod mosquitto;
#[cfg(feature = "full")]
pub mod provision;
#[cfg(feature = "full")]
pub mod rollout;
pub mod run;
#[cfg(feature = "full")]
pub mod runs;
#[cfg(feature = "full")]
pub mod serve;
#[cfg(feature = "full")]
pub mod serve_bench;
pub mod sign;
#[cfg(feature = "full")]
pub mod telemetry;
#[cfg(feature = "full")]
pub mod token;
pub mod trust;
pub mod verify;
#[cfg(feature = "full")]
pub mod web;
#[cfg(feature = "full")]
pub mod web_bench;
#[cfg(feature = "full")]
pub mod worker;

pub use agent::AgentCommand;
#[cfg(feature = "full")]
pub use audit::AuditCommand;
#[cfg(feature = "full")]
pub use bench::BenchCommand;
#[cfg(feature = "full")]
pub use build::BuildCommand;
#[cfg(feature = "full")]
pub use coordinator::CoordinatorCommand;
#[cfg(feature = "full")]
pub use dataset::DatasetCommand;
#[cfg(feature = "full")]
pub use demo::DemoCommand;
#[cfg(feature = "full")]
pub use deploy::DeployCommand;
#[cfg(feature = "full")]
pub use devices::DevicesCommand;
#[cfg(feature = "full")]
pub use drift::DriftCommand;
#[cfg(feature = "full")]
pub use enrolment::EnrolmentCommand;
#[cfg(feature = "full")]
pub use events::EventsCommand;
#[cfg(feature = "full")]
pub use fleet::FleetCommand;
pub use inspect::InspectCommand;
pub use keygen::KeygenCommand;
#[cfg(feature = "full")]
pub use labels::LabelsCommand;
#[cfg(feature = "full")]
pub use loops::LoopCommand;
#[cfg(feature = "full")]
pub use model::ModelCommand;
#[cfg(feature = "full")]
pub use monitor::MonitorCommand;
#[cfg(feature = "full")]
pub use mosquitto::MosquittoConfigCommand;
#[cfg(feature = "full")]
pub use provision::ProvisionCommand;
#[cfg(feature = "full")]
pub use rollout::RolloutCmd as RolloutCommand;
pub use run::RunCommand;
#[cfg(feature = "full")]
pub use runs::{RetrainCommand, RunsCommand};
#[cfg(feature = "full")]
pub use serve::ServeCommand;
#[cfg(feature = "full")]
pub use serve_bench::ServeBenchCommand;
pub use sign::SignCommand;
#[cfg(feature = "full")]
pub use telemetry::TelemetryCommand;
#[cfg(feature = "full")]
pub use token::TokenCommand;
pub use trust::TrustCmd as TrustCommand;
pub use verify::VerifyCommand;
#[cfg(feature = "full")]
pub use web::WebCommand;
#[cfg(feature = "full")]
pub use web_bench::WebBenchCommand;
#[cfg(feature = "full")]
pub use worker::WorkerCommand;
