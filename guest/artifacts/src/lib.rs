//! The generic guest component, compiled by this crate's build script.

/// The `model-builder` component before any model is baked in.
pub const GENERIC_GUEST: &[u8] = include_bytes!(env!("WASMOPS_GENERIC_GUEST"));

/// The wasm target features the guest was compiled with (e.g. `+simd128`).
pub const TARGET_FEATURES: &str = env!("WASMOPS_GUEST_TARGET_FEATURES");
