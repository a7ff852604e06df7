//! The `wasmops` command line as a library: [`commands`] (one module per verb),
//! the flags they share ([`args`]), and small helpers. `src/main.rs` only
//! parses and dispatches; the benchmark harness (`benches/`) reuses
//! [`commands::bench`].

pub mod args;
pub mod commands;
pub mod files;
#[cfg(feature = "full")]
pub mod native;
pub mod tensors;
