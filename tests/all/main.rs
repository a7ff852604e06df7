//! The end-to-end tests: one binary, a module per area, each driving the real
//! `wasmops` binary (and real brokers, databases and browsers where the area
//! needs them) from outside. Shared helpers are in [`common`].

mod common;

mod agent;
mod attacks;
mod bad_input;
mod bench;
mod closed_loop;
mod drift;
mod fleet;
mod fuzz_regressions;
mod model_outputs;
mod monitoring;
mod presence;
mod provision;
mod registry;
mod sandbox;
mod security;
mod serve;
mod signing;
mod tls;
mod trust_chain;
mod web;
