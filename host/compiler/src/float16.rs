//! Float16 models, computed in f32.
//!
//! Exporters halve a model by storing its weights and activations as IEEE
//! half floats (onnxconverter-common's `convert_float_to_float16`, PyTorch's
//! `.half()` before export). wasm has no half-float arithmetic, tract's wasm
//! kernels are f32, and tract-onnx 0.23 cannot even type a float16 `Gemm`
//! (it expands `alpha`/`beta` as f32 constants). onnxruntime's CPU provider
//! does the same as this pass for most ops: it casts to f32, computes, and casts
//! back.
//!
//! So, on the protobuf and before tract reads it, every float16 is widened to
//! float32: initializers and constant attributes (their values exactly, every
//! half float is an f32), `Cast`/`CastLike` targets, and the declared types of
//! graph inputs, outputs and intermediate values, in subgraphs too. The
//! component then takes and returns f32 tensors (the model interface, WIT
//! `tensor-data`, has no half floats), and its outputs differ from
//! onnxruntime's float16 outputs by the final rounding to half precision
//! (README, "Float16 models").

use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, TensorProto, type_proto};
use tract_onnx::prelude::f16;

use crate::BuildError;

const F16: i32 = DataType::Float16 as i32;
const F32: i32 = DataType::Float as i32;

/// Widens every float16 in `proto` to float32; returns how many tensors and
/// types it changed (0: the model has no float16 in it).
pub fn widen(proto: &mut ModelProto) -> Result<usize, BuildError> {
    match proto.graph.as_mut() {
        Some(graph) => widen_graph(graph),
        None => Ok(0),
    }
}

fn widen_graph(graph: &mut GraphProto) -> Result<usize, BuildError> {
    let mut changed = 0;
    for tensor in &mut graph.initializer {
        changed += widen_tensor(tensor)?;
    }
    for value in graph
        .input
        .iter_mut()
        .chain(graph.output.iter_mut())
        .chain(graph.value_info.iter_mut())
    {
        if let Some(type_proto::Value::TensorType(t)) =
            value.r#type.as_mut().and_then(|t| t.value.as_mut())
            && t.elem_type == F16
        {
            t.elem_type = F32;
            changed += 1;
        }
    }
    for node in &mut graph.node {
        let cast = node.domain.is_empty() && node.op_type == "Cast";
        for attribute in &mut node.attribute {
            if cast && attribute.name == "to" && attribute.i == F16 as i64 {
                attribute.i = F32 as i64;
                changed += 1;
            }
            changed += widen_attribute(attribute)?;
        }
    }
    Ok(changed)
}

fn widen_attribute(attribute: &mut AttributeProto) -> Result<usize, BuildError> {
    let mut changed = 0;
    for tensor in attribute.t.iter_mut().chain(attribute.tensors.iter_mut()) {
        changed += widen_tensor(tensor)?;
    }
    for graph in attribute.g.iter_mut().chain(attribute.graphs.iter_mut()) {
        changed += widen_graph(graph)?;
    }
    Ok(changed)
}

