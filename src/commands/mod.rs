//! One module per `wasmops` verb, each a clap command with `execute`.
//!
//! Model path: [`keygen`] → [`build`] → [`sign`] → [`verify`] → [`run`] /
//! [`inspect`] / [`bench`]; [`trust`] manages the root of trust.
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

pub mod agent;
pub mod audit;
pub mod bench;
pub mod build;
pub mod coordinator;
pub mod dataset;
pub mod demo;
pub mod deploy;
pub mod devices;
pub mod drift;
pub mod enrolment;
pub mod events;
pub mod fleet;
pub mod inspect;
pub mod keygen;
pub mod labels;
pub mod loops;
pub mod model;
pub mod monitor;
pub mod mosquitto;
pub mod provision;
pub mod rollout;
pub mod run;
pub mod runs;
pub mod sign;
pub mod telemetry;
pub mod token;
pub mod trust;
pub mod verify;
pub mod worker;

pub use agent::AgentCommand;
pub use audit::AuditCommand;
pub use bench::BenchCommand;
pub use build::BuildCommand;
pub use coordinator::CoordinatorCommand;
pub use dataset::DatasetCommand;
pub use demo::DemoCommand;
pub use deploy::DeployCommand;
pub use devices::DevicesCommand;
pub use drift::DriftCommand;
pub use enrolment::EnrolmentCommand;
pub use events::EventsCommand;
pub use fleet::FleetCommand;
pub use inspect::InspectCommand;
pub use keygen::KeygenCommand;
pub use labels::LabelsCommand;
pub use loops::LoopCommand;
pub use model::ModelCommand;
pub use monitor::MonitorCommand;
pub use mosquitto::MosquittoConfigCommand;
pub use provision::ProvisionCommand;
pub use rollout::RolloutCmd as RolloutCommand;
pub use run::RunCommand;
pub use runs::{RetrainCommand, RunsCommand};
pub use sign::SignCommand;
pub use telemetry::TelemetryCommand;
pub use token::TokenCommand;
pub use trust::TrustCmd as TrustCommand;
pub use verify::VerifyCommand;
pub use worker::WorkerCommand;
