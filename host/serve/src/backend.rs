//! What answers a predict request: a model component ([`WasmModel`]), or
//! whatever else implements [`Backend`] (the CLI's native tract baseline).

use std::time::{Duration, Instant};

use wasmops_runtime::bindings::{ModelInfo, Tensor};
use wasmops_runtime::{HostError, LoadedModel};

/// A model the server can answer with. `predict` runs on a blocking thread,
/// one call per request, on state no other request sees.
pub trait Backend: Send + Sync + 'static {
    /// What callers send and get back; requests are typed by it.
    fn info(&self) -> &ModelInfo;
    /// What runs it (`wasm`, `native`), as the model listing shows.
    fn runtime(&self) -> &'static str;
    /// What `GET /v1/models/{name}` shows beside the metadata and runtime:
    /// where the model came from and who signed it.
    fn describe(&self) -> serde_json::Value;
    fn predict(&self, inputs: &[Tensor]) -> Result<Prediction, HostError>;
}

pub struct Prediction {
    pub outputs: Vec<Tensor>,
    /// The time to make the state this request ran on (a fresh instance),
    /// when the backend makes one.
    pub instantiate: Option<Duration>,
}

/// A verified, compiled component; each request gets a fresh instance of it.
pub struct WasmModel {
    loaded: LoadedModel,
    info: ModelInfo,
}

impl WasmModel {
    /// Asks the component for its metadata once (on an instance of its own).
    pub fn new(loaded: LoadedModel) -> Result<WasmModel, HostError> {
        let info = loaded.instantiate()?.metadata()?;
        Ok(WasmModel { loaded, info })
    }
}

impl Backend for WasmModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn runtime(&self) -> &'static str {
        "wasm"
    }

    fn describe(&self) -> serde_json::Value {
        let accepted = self.loaded.accepted.as_ref();
        serde_json::json!({
            "sha256": self.loaded.sha256,
            "size_bytes": self.loaded.size_bytes,
            "signed_by": accepted.map(|a| a.verified.key_id.clone()),
            "delegation": accepted.and_then(|a| a.delegation.clone()),
            "claims": accepted.and_then(|a| a.claims.clone()),
        })
    }

    fn predict(&self, inputs: &[Tensor]) -> Result<Prediction, HostError> {
        let started = Instant::now();
        let mut instance = self.loaded.instantiate()?;
        let instantiate = started.elapsed();
        let outputs = instance.predict(inputs)?;
        Ok(Prediction {
            outputs,
            instantiate: Some(instantiate),
        })
    }
}
