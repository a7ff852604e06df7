//! Simulated fleets, for tests, demos and load: [`simulator`] runs N real
//! device agents in one process (each its own MQTT connection and state),
//! [`demo`] is the scenario behind `wasmops demo` and `wasmops fleet
//! bench-rollout` (an in-process coordinator, a fleet, a deployment, then a
//! canary rollout), [`bench`] measures telemetry ingestion against the raw
//! broker, [`soak`] runs a fleet through rollouts while devices, the broker
//! and the coordinator are killed, [`mosquitto`] runs a private Mosquitto,
//! and [`scenario`] makes a fleet's traffic drift, stick or change its labels.

pub mod bench;
pub mod demo;
pub mod demo_loop;
pub mod mosquitto;
pub mod scenario;
pub mod simulator;
pub mod soak;