/// A float16 tensor's values as float32 (from `raw_data`, little-endian, or
/// from `int32_data`, one bit pattern each, as the ONNX spec stores them).
fn widen_tensor(tensor: &mut TensorProto) -> Result<usize, BuildError> {
    if tensor.data_type != F16 {
        return Ok(0);
    }
    let bad = |problem: String| {
        BuildError::MalformedOnnx(format!("float16 tensor `{}`: {problem}", tensor.name))
    };
    if tensor.data_location == Some(1) {
        return Err(bad(
            "its data is in an external file; save the model with its weights inside".into(),
        ));
    }
    let count: i64 = tensor.dims.iter().product();
    let values: Vec<f32> = if !tensor.raw_data.is_empty() {
        if !tensor.raw_data.len().is_multiple_of(2) {
            return Err(bad(format!(
                "{} bytes of raw data, not a whole number of half floats",
                tensor.raw_data.len()
            )));
        }
        tensor
            .raw_data
            .chunks_exact(2)
            .map(|b| f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32())
            .collect()
    } else {
        tensor
            .int32_data
            .iter()
            .map(|&bits| {
                u16::try_from(bits)
                    .map(|bits| f16::from_bits(bits).to_f32())
                    .map_err(|_| bad(format!("{bits} is not a half float's bit pattern")))
            })
            .collect::<Result<_, _>>()?
    };
    if values.len() as i64 != count {
        return Err(bad(format!(
            "{} values for a shape {:?} of {count}",
            values.len(),
            tensor.dims
        )));
    }
    tensor.data_type = F32;
    tensor.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    tensor.int32_data.clear();
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{NodeProto, TypeProto, ValueInfoProto};

    fn half_tensor(name: &str, values: &[f32], raw: bool) -> TensorProto {
        let bits: Vec<u16> = values.iter().map(|v| f16::from_f32(*v).to_bits()).collect();
        TensorProto {
            name: name.into(),
            dims: vec![values.len() as i64],
            data_type: F16,
            raw_data: if raw {
                bits.iter().flat_map(|b| b.to_le_bytes()).collect()
            } else {
                vec![]
            },
            int32_data: if raw {
                vec![]
            } else {
                bits.iter().map(|&b| b as i32).collect()
            },
            ..Default::default()
        }
    }

    fn value(name: &str, elem_type: i32) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn f32s(t: &TensorProto) -> Vec<f32> {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn every_half_float_becomes_the_same_f32() {
        let values = [0.0, -1.5, 0.333_251_95, 65504.0, 6.0e-8];
        let mut graph = GraphProto {
            initializer: vec![
                half_tensor("w", &values, true),
                half_tensor("b", &values, false),
            ],
            input: vec![value("x", F16)],
            output: vec![value("y", F16), value("label", DataType::Int64 as i32)],
            node: vec![
                NodeProto {
                    op_type: "Cast".into(),
                    attribute: vec![AttributeProto {
                        name: "to".into(),
                        i: F16 as i64,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                NodeProto {
                    op_type: "Constant".into(),
                    attribute: vec![AttributeProto {
                        name: "value".into(),
                        t: Some(half_tensor("c", &[2.0], true)),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let mut proto = ModelProto {
            graph: Some(graph.clone()),
            ..Default::default()
        };
        assert_eq!(widen(&mut proto).unwrap(), 6);
        graph = proto.graph.unwrap();
        let expected: Vec<f32> = values.iter().map(|v| f16::from_f32(*v).to_f32()).collect();
        for t in &graph.initializer {
            assert_eq!(t.data_type, F32);
            assert_eq!(f32s(t), expected, "{}", t.name);
        }
        assert_eq!(graph.node[0].attribute[0].i, F32 as i64);
        assert_eq!(f32s(graph.node[1].attribute[0].t.as_ref().unwrap()), [2.0]);
        let elem = |v: &ValueInfoProto| match v.r#type.as_ref().unwrap().value.as_ref().unwrap() {
            type_proto::Value::TensorType(t) => t.elem_type,
        };
        assert_eq!(elem(&graph.input[0]), F32);
        assert_eq!(elem(&graph.output[0]), F32);
        assert_eq!(elem(&graph.output[1]), DataType::Int64 as i32);
    }

    #[test]
    fn a_float_model_is_left_alone() {
        let mut proto = ModelProto {
            graph: Some(GraphProto {
                input: vec![value("x", F32)],
                ..Default::default()
            }),
            ..Default::default()
        };
        let before = proto.clone();
        assert_eq!(widen(&mut proto).unwrap(), 0);
        assert_eq!(proto, before);
    }

    #[test]
    fn malformed_half_floats_are_named() {
        let mut short = half_tensor("w", &[1.0, 2.0], true);
        short.dims = vec![3];
        let mut odd = half_tensor("odd", &[1.0], true);
        odd.raw_data.push(0);
        let mut wide = half_tensor("wide", &[1.0], false);
        wide.int32_data[0] = 70_000;
        for (t, says) in [
            (short, "2 values for a shape [3]"),
            (odd, "3 bytes of raw data"),
            (wide, "70000 is not a half float"),
        ] {
            let name = t.name.clone();
            let mut proto = ModelProto {
                graph: Some(GraphProto {
                    initializer: vec![t],
                    ..Default::default()
                }),
                ..Default::default()
            };
            let e = widen(&mut proto).unwrap_err().to_string();
            assert!(e.contains(&format!("`{name}`")) && e.contains(says), "{e}");
        }
    }
}
