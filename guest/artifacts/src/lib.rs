//! The wasm programs `wasmops` ships, compiled by this crate's build script:
//! the generic guest component, the wasi:http front and the browser's
//! verifier.

/// The `model-builder` component before any model is baked in: every op tract
/// can load.
pub const GENERIC_GUEST: &[u8] = include_bytes!(env!("WASMOPS_GENERIC_GUEST"));

/// The same with only the op families of scikit-learn models and CNNs linked in
/// (~2 MB smaller); `wasmops build` uses it whenever the model loads in it.
pub const SLIM_GUEST: &[u8] = include_bytes!(env!("WASMOPS_SLIM_GUEST"));

/// The wasm target features the guest was compiled with (e.g. `+simd128`).
pub const TARGET_FEATURES: &str = env!("WASMOPS_GUEST_TARGET_FEATURES");

/// The wasi:http front (`guest/http`): `wasmops build --http` plugs a model
/// component into it, so wasi:http hosts (`wasmtime serve`) serve the model.
pub const HTTP_FRONT: &[u8] = include_bytes!(env!("WASMOPS_HTTP_FRONT"));

/// The browser's trust check and telemetry counting (`host/web/verifier` for
/// `wasm32-unknown-unknown`), shipped in every `wasmops web` bundle.
pub const WEB_VERIFIER: &[u8] = include_bytes!(env!("WASMOPS_WEB_VERIFIER"));

/// Hostile guests for the sandbox tests (feature `test-programs`), as paths.
#[cfg(feature = "test-programs")]
pub mod test_programs {
    /// Misbehaves by request name: `trap`, `spin`, `hog`; echoes otherwise.
    pub const HOSTILE: &str = env!("WASMOPS_TEST_HOSTILE");
    /// The same, also importing the filesystem (hosts must refuse to link it).
    pub const HOSTILE_FS: &str = env!("WASMOPS_TEST_HOSTILE_FS");
    /// The same, also importing the environment (`wasi:cli/environment`).
    pub const HOSTILE_ENV: &str = env!("WASMOPS_TEST_HOSTILE_ENV");
    /// The same, also importing sockets (`wasi:sockets`).
    pub const HOSTILE_SOCKETS: &str = env!("WASMOPS_TEST_HOSTILE_SOCKETS");
}
