//! The pieces of the `wasmops` command line that other programs (the benchmark
//! harness, tests) reuse.

pub mod bench;
pub mod coordinator_client;
pub mod files;
pub mod mosquitto;
pub mod rollout;
pub mod tensors;
pub mod trust;
