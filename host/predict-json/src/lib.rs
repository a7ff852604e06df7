//! The predict wire format, one implementation for every side that speaks it:
//! `{"inputs":[{"name":"x","shape":[2,4],"data":[...]}]}` in,
//! `{"outputs":[{"name":"probs","shape":[2,10],"data":[...]}]}` out.
//!
//! `wasmops run`, `wasmops serve`, the device agent and the wasi:http
//! component (`build --http`, compiled into it) all parse requests and write
//! answers here, so a body means the same everywhere and a refusal is worded
//! the same. Inputs are typed by the model's declared input types ([`Kind`]);
//! JSON has no NaN, so `null` (or `"NaN"`) is a missing float and a
//! non-finite output is written as `null`.
//!
//! Tensors are plain ([`Tensor`], owned) or borrowed ([`TensorRef`]): each
//! side converts its own binding types (wasmtime's, wit-bindgen's) without
//! copying the data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A tensor's values, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    Float32(Vec<f32>),
    Int64(Vec<i64>),
    Text(Vec<String>),
}

/// A tensor as the wire carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<u32>,
    pub data: Data,
}

/// A tensor's values, borrowed.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    Float32(&'a [f32]),
    Int64(&'a [i64]),
    Text(&'a [String]),
}

impl Values<'_> {
    pub fn len(&self) -> usize {
        match self {
            Values::Float32(v) => v.len(),
            Values::Int64(v) => v.len(),
            Values::Text(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A tensor borrowed: name, shape and values.
#[derive(Debug, Clone, Copy)]
pub struct TensorRef<'a> {
    pub name: &'a str,
    pub shape: &'a [u32],
    pub data: Values<'a>,
}

impl Tensor {
    pub fn view(&self) -> TensorRef<'_> {
        TensorRef {
            name: &self.name,
            shape: &self.shape,
            data: match &self.data {
                Data::Float32(v) => Values::Float32(v),
                Data::Int64(v) => Values::Int64(v),
                Data::Text(v) => Values::Text(v),
            },
        }
    }
}

/// How an input's JSON values are read: by the model's declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Numbers; `null` or `"NaN"` for a missing value.
    Float32,
    /// Whole numbers (int64 and int32 inputs).
    Int64,
    /// Strings (category inputs).
    Text,
}

/// A declared element type (the WIT `element-type`), as each side's bindings
/// name it, mapped here once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    Float32,
    Int64,
    Int32,
    Boolean,
    Text,
    Other,
}

impl ElementType {
    /// The name in JSON and listings (`float32`, `int64`, `bool`, `text`…).
    pub fn name(self) -> &'static str {
        match self {
            ElementType::Float32 => "float32",
            ElementType::Int64 => "int64",
            ElementType::Int32 => "int32",
            ElementType::Boolean => "bool",
            ElementType::Text => "text",
            ElementType::Other => "other",
        }
    }

    /// How a request's values for an input of this type are read.
    pub fn kind(self) -> Kind {
        match self {
            ElementType::Text => Kind::Text,
            ElementType::Int64 | ElementType::Int32 => Kind::Int64,
            _ => Kind::Float32,
        }
    }
}

/// Why a model refused or failed a prediction (the WIT `predict-error`),
/// worded once for every side that answers with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    UnknownInput(&'a str),
    MissingInput(&'a str),
    BadShape(&'a str),
    BadType(&'a str),
    InvalidValue(&'a str),
    Inference(&'a str),
    NotInitialized,
}

impl Refusal<'_> {
    /// The caller's mistake (an HTTP 422), rather than the model's failure.
    pub fn is_bad_input(self) -> bool {
        !matches!(self, Refusal::Inference(_) | Refusal::NotInitialized)
    }
}

impl std::fmt::Display for Refusal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownInput(m) | Refusal::MissingInput(m) => write!(f, "bad input: {m}"),
            Refusal::BadShape(m) => write!(f, "bad input shape: {m}"),
            Refusal::BadType(m) => write!(f, "bad input type: {m}"),
            Refusal::InvalidValue(m) => write!(f, "invalid input value: {m}"),
            Refusal::Inference(m) => write!(f, "inference failed: {m}"),
            Refusal::NotInitialized => {
                f.write_str("the component has no model baked in (build it with `wasmops build`)")
            }
        }
    }
}

/// A request that is not the predict JSON, worded for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError(pub String);

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for JsonError {}

#[derive(Deserialize)]
struct InputFile {
    inputs: Vec<JsonTensor>,
}

/// One tensor in JSON form.
#[derive(Debug, Deserialize, Serialize)]
pub struct JsonTensor {
    pub name: String,
    pub shape: Vec<u32>,
    pub data: Vec<Value>,
}

#[derive(Serialize)]
struct OutputFile<'a> {
    outputs: &'a [JsonTensor],
}

