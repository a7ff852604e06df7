//! A model component that misbehaves on request, so tests can prove the host
//! contains it. The first input's name picks the behaviour:
//! `trap` (unreachable), `spin` (infinite loop), `hog` (grow memory without end),
//! `read-file`, `read-env`, `connect` (only with the `filesystem`, `environment`
//! and `sockets` features, each adding the import a host must refuse); anything
//! else echoes.
#![cfg(target_family = "wasm")]

wit_bindgen::generate!({
    path: "../../wit",
    world: "model-component",
});

use exports::wasmops::model::model::Guest;
use wasmops::model::types::{ModelInfo, PredictError, Tensor};

struct Hostile;

impl Guest for Hostile {
    fn predict(inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PredictError> {
        let name = inputs.first().map(|t| t.name.as_str()).unwrap_or("");
        match name {
            "trap" => core::arch::wasm32::unreachable(),
            "spin" => {
                let mut x = 0u64;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hog" => {
                let mut hoard: Vec<Vec<u8>> = vec![];
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            #[cfg(feature = "filesystem")]
            "read-file" => Err(PredictError::Inference(format!(
                "{:?}",
                std::fs::read_to_string("/etc/passwd")
            ))),
            #[cfg(feature = "environment")]
            "read-env" => Err(PredictError::Inference(format!(
                "{:?}",
                std::env::args().collect::<Vec<_>>()
            ))),
            #[cfg(feature = "sockets")]
            "connect" => Err(PredictError::Inference(format!(
                "{:?}",
                std::net::TcpStream::connect("127.0.0.1:1883").map(drop)
            ))),
            _ => Ok(inputs),
        }
    }

    fn metadata() -> ModelInfo {
        ModelInfo {
            name: "hostile".into(),
            version: "0.0.0".into(),
            inputs: vec![],
            outputs: vec![],
            preprocessing: vec![],
        }
    }
}

export!(Hostile);

/// As in the real guest: no environment, so only the features add forbidden imports.
#[cfg(not(feature = "environment"))]
#[unsafe(no_mangle)]
pub extern "C" fn getenv(_name: *const std::ffi::c_char) -> *mut std::ffi::c_char {
    std::ptr::null_mut()
}
