//! The JSON tensor format, from `wasmops_runtime::tensors_json` (shared
//! with the device agent and `serve`).

pub use wasmops_runtime::tensors_json::{
    JsonTensor, outputs_json, parse_inputs, parse_untyped, to_json,
};
