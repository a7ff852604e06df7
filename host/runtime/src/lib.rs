//! The wasmops host: one wasmtime engine that verifies, compiles (once, cached on
//! disk) and runs model components under a memory cap and a per-call deadline.
//!
//! Data path: bytes → [`wasmops_sign::verify`] (before any compilation) →
//! [`cache`] (compiled component keyed by engine + content hash) →
//! `InstancePre` → [`ModelInstance::predict`].

mod cache;
mod compare;
pub use cache::{CacheDir, CompileCache, MAX_CACHE_BYTES, Origin};
// Named for its x86_64 and aarch64 backends (Cargo.toml): `Host::precompile`.
pub use compare::output_difference;
use cranelift_codegen as _;
mod engine;
mod error;
mod instance;
pub mod synthetic;
pub mod tensors_json;

pub use engine::{
    DEFAULT_DEADLINE, DEFAULT_MEMORY_LIMIT, Host, HostConfig, LoadedModel, Pooling, Profiler,
    SignaturePolicy, engine_config,
};
pub use error::HostError;

pub use instance::{
    ALLOWED_IMPORTS, GuestState, ModelInstance, forbidden_imports, linker, new_seeded_store,
    new_store,
};
/// Hex SHA-256, the content address used for cache keys and registries.
pub use wasmops_trust::sha256_hex;

/// Types generated from `wit/model.wit`, re-exported for callers.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "model-component",
        additional_derives: [PartialEq],
    });
    pub use exports::wasmops::model::model::Guest;
    pub use wasmops::model::types::{
        Dim, ElementType, ModelInfo, PredictError, Tensor, TensorData, TensorSpec,
    };
}
