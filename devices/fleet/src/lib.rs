//! Simulated fleets, for tests, demos and load: [`simulator`] runs N real
//! device agents in one process (each its own MQTT connection and state),
//! [`demo`] is the scenario behind `wasmops demo` and `wasmops fleet
//! bench-rollout` (an in-process coordinator, a fleet, a deployment, then a
//! canary rollout), [`bench`] measures telemetry ingestion against the raw
//! broker, and [`mosquitto`] runs a private Mosquitto for it.

pub mod bench;
pub mod demo;
pub mod mosquitto;
pub mod simulator;
