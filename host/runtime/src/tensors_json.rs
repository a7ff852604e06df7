//! The JSON tensor format of `wasmops run` and the agent's predict endpoint:
//! `{"inputs":[{"name":"x","shape":[2,4],"data":[...]}]}` in,
//! `{"outputs":[{"name":"probs","shape":[2,10],"data":[...]}]}` out.

use crate::bindings::{ElementType, ModelInfo, Tensor, TensorData};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct InputFile {
    inputs: Vec<JsonTensor>,
}

#[derive(Deserialize, Serialize)]
pub struct JsonTensor {
    pub name: String,
    pub shape: Vec<u32>,
    pub data: Vec<Value>,
}

#[derive(Serialize)]
struct OutputFile<'a> {
    outputs: &'a [JsonTensor],
}

/// Parses an input file, typing each tensor by the model's declared input type
/// (text inputs for category maps, int64 inputs, float32 otherwise).
pub fn parse_inputs(text: &str, info: &ModelInfo) -> Result<Vec<Tensor>> {
    let file: InputFile = serde_json::from_str(text)
        .context("malformed input JSON (expected {\"inputs\":[{\"name\",\"shape\",\"data\"}]})")?;
    file.inputs
        .into_iter()
        .map(|t| to_tensor(t, info))
        .collect()
}

/// The numeric tensors of an input file, without a model to type them
/// (float32, `null` → NaN); text tensors are left out.
pub fn parse_untyped(text: &str) -> Result<Vec<Tensor>> {
    let file: InputFile = serde_json::from_str(text)
        .context("malformed input JSON (expected {\"inputs\":[{\"name\",\"shape\",\"data\"}]})")?;
    Ok(file
        .inputs
        .into_iter()
        .filter_map(|t| {
            let data: Option<Vec<f32>> = t
                .data
                .iter()
                .map(|v| {
                    if v.is_null() {
                        Some(f32::NAN)
                    } else {
                        v.as_f64().map(|x| x as f32)
                    }
                })
                .collect();
            data.map(|d| Tensor {
                name: t.name,
                shape: t.shape,
                data: TensorData::Float32(d),
            })
        })
        .collect())
}

fn to_tensor(t: JsonTensor, info: &ModelInfo) -> Result<Tensor> {
    let ty = info
        .inputs
        .iter()
        .find(|s| s.name == t.name)
        .map(|s| s.element_type)
        .unwrap_or(ElementType::Float32);
    let name = &t.name;
    let data = match ty {
        ElementType::Text => TensorData::Text(
            t.data
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => bail!("input `{name}` element {i}: expected a string, got {other}"),
                })
                .collect::<Result<_>>()?,
        ),
        ElementType::Int64 | ElementType::Int32 => TensorData::Int64(
            t.data
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_i64().with_context(|| {
                        format!("input `{name}` element {i}: expected an integer, got {v}")
                    })
                })
                .collect::<Result<_>>()?,
        ),
        _ => TensorData::Float32(
            t.data
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN) as f32),
                    // JSON has no NaN: null (or "NaN") marks a missing value.
                    Value::Null => Ok(f32::NAN),
                    Value::String(s) if s.eq_ignore_ascii_case("nan") => Ok(f32::NAN),
                    other => bail!("input `{name}` element {i}: expected a number, got {other}"),
                })
                .collect::<Result<_>>()?,
        ),
    };
    Ok(Tensor {
        name: t.name,
        shape: t.shape,
        data,
    })
}

pub fn to_json(t: &Tensor) -> JsonTensor {
    let data = match &t.data {
        TensorData::Float32(v) => v
            .iter()
            .map(|x| {
                serde_json::Number::from_f64(*x as f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            })
            .collect(),
        TensorData::Int64(v) => v.iter().map(|x| Value::from(*x)).collect(),
        TensorData::Text(v) => v.iter().map(|x| Value::from(x.clone())).collect(),
    };
    JsonTensor {
        name: t.name.clone(),
        shape: t.shape.clone(),
        data,
    }
}

pub fn outputs_json(outputs: &[Tensor]) -> String {
    let json: Vec<JsonTensor> = outputs.iter().map(to_json).collect();
    serde_json::to_string(&OutputFile { outputs: &json }).expect("tensors serialise")
}

/// An element type's name in JSON and listings (`float32`, `int64`, `text`…).
pub fn type_name(t: ElementType) -> &'static str {
    match t {
        ElementType::Float32 => "float32",
        ElementType::Int64 => "int64",
        ElementType::Int32 => "int32",
        ElementType::Boolean => "bool",
        ElementType::Text => "text",
        ElementType::Other => "other",
    }
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