fn read_file(text: &str) -> Result<InputFile, JsonError> {
    serde_json::from_str(text).map_err(|e| {
        JsonError(format!(
            "malformed input JSON (expected {{\"inputs\":[{{\"name\",\"shape\",\"data\"}}]}}): {e}"
        ))
    })
}

/// Parses a request, typing each tensor by `kind_of(input name)`.
pub fn parse_inputs(text: &str, kind_of: impl Fn(&str) -> Kind) -> Result<Vec<Tensor>, JsonError> {
    read_file(text)?
        .inputs
        .into_iter()
        .map(|t| {
            let kind = kind_of(&t.name);
            typed(t, kind)
        })
        .collect()
}

/// The numeric tensors of a request, without a model to type them (float32,
/// `null` → NaN); text tensors are left out.
pub fn parse_untyped(text: &str) -> Result<Vec<Tensor>, JsonError> {
    Ok(read_file(text)?
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
                data: Data::Float32(d),
            })
        })
        .collect())
}

fn typed(t: JsonTensor, kind: Kind) -> Result<Tensor, JsonError> {
    let name = &t.name;
    let bad = |i: usize, what: &str, v: &Value| {
        JsonError(format!(
            "input `{name}` element {i}: expected {what}, got {v}"
        ))
    };
    let data = match kind {
        Kind::Text => Data::Text(
            t.data
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(bad(i, "a string", other)),
                })
                .collect::<Result<_, _>>()?,
        ),
        Kind::Int64 => Data::Int64(
            t.data
                .iter()
                .enumerate()
                .map(|(i, v)| v.as_i64().ok_or_else(|| bad(i, "an integer", v)))
                .collect::<Result<_, _>>()?,
        ),
        Kind::Float32 => Data::Float32(
            t.data
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN) as f32),
                    Value::Null => Ok(f32::NAN),
                    Value::String(s) if s.eq_ignore_ascii_case("nan") => Ok(f32::NAN),
                    other => Err(bad(i, "a number", other)),
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(Tensor {
        name: t.name,
        shape: t.shape,
        data,
    })
}

/// A tensor in JSON form (non-finite floats as `null`).
pub fn to_json(t: TensorRef<'_>) -> JsonTensor {
    let data = match t.data {
        Values::Float32(v) => v
            .iter()
            .map(|x| {
                serde_json::Number::from_f64(*x as f64)
                    .map(Value::Number)
                    .unwrap_or(Value::Null)
            })
            .collect(),
        Values::Int64(v) => v.iter().map(|x| Value::from(*x)).collect(),
        Values::Text(v) => v.iter().map(|x| Value::from(x.clone())).collect(),
    };
    JsonTensor {
        name: t.name.to_string(),
        shape: t.shape.to_vec(),
        data,
    }
}

/// The answer: `{"outputs": [...]}`.
pub fn outputs_json<'a>(outputs: impl IntoIterator<Item = TensorRef<'a>>) -> String {
    let json: Vec<JsonTensor> = outputs.into_iter().map(to_json).collect();
    serde_json::to_string(&OutputFile { outputs: &json }).expect("tensors serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_inputs_by_kind_and_words_refusals() {
        let text = r#"{"inputs":[{"name":"x","shape":[1,3],"data":[1,null,"NaN"]},
                                {"name":"c","shape":[1],"data":["a"]},
                                {"name":"k","shape":[1],"data":[7]}]}"#;
        let kind = |n: &str| match n {
            "c" => Kind::Text,
            "k" => Kind::Int64,
            _ => Kind::Float32,
        };
        let t = parse_inputs(text, kind).unwrap();
        let Data::Float32(x) = &t[0].data else {
            panic!("{t:?}")
        };
        assert_eq!(x[0], 1.0);
        assert!(x[1].is_nan() && x[2].is_nan());
        assert_eq!(t[1].data, Data::Text(vec!["a".into()]));
        assert_eq!(t[2].data, Data::Int64(vec![7]));
        let e = parse_inputs(
            r#"{"inputs":[{"name":"x","shape":[1],"data":["a"]}]}"#,
            kind,
        )
        .unwrap_err();
        assert_eq!(e.0, "input `x` element 0: expected a number, got \"a\"");
        let e = parse_inputs("{}", kind).unwrap_err();
        assert!(e.0.starts_with("malformed input JSON"), "{e}");
    }

    #[test]
    fn writes_non_finite_outputs_as_null() {
        let t = Tensor {
            name: "p".into(),
            shape: vec![2],
            data: Data::Float32(vec![0.5, f32::INFINITY]),
        };
        assert_eq!(
            outputs_json([t.view()]),
            r#"{"outputs":[{"name":"p","shape":[2],"data":[0.5,null]}]}"#
        );
    }
}
