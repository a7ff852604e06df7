//! ONNX in: parse with tract plus wasmops' extra ops, fix input shapes, and
//! produce a decluttered `TypedModel`. Both `build` and the native benchmark use it.

use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::internal::{Factoid, InferenceFact};

use crate::BuildError;

/// A user's `--input-shape NAME=1,3,224,224` (a `?` or a name makes that axis symbolic).
#[derive(Debug, Clone, PartialEq)]
pub struct InputShape {
    pub name: String,
    pub dims: Vec<Option<usize>>,
}

impl std::str::FromStr for InputShape {
    type Err = String;
    fn from_str(s: &str) -> Result<InputShape, String> {
        let (name, dims) = s
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=D1,D2,... got {s:?}"))?;
        let dims = dims
            .split(',')
            .map(|d| match d.trim() {
                "?" | "N" | "n" | "batch" => Ok(None),
                d => d
                    .parse::<usize>()
                    .map(Some)
                    .map_err(|_| format!("bad dimension {d:?} in {s:?}")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InputShape {
            name: name.trim().to_string(),
            dims,
        })
    }
}

/// Removes `ZipMap` (scikit-learn classifiers export it by default): it turns the
/// probability tensor into a list of maps that no tensor runtime can return. The
/// probabilities come out as a plain `[N, classes]` tensor instead.
fn strip_zipmap(proto: &mut ModelProto) -> bool {
    let Some(graph) = proto.graph.as_mut() else {
        return false;
    };
    let mut changed = false;
    for node in graph.node.iter_mut().filter(|n| n.op_type == "ZipMap") {
        node.op_type = "Identity".into();
        node.domain = String::new();
        node.attribute.clear();
        changed = true;
    }
    changed
}

/// tract 0.23 takes a binary tree classifier's label from the argmax of its
/// single raw score column, so it always answers the first class. The label is
/// rewired here as `Gather(classlabels, ArgMax(probabilities))`, which is what
/// onnxruntime computes for every post transform (all are monotonic).
fn rewire_tree_classifier_labels(proto: &mut ModelProto) {
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut added_nodes = vec![];
    for (ix, node) in graph
        .node
        .iter_mut()
        .enumerate()
        .filter(|(_, n)| n.op_type == "TreeEnsembleClassifier" && n.output.len() == 2)
    {
        let Some(labels) = node
            .attribute
            .iter()
            .find(|a| a.name == "classlabels_int64s")
            .map(|a| a.ints.clone())
        else {
            continue;
        };
        let unused = format!("{}__wasmops_unused_label", node.output[0]);
        let label = std::mem::replace(&mut node.output[0], unused);
        let probabilities = node.output[1].clone();
        let prefix = format!("wasmops_tree_label_{ix}");
        graph.initializer.push(TensorProto {
            name: format!("{prefix}_classes"),
            dims: vec![labels.len() as i64],
            data_type: 7,
            int64_data: labels,
            ..Default::default()
        });
        let attr = |name: &str, i: i64| AttributeProto {
            name: name.into(),
            i,
            r#type: AttributeType::Int as i32,
            ..Default::default()
        };
        added_nodes.push(NodeProto {
            name: format!("{prefix}_argmax"),
            op_type: "ArgMax".into(),
            input: vec![probabilities],
            output: vec![format!("{prefix}_index")],
            attribute: vec![attr("axis", 1), attr("keepdims", 0)],
            ..Default::default()
        });
        added_nodes.push(NodeProto {
            name: format!("{prefix}_gather"),
            op_type: "Gather".into(),
            input: vec![format!("{prefix}_classes"), format!("{prefix}_index")],
            output: vec![label],
            attribute: vec![attr("axis", 0)],
            ..Default::default()
        });
    }
    graph.node.extend(added_nodes);
}

/// The numeric rewrites on the protobuf, in order: float16 widened to f32
/// ([`crate::float16`]), then quantisation parameters checked and QDQ
/// convolutions and matrix products fused ([`crate::qdq`]). Returns how many
/// tensors were widened and how many ops fused.
fn rewrite_numerics(proto: &mut ModelProto) -> Result<(usize, usize), BuildError> {
    let widened = crate::float16::widen(proto)?;
    crate::qdq::check_parameters(proto)?;
    let fused = crate::qdq::fuse_convolutions(proto)? + crate::qdq::fuse_matmuls(proto)?;
    Ok((widened, fused))
}

/// What `build` tells the user it did to the model's numbers (nothing for an
/// f32 model); the same rewrites as [`load_onnx`] makes.
pub fn conversion_notes(bytes: &[u8]) -> Vec<String> {
    let Ok(mut proto) = decode(bytes) else {
        return vec![];
    };
    let Ok((widened, fused)) = rewrite_numerics(&mut proto) else {
        return vec![];
    };
    let mut notes = vec![];
    if widened > 0 {
        notes.push(format!(
            "float16 model: computed in f32 ({widened} half-float tensors and types widened); \
             it takes and returns f32 tensors"
        ));
    }
    if fused > 0 {
        notes.push(format!(
            "int8 model: {fused} quantize/dequantize convolutions and matrix products run on integer kernels \
             (size and speed against the f32 model: README, Performance → Int8 models)"
        ));
    }
    notes
}

fn decode(bytes: &[u8]) -> Result<ModelProto, BuildError> {
    use prost::Message;
    ModelProto::decode(bytes)
        .map_err(|e| BuildError::MalformedOnnx(format!("not a valid ONNX protobuf: {e}")))
}

/// tract names a node by its ONNX name, else by its first output, and its
/// inputs and constants by their tensor names, and refuses a model where two
/// of those names are the same. ONNX only asks tensor names to be unique, and
/// exporters do reuse them as node names (onnxconverter-common names the cast
/// it appends to output `probs` `_cast_to_probs`, the name of its input):
/// such a node is renamed `name#index`.
fn unique_node_names(proto: &mut ModelProto) {
    let Some(graph) = proto.graph.as_mut() else {
        return;
    };
    let mut taken: std::collections::HashSet<String> = graph
        .input
        .iter()
        .map(|i| i.name.clone())
        .chain(graph.initializer.iter().map(|t| t.name.clone()))
        .collect();
    for (ix, node) in graph.node.iter_mut().enumerate() {
        let name = if node.name.is_empty() {
            node.output.first().cloned().unwrap_or_default()
        } else {
            node.name.clone()
        };
        if name.is_empty() {
            continue;
        }
        if taken.insert(name.clone()) {
            continue;
        }
        let mut renamed = format!("{name}#{ix}");
        while !taken.insert(renamed.clone()) {
            renamed.push('_');
        }
        node.name = renamed;
    }
}

pub fn load_onnx(bytes: &[u8], shapes: &[InputShape]) -> Result<TypedModel, BuildError> {
    let mut proto = decode(bytes)?;
    if proto.graph.as_ref().is_none_or(|g| g.node.is_empty()) {
        return Err(BuildError::MalformedOnnx(
            "the ONNX file has no graph nodes".into(),
        ));
    }
    let zipmap = strip_zipmap(&mut proto);
    rewire_tree_classifier_labels(&mut proto);
    rewrite_numerics(&mut proto)?;
    unique_node_names(&mut proto);
    if !shapes.is_empty()
        && let Some(graph) = proto.graph.as_mut()
    {
        // Shapes of intermediate values are hints; written for the exported
        // input shape (a symbolic batch `N`, say), they contradict the shape
        // given here (batch 1 for a per-sample CNN). tract infers them anyway.
        graph.value_info.clear();
    }
    let mut onnx = tract_onnx::onnx();
    crate::onnx_ml::register(&mut onnx.op_register);
    onnx.ignore_output_types = zipmap;
    let parsed = onnx
        .parse(&proto, None)
        .map_err(|e| BuildError::MalformedOnnx(format!("{e:?}")))?;
    let mut model = parsed.model;

    for node in &model.nodes {
        let op = node.op.name();
        if let Some(op_type) = op
            .strip_prefix("Unimplemented(")
            .and_then(|s| s.strip_suffix(')'))
        {
            return Err(BuildError::UnsupportedOp {
                op: op_type.to_string(),
                node: node.name.clone(),
            });
        }
    }

    let input_names: Vec<String> = model
        .inputs
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect();
    if let Some(s) = shapes.iter().find(|s| !input_names.contains(&s.name)) {
        return Err(BuildError::BadInputShape(format!(
            "--input-shape names `{}` but the model's inputs are {input_names:?}",
            s.name
        )));
    }
    let symbols = model.symbols.clone();
    for (ix, name) in input_names.iter().enumerate() {
        let fact = model.input_fact(ix).map_err(tract_err)?.clone();
        let dt = fact.datum_type.concretize().unwrap_or(f32::datum_type());
        let given = shapes.iter().find(|s| &s.name == name);
        let rank = match (given, fact.shape.rank().concretize()) {
            (Some(s), _) => s.dims.len(),
            (None, Some(r)) => r as usize,
            (None, None) => {
                return Err(BuildError::BadInputShape(format!(
                    "input `{name}` has no known rank; pass --input-shape {name}=N,..."
                )))?;
            }
        };
        let dims: TVec<TDim> = (0..rank)
            .map(|axis| {
                let user = given.map(|s| s.dims[axis]);
                let onnx_dim = fact.shape.dim(axis).and_then(|d| d.concretize());
                match (user, onnx_dim) {
                    (Some(Some(d)), _) => d.to_dim(),
                    (Some(None), _) | (None, None) => {
                        let sym = if axis == 0 {
                            "N".to_string()
                        } else {
                            format!("{name}_{axis}")
                        };
                        symbols.sym(&sym).to_dim()
                    }
                    (None, Some(d)) => d,
                }
            })
            .collect();
        model
            .set_input_fact(ix, InferenceFact::dt_shape(dt, dims))
            .map_err(tract_err)?;
    }
    let typed = model
        .into_typed()
        .map_err(|e| BuildError::Unsupported(format!("{e:?}")))?;
    let mut model = typed
        .into_decluttered()
        .map_err(|e| BuildError::Unsupported(format!("{e:?}")))?;
    // tract-onnx's dynamic quantisation op has no NNEF form; wasmops_quant's
    // computes the same and has one.
    for node in model.nodes.iter_mut() {
        if node.op.name() == "DynamicQuantizeLinearU8" {
            node.op = Box::new(wasmops_quant::DynamicQuantize);
        }
    }
    wasmops_quant::check(&model).map_err(|e| BuildError::MalformedOnnx(format!("{e}")))?;
    Ok(model)
}

/// The model as the component runs it: [`load_onnx`], then, for a convolutional
/// model whose samples are independent along a symbolic batch (see
/// `wasmops_batching::per_sample_batch`), loaded again with batch 1 and marked to
/// run a batch sample by sample. tract optimises convolutions far better for a
/// concrete batch.
pub fn load_model(bytes: &[u8], shapes: &[InputShape]) -> Result<TypedModel, BuildError> {
    let model = load_onnx(bytes, shapes)?;
    let Some(batch) = wasmops_batching::per_sample_batch(&model) else {
        return Ok(model);
    };
    let batch_one = (0..model.inputs.len())
        .map(|ix| {
            let fact = model.input_fact(ix).map_err(tract_err)?;
            let dims = std::iter::once(Some(1))
                .chain(
                    fact.shape
                        .iter()
                        .skip(1)
                        .map(|d| d.to_i64().ok().map(|d| d as usize)),
                )
                .collect();
            Ok(InputShape {
                name: model.node(model.inputs[ix].node).name.clone(),
                dims,
            })
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    let mut one = load_onnx(bytes, &batch_one)?;
    wasmops_batching::per_sample(&mut one, &batch);
    Ok(one)
}

fn tract_err(e: TractError) -> BuildError {
    BuildError::Unsupported(format!("{e:?}"))
}

/// Serialises a decluttered model as a tract NNEF archive the guest can read.
pub fn to_nnef(model: &TypedModel) -> Result<Vec<u8>, BuildError> {
    use tract_onnx_opl::WithOnnx;
    let nnef = tract_nnef::nnef()
        .with_onnx()
        .with_registry(wasmops_quant::registry());
    let mut out = vec![];
    // Deterministic tar headers (fixed mtime): same model, same bytes, same component.
    nnef.write_to_tar_with_config(model, &mut out, false, true)
        .map_err(|e| BuildError::Unsupported(format!("cannot express the model in NNEF: {e:?}")))?;
    Ok(out)
}
