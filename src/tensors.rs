//! Tensors for the bench's native baseline; the JSON format lives in
//! `wasmops_runtime::tensors_json` (shared with the device agent).

use wasmops_runtime::bindings::{Tensor, TensorData};
pub use wasmops_runtime::tensors_json::{
    JsonTensor, outputs_json, parse_inputs, parse_untyped, to_json,
};

/// The same tensors in the pipeline crate's form, for the native baseline.
pub fn to_pipeline(t: &Tensor) -> wasmops_pipeline::Tensor {
    let data = match &t.data {
        TensorData::Float32(v) => wasmops_pipeline::Data::F32(v.clone()),
        TensorData::Int64(v) => wasmops_pipeline::Data::I64(v.clone()),
        TensorData::Text(v) => wasmops_pipeline::Data::Text(v.clone()),
    };
    wasmops_pipeline::Tensor {
        name: t.name.clone(),
        shape: t.shape.iter().map(|d| *d as usize).collect(),
        data,
    }
}
