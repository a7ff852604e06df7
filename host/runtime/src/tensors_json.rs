//! The JSON tensor format of `wasmops run`, `serve` and the agent's predict
//! endpoint (`wasmops_predict_json`, the one implementation) over the host's
//! binding types, and the model metadata's JSON forms.

use crate::bindings::{ElementType, ModelInfo, Tensor, TensorData};
use anyhow::Result;
use serde_json::Value;
pub use wasmops_predict_json::{JsonTensor, Kind, TensorRef, Values};

/// How the model's declared input `name` is read (float32 when not declared).
pub fn kind_of(info: &ModelInfo, name: &str) -> Kind {
    info.inputs
        .iter()
        .find(|s| s.name == name)
        .map_or(Kind::Float32, |s| element(s.element_type).kind())
}

/// The wire's name for a binding element type.
fn element(t: ElementType) -> wasmops_predict_json::ElementType {
    use wasmops_predict_json::ElementType as E;
    match t {
        ElementType::Float32 => E::Float32,
        ElementType::Int64 => E::Int64,
        ElementType::Int32 => E::Int32,
        ElementType::Boolean => E::Boolean,
        ElementType::Text => E::Text,
        ElementType::Other => E::Other,
    }
}

/// Parses an input file, typing each tensor by the model's declared input type
/// (text inputs for category maps, int64 inputs, float32 otherwise).
pub fn parse_inputs(text: &str, info: &ModelInfo) -> Result<Vec<Tensor>> {
    Ok(
        wasmops_predict_json::parse_inputs(text, |name| kind_of(info, name))?
            .into_iter()
            .map(from_plain)
            .collect(),
    )
}

/// The numeric tensors of an input file, without a model to type them
/// (float32, `null` → NaN); text tensors are left out.
pub fn parse_untyped(text: &str) -> Result<Vec<Tensor>> {
    Ok(wasmops_predict_json::parse_untyped(text)?
        .into_iter()
        .map(from_plain)
        .collect())
}

/// A wire tensor as the host's binding type (the data moves, no copy).
pub fn from_plain(t: wasmops_predict_json::Tensor) -> Tensor {
    use wasmops_predict_json::Data;
    Tensor {
        name: t.name,
        shape: t.shape,
        data: match t.data {
            Data::Float32(v) => TensorData::Float32(v),
            Data::Int64(v) => TensorData::Int64(v),
            Data::Text(v) => TensorData::Text(v),
        },
    }
}

/// A host tensor, borrowed as the wire (and counting) sees it.
pub fn view(t: &Tensor) -> TensorRef<'_> {
    TensorRef {
        name: &t.name,
        shape: &t.shape,
        data: match &t.data {
            TensorData::Float32(v) => Values::Float32(v),
            TensorData::Int64(v) => Values::Int64(v),
            TensorData::Text(v) => Values::Text(v),
        },
    }
}

pub fn to_json(t: &Tensor) -> JsonTensor {
    wasmops_predict_json::to_json(view(t))
}

pub fn outputs_json(outputs: &[Tensor]) -> String {
    wasmops_predict_json::outputs_json(outputs.iter().map(view))
}

/// An element type's name in JSON and listings (`float32`, `int64`, `text`…).
pub fn type_name(t: ElementType) -> &'static str {
    element(t).name()
}

/// A shape's dimensions as text: fixed sizes, or the symbol (`N`).
pub fn dims(shape: &[crate::bindings::Dim]) -> Vec<String> {
    shape
        .iter()
        .map(|d| match d {
            crate::bindings::Dim::Fixed(v) => v.to_string(),
            crate::bindings::Dim::Symbol(s) => s.clone(),
        })
        .collect()
}

/// Tensor specs as JSON: `[{"name", "type", "shape": ["N", "4"]}]`.
pub fn specs_json(specs: &[crate::bindings::TensorSpec]) -> Value {
    specs
        .iter()
        .map(|s| serde_json::json!({"name": s.name, "type": type_name(s.element_type), "shape": dims(&s.shape)}))
        .collect()
}
