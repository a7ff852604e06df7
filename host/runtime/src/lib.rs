//! The wasmops host: one wasmtime engine that verifies, compiles (once, cached on
//! disk) and runs model components under a memory cap and a per-call deadline.
//!
//! Data path: bytes → [`wasmops_sign::verify`] (before any compilation) →
//! [`cache`] (compiled component keyed by engine + content hash) →
//! `InstancePre` → [`ModelInstance::predict`].

mod cache;
mod compare;
pub use compare::output_difference;
pub use cache::{CompileCache, default_cache_dir};
mod engine;
mod error;
mod instance;
pub mod tensors_json;

pub use engine::{Host, HostConfig, LoadedModel, SignaturePolicy, engine_config};
pub use error::HostError;

/// Hex SHA-256, the content address used for cache keys and registries.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
pub use instance::{ALLOWED_IMPORTS, GuestState, ModelInstance, forbidden_imports, linker, new_seeded_store, new_store};

/// Types generated from `wit/model.wit`, re-exported for callers.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "model-component",
        additional_derives: [PartialEq],
    });
    pub use exports::wasmops::model::model::Guest;
    pub use wasmops::model::types::{Dim, ElementType, ModelInfo, PredictError, Tensor, TensorData, TensorSpec};
}
