//! Int8 convolutions from QDQ models.
//!
//! onnxruntime's static quantiser (QDQ format) writes a quantised convolution
//! as float ops between quantize/dequantize pairs:
//!
//! ```text
//! x_q ─DequantizeLinear─┐
//! w_q ─DequantizeLinear─┼─ Conv ─ QuantizeLinear ─ y_q
//! b_q ─DequantizeLinear─┘
//! ```
//!
//! Read as written, tract folds the weights' dequantisation into f32 constants
//! and runs a float convolution with quantisation round trips around it:
//! the component is no smaller and slower than the f32 model. onnxruntime
//! itself fuses the pattern into an integer convolution, and so does this
//! pass, on the protobuf, before tract reads it: each such group becomes one
//! `QLinearConv` over the int8 weights, which tract runs with its integer
//! kernels and keeps as int8 in the component. Grouped (depthwise)
//! convolutions are left as written: tract's f32 depthwise kernel beats its
//! integer path, which has no depthwise kernel.
//!
//! The fused node computes what onnxruntime computes: the same inputs,
//! scales and zero points; the bias is requantised to `x_scale · w_scale`
//! (what `QLinearConv` requires; onnxruntime's quantiser already writes it
//! so, and then the values do not change).
//!
//! A dense layer (`Gemm`, `MatMul`) over dequantised int8 weights becomes
//! `MatMulInteger` + an int32 bias + one rescale to f32 ([`fuse_matmuls`]):
//! in MobileNetV2 the classifier holds 43% of the weights, which would
//! otherwise be stored as f32.

use std::collections::HashMap;

use tract_onnx::pb::{ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::*;

use crate::BuildError;

/// Refuses a quantize/dequantize node whose constant scale or zero point
/// cannot mean anything, naming the node: a scale that is not finite and
/// positive, a zero point of another type than the quantised values (int8,
/// uint8, or int32 for a dequantised bias), or scales and zero points of
/// different lengths.
pub fn check_parameters(proto: &ModelProto) -> Result<(), BuildError> {
    let Some(graph) = proto.graph.as_ref() else {
        return Ok(());
    };
    let initializers = initializers(graph);
    let load = |name: &str| constant(&initializers, name);
    for node in &graph.node {
        let op = node.op_type.as_str();
        if !node.domain.is_empty() || !matches!(op, "QuantizeLinear" | "DequantizeLinear") {
            continue;
        }
        let what = |problem: String| {
            BuildError::MalformedOnnx(format!(
                "{op} node `{}` ({}): {problem}",
                node.name,
                node.output.first().map(String::as_str).unwrap_or("")
            ))
        };
        let scale = match node.input.get(1).map(|n| load(n)).transpose()?.flatten() {
            Some(scale) => scale,
            None => continue,
        };
        if scale.datum_type() != f32::datum_type() {
            return Err(what(format!(
                "its scale is {:?}; ONNX scales are float",
                scale.datum_type()
            )));
        }
        if let Some(bad) = bad_scale(&floats(&scale)?) {
            return Err(what(format!(
                "its scale `{}` holds {bad}; scales must be finite and positive",
                node.input[1]
            )));
        }
        let zero_point = node
            .input
            .get(2)
            .filter(|n| !n.is_empty())
            .map(|n| load(n))
            .transpose()?
            .flatten();
        if let Some(zp) = zero_point {
            let allowed: &[DatumType] = if op == "DequantizeLinear" {
                &[DatumType::I8, DatumType::U8, DatumType::I32]
            } else {
                &[DatumType::I8, DatumType::U8]
            };
            if !allowed.contains(&zp.datum_type()) {
                return Err(what(format!(
                    "its zero point is {:?}; it must be {allowed:?}",
                    zp.datum_type()
                )));
            }
            if zp.len() != scale.len() {
                return Err(what(format!(
                    "{} zero points for {} scales",
                    zp.len(),
                    scale.len()
                )));
            }
            if op == "DequantizeLinear"
                && let Some(values) = load(&node.input[0])?
                && values.datum_type() != zp.datum_type()
            {
                return Err(what(format!(
                    "its values are {:?} but its zero point is {:?}",
                    values.datum_type(),
                    zp.datum_type()
                )));
            }
        }
    }
    Ok(())
}

/// Fuses every `DequantizeLinear → Conv → QuantizeLinear` group into a
/// `QLinearConv`; returns how many it fused. A group that does not fit
/// (activations quantised per channel, weights that are not constants, a
/// convolution whose output is used elsewhere too) stays as it is.
pub fn fuse_convolutions(proto: &mut ModelProto) -> Result<usize, BuildError> {
    rewrite(proto, |ctx, ix, node| {
        if node.op_type != "Conv" || !node.domain.is_empty() {
            return Ok(None);
        }
        ctx.conv_group(ix, node)
    })
}

/// Turns every `Gemm`/`MatMul` over a dequantised (per tensor) input and
/// dequantised constant int8 weights (per tensor, or per output column with
/// zero points of 0) into integer ops: `MatMulInteger` on the int8 values,
/// the bias added in int32 (requantised to `x_scale · w_scale`, as
/// onnxruntime's `QGemm` adds it), then one multiply back to f32. Whatever
/// read the float output reads the same value; the weights stay int8.
/// Returns how many it rewrote; the others stay float.
pub fn fuse_matmuls(proto: &mut ModelProto) -> Result<usize, BuildError> {
    rewrite(proto, |ctx, ix, node| {
        if !matches!(node.op_type.as_str(), "Gemm" | "MatMul") || !node.domain.is_empty() {
            return Ok(None);
        }
        ctx.matmul_group(ix, node)
    })
}

/// Runs `group` on every node of the graph, then applies the groups it found
/// (node replaced by a list, nodes removed, initializers added).
fn rewrite(
    proto: &mut ModelProto,
    group: impl Fn(&Context, usize, &NodeProto) -> Result<Option<Group>, BuildError>,
) -> Result<usize, BuildError> {
    let Some(graph) = proto.graph.as_mut() else {
        return Ok(0);
    };
    let initializers = initializers(graph);
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(ix, n)| n.output.iter().map(move |o| (o.as_str(), ix)))
        .collect();
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (ix, n) in graph.node.iter().enumerate() {
        for i in &n.input {
            consumers.entry(i.as_str()).or_default().push(ix);
        }
    }
    for o in &graph.output {
        consumers
            .entry(o.name.as_str())
            .or_default()
            .push(usize::MAX);
    }
    let ctx = Context {
        nodes: &graph.node,
        initializers: &initializers,
        producer: &producer,
        consumers: &consumers,
    };
    let mut found = vec![];
    for (ix, node) in graph.node.iter().enumerate() {
        if let Some(g) = group(&ctx, ix, node)? {
            found.push(g);
        }
    }
    let count = found.len();
    let mut replace: HashMap<usize, Vec<NodeProto>> = HashMap::new();
    let mut remove = std::collections::HashSet::new();
    let mut added = vec![];
    for g in found {
        added.extend(g.initializers);
        replace.insert(g.node, g.with);
        remove.extend(g.remove);
    }
    graph.initializer.extend(added);
    let nodes = std::mem::take(&mut graph.node);
    graph.node = nodes
        .into_iter()
        .enumerate()
        .filter(|(ix, _)| !remove.contains(ix))
        .flat_map(|(ix, n)| replace.remove(&ix).unwrap_or_else(|| vec![n]))
        .collect();
    Ok(count)
}

struct Context<'a> {
    nodes: &'a [NodeProto],
    initializers: &'a HashMap<&'a str, &'a TensorProto>,
    producer: &'a HashMap<&'a str, usize>,
    consumers: &'a HashMap<&'a str, Vec<usize>>,
}

/// One fusion: the node at `node` becomes the nodes `with`, the node at
/// `remove` (a `QuantizeLinear` folded in) goes, `initializers` are added.
struct Group {
    node: usize,
    with: Vec<NodeProto>,
    remove: Option<usize>,
    initializers: Vec<TensorProto>,
}

impl Context<'_> {
    fn dequantize(&self, tensor: &str) -> Option<&NodeProto> {
        let n = &self.nodes[*self.producer.get(tensor)?];
        (n.op_type == "DequantizeLinear" && n.domain.is_empty() && n.input.len() == 3).then_some(n)
    }

    fn constant(&self, name: &str) -> Result<Option<Tensor>, BuildError> {
        constant(self.initializers, name)
    }

    /// The values, scale and zero point of a `DequantizeLinear` whose three
    /// inputs are all constants.
    fn dequantized_constant(
        &self,
        dq: &NodeProto,
    ) -> Result<Option<(Tensor, Tensor, Tensor)>, BuildError> {
        let (Some(values), Some(scale), Some(zero)) = (
            self.constant(&dq.input[0])?,
            self.constant(&dq.input[1])?,
            self.constant(&dq.input[2])?,
        ) else {
            return Ok(None);
        };
        Ok(Some((values, scale, zero)))
    }

    /// A scale and zero point that are constants of one element each.
    fn per_tensor(&self, node: &NodeProto) -> Result<bool, BuildError> {
        for name in &node.input[1..3] {
            match self.constant(name)? {
                Some(t) if t.len() == 1 => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    fn conv_group(&self, ix: usize, conv: &NodeProto) -> Result<Option<Group>, BuildError> {
        // Grouped (depthwise) convolutions stay float: tract has no integer
        // depthwise kernel and runs a quantised one through im2col and a
        // matrix product per group, while its f32 depthwise kernel takes the
        // dequantised weights (folded into constants: 3×3×C values, a few kB).
        // Measured natively with a per-node probe on the MobileNetV2-style
        // int8 fixture: 49 → 17 ms a run, outputs as close to onnxruntime's.
        if attr_int(conv, "group").unwrap_or(1) > 1 {
            return Ok(None);
        }
        let (Some(x), Some(w)) = (
            conv.input.first().and_then(|i| self.dequantize(i)),
            conv.input.get(1).and_then(|i| self.dequantize(i)),
        ) else {
            return Ok(None);
        };
        let out = conv.output[0].as_str();
        let Some(&[q]) = self.consumers.get(out).map(|c| c.as_slice()) else {
            return Ok(None);
        };
        let Some(quantize) = self.nodes.get(q) else {
            return Ok(None);
        };
        if quantize.op_type != "QuantizeLinear"
            || !quantize.domain.is_empty()
            || quantize.input.len() != 3
            || !self.per_tensor(x)?
            || !self.per_tensor(quantize)?
        {
            return Ok(None);
        }
        // Weights: int8/uint8 constants, one scale and zero point or one per
        // output channel (axis 0, the only axis QLinearConv takes).
        let Some((weights, w_scale, w_zero)) = self.dequantized_constant(w)? else {
            return Ok(None);
        };
        let channels = weights.shape().first().copied().unwrap_or(0);
        let axis = attr_int(w, "axis").unwrap_or(1);
        let per_channel = w_scale.len() > 1 || w_zero.len() > 1;
        if !matches!(weights.datum_type(), DatumType::I8 | DatumType::U8)
            || (per_channel
                && (axis != 0 || w_scale.len() != channels || w_zero.len() != w_scale.len()))
        {
            return Ok(None);
        }
        let x_scale = self.constant(&x.input[1])?.map(scalar_f32).transpose()?;
        let Some(x_scale) = x_scale else {
            return Ok(None);
        };
        let w_scales = floats(&w_scale)?;

        let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => {
                match self.requantised_bias(b, x_scale, &w_scales, channels, out, "convolution")? {
                    Some(bias) => Some(bias),
                    None => return Ok(None),
                }
            }
        };
        let mut inputs = vec![
            x.input[0].clone(),
            x.input[1].clone(),
            x.input[2].clone(),
            w.input[0].clone(),
            w.input[1].clone(),
            w.input[2].clone(),
            quantize.input[1].clone(),
            quantize.input[2].clone(),
        ];
        if let Some(b) = &bias {
            inputs.push(b.name.clone());
        }
        let node = NodeProto {
            name: format!("{}__qlinear", quantize.output[0]),
            op_type: "QLinearConv".into(),
            input: inputs,
            output: vec![quantize.output[0].clone()],
            attribute: conv.attribute.clone(),
            ..Default::default()
        };
        Ok(Some(Group {
            node: ix,
            with: vec![node],
            remove: Some(q),
            initializers: bias.into_iter().collect(),
        }))
    }

    fn matmul_group(&self, ix: usize, mm: &NodeProto) -> Result<Option<Group>, BuildError> {
        let gemm = mm.op_type == "Gemm";
        let (Some(x), Some(w)) = (
            mm.input.first().and_then(|i| self.dequantize(i)),
            mm.input.get(1).and_then(|i| self.dequantize(i)),
        ) else {
            return Ok(None);
        };
        let float_attr = |name: &str| mm.attribute.iter().find(|a| a.name == name).map(|a| a.f);
        let trans_b = gemm && attr_int(mm, "transB") == Some(1);
        if gemm
            && (attr_int(mm, "transA").unwrap_or(0) != 0
                || float_attr("alpha").unwrap_or(1.0) != 1.0
                || float_attr("beta").unwrap_or(1.0) != 1.0)
        {
            return Ok(None);
        }
        if !self.per_tensor(x)? {
            return Ok(None);
        }
        let (Some((weights, w_scale, w_zero)), Some(x_scale), Some(x_zero)) = (
            self.dequantized_constant(w)?,
            self.constant(&x.input[1])?,
            self.constant(&x.input[2])?,
        ) else {
            return Ok(None);
        };
        let dt = weights.datum_type();
        if weights.rank() != 2 || !matches!(dt, DatumType::I8 | DatumType::U8) {
            return Ok(None);
        }
        // Output columns: axis 1 of [K, N] weights, axis 0 when Gemm reads them transposed.
        let (n_axis, columns) = if trans_b {
            (0, weights.shape()[0])
        } else {
            (1, weights.shape()[1])
        };
        let w_zeros = values::<i32>(&w_zero, "a zero point")?;
        if w_scale.len() > 1 {
            let axis = attr_int(w, "axis").unwrap_or(1);
            if (axis != n_axis as i64 && axis != n_axis as i64 - 2)
                || w_scale.len() != columns
                || w_zeros.iter().any(|z| *z != 0)
            {
                return Ok(None);
            }
        } else if w_zeros.len() != 1 {
            return Ok(None);
        }
        let x_scale = scalar_f32(x_scale)?;
        let w_scales = floats(&w_scale)?;
        let out = mm.output[0].as_str();
        let name = |what: &str| format!("{out}__int8_{what}");

        let mut initializers = vec![];
        let weights_name = if trans_b {
            initializers.push(int8_tensor(
                &name("weights"),
                &weights.permute_axes(&[1, 0]).map_err(|e| {
                    BuildError::MalformedOnnx(format!("weights `{}`: {e}", w.input[0]))
                })?,
            )?);
            name("weights")
        } else {
            w.input[0].clone()
        };
        let x_zero_dt = x_zero.datum_type();
        let x_zero = values::<i32>(&x_zero, "a zero point")?[0];
        initializers.push(int8_scalar(&name("x_zero"), x_zero_dt, x_zero)?);
        initializers.push(int8_scalar(&name("w_zero"), dt, w_zeros[0])?);
        let scales: Vec<f32> = w_scales
            .iter()
            .map(|w| (f64::from(x_scale) * f64::from(*w)) as f32)
            .collect();
        initializers.push(TensorProto {
            name: name("scale"),
            dims: if scales.len() == 1 {
                vec![]
            } else {
                vec![scales.len() as i64]
            },
            data_type: 1,
            float_data: scales,
            ..Default::default()
        });
        let mut nodes = vec![NodeProto {
            name: name("matmul"),
            op_type: "MatMulInteger".into(),
            input: vec![
                x.input[0].clone(),
                weights_name,
                name("x_zero"),
                name("w_zero"),
            ],
            output: vec![name("acc")],
            ..Default::default()
        }];
        let mut acc = name("acc");
        if let Some(b) = mm.input.get(2).filter(|b| gemm && !b.is_empty()) {
            // One value per output column (Gemm also takes a scalar or [M, N] C).
            let source = self
                .dequantize(b)
                .map_or(b.as_str(), |dq| dq.input[0].as_str());
            if self.constant(source)?.map(|t| t.len()) != Some(columns) {
                return Ok(None);
            }
            let Some(bias) =
                self.requantised_bias(b, x_scale, &w_scales, columns, out, &mm.op_type)?
            else {
                return Ok(None);
            };
            nodes.push(NodeProto {
                name: name("bias"),
                op_type: "Add".into(),
                input: vec![acc, bias.name.clone()],
                output: vec![name("acc_bias")],
                ..Default::default()
            });
            initializers.push(bias);
            acc = name("acc_bias");
        }
        nodes.push(NodeProto {
            name: name("float"),
            op_type: "Cast".into(),
            input: vec![acc],
            output: vec![name("float")],
            attribute: vec![tract_onnx::pb::AttributeProto {
                name: "to".into(),
                r#type: tract_onnx::pb::attribute_proto::AttributeType::Int as i32,
                i: 1,
                ..Default::default()
            }],
            ..Default::default()
        });
        nodes.push(NodeProto {
            name: name("rescale"),
            op_type: "Mul".into(),
            input: vec![name("float"), name("scale")],
            output: vec![out.to_string()],
            ..Default::default()
        });
        Ok(Some(Group {
            node: ix,
            with: nodes,
            remove: None,
            initializers,
        }))
    }

    /// The bias as `QLinearConv` takes it: int32 in units of
    /// `x_scale · w_scale[c]`, from a dequantised int32 constant or a float one.
    fn requantised_bias(
        &self,
        name: &str,
        x_scale: f32,
        w_scales: &[f32],
        channels: usize,
        out: &str,
        op: &str,
    ) -> Result<Option<TensorProto>, BuildError> {
        let values: Vec<f64> = if let Some(dq) = self.dequantize(name) {
            let Some((q, s, z)) = self.dequantized_constant(dq)? else {
                return Ok(None);
            };
            let (q, s, z) = (doubles(&q)?, doubles(&s)?, doubles(&z)?);
            if (s.len() != 1 && s.len() != q.len()) || (z.len() != 1 && z.len() != q.len()) {
                return Ok(None);
            }
            let at = |v: &[f64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
            q.iter()
                .enumerate()
                .map(|(i, q)| (q - at(&z, i)) * at(&s, i))
                .collect()
        } else if let Some(t) = self.constant(name)? {
            doubles(&t)?
        } else {
            return Ok(None);
        };
        if values.len() != channels {
            return Err(BuildError::MalformedOnnx(format!(
                "the bias of the {op} producing `{out}` has {} values for {channels} output channels",
                values.len()
            )));
        }
        let mut int32 = Vec::with_capacity(values.len());
        for (c, v) in values.iter().enumerate() {
            let scale = f64::from(x_scale)
                * f64::from(if w_scales.len() == 1 {
                    w_scales[0]
                } else {
                    w_scales[c]
                });
            let q = (v / scale).round_ties_even();
            if !q.is_finite() || q.abs() > f64::from(i32::MAX) {
                return Err(BuildError::MalformedOnnx(format!(
                    "the bias of the {op} producing `{out}` does not fit int32 at scale {scale:e}"
                )));
            }
            int32.push(q as i32);
        }
        Ok(Some(TensorProto {
            name: format!("{out}__qlinear_bias"),
            dims: vec![int32.len() as i64],
            data_type: 6,
            int32_data: int32,
            ..Default::default()
        }))
    }
}

/// An int8/uint8 constant as an ONNX initializer (raw little-endian bytes).
fn int8_tensor(name: &str, t: &Tensor) -> Result<TensorProto, BuildError> {
    let (data_type, raw) = match t.datum_type() {
        DatumType::I8 => (3, values::<i8>(t, name)?.iter().map(|v| *v as u8).collect()),
        DatumType::U8 => (2, values::<u8>(t, name)?),
        dt => {
            return Err(BuildError::MalformedOnnx(format!(
                "`{name}`: {dt:?} is not an 8-bit integer type"
            )));
        }
    };
    Ok(TensorProto {
        name: name.into(),
        dims: t.shape().iter().map(|d| *d as i64).collect(),
        data_type,
        raw_data: raw,
        ..Default::default()
    })
}

/// A scalar zero point of type `dt` (int8 or uint8).
fn int8_scalar(name: &str, dt: DatumType, value: i32) -> Result<TensorProto, BuildError> {
    let t = match dt {
        DatumType::I8 => tensor0(value as i8),
        _ => tensor0(value as u8),
    };
    int8_tensor(name, &t)
}

fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn initializers(graph: &tract_onnx::pb::GraphProto) -> HashMap<&str, &TensorProto> {
    graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect()
}

/// Initializer `name` as a tensor, `None` when it is not an initializer.
fn constant(
    initializers: &HashMap<&str, &TensorProto>,
    name: &str,
) -> Result<Option<Tensor>, BuildError> {
    let Some(t) = initializers.get(name) else {
        return Ok(None);
    };
    tract_onnx::tensor::load_tensor(&tract_onnx::data_resolver::FopenDataResolver, t, None)
        .map(Some)
        .map_err(|e| BuildError::MalformedOnnx(format!("initializer `{name}`: {e}")))
}

/// A constant's values as `T` (`what` names it in the error).
fn values<T: Datum + Copy>(t: &Tensor, what: &str) -> Result<Vec<T>, BuildError> {
    let t = t
        .cast_to::<T>()
        .map_err(|e| BuildError::MalformedOnnx(format!("{what}: {e}")))?;
    Ok(t.try_as_plain_ram()
        .and_then(|r| r.as_slice::<T>().map(|s| s.to_vec()))
        .unwrap_or_default())
}

fn floats(t: &Tensor) -> Result<Vec<f32>, BuildError> {
    values(t, "a quantisation scale")
}

fn doubles(t: &Tensor) -> Result<Vec<f64>, BuildError> {
    values(t, "a quantised bias")
}

fn scalar_f32(t: Tensor) -> Result<f32, BuildError> {
    floats(&t)?
        .first()
        .copied()
        .ok_or_else(|| BuildError::MalformedOnnx("an empty quantisation scale".into()))
}

/// A scale that is not finite and positive: it has no meaning, and zero
/// would divide by zero. ([`check_parameters`] runs before the fusion.)
fn bad_scale(scales: &[f32]) -> Option<f32> {
    scales
        .iter()
        .copied()
        .find(|s| !(s.is_finite() && *s > 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn fixture(name: &str) -> ModelProto {
        let path = format!(
            "{}/../../tests/fixtures/{name}/model.onnx",
            env!("CARGO_MANIFEST_DIR")
        );
        ModelProto::decode(&std::fs::read(path).unwrap()[..]).unwrap()
    }

    fn count(proto: &ModelProto, op: &str) -> usize {
        let graph = proto.graph.as_ref().unwrap();
        graph.node.iter().filter(|n| n.op_type == op).count()
    }

    /// Every ungrouped convolution of onnxruntime's QDQ output (27 of 40, per
    /// channel or per tensor) becomes one QLinearConv, and its QuantizeLinear
    /// goes with it; the 13 depthwise ones stay float.
    #[test]
    fn every_qdq_convolution_is_fused() {
        for name in [
            "mobilenet_v2_style_int8",
            "mobilenet_v2_style_int8_per_tensor",
        ] {
            let mut proto = fixture(name);
            let (convs, quantize) = (count(&proto, "Conv"), count(&proto, "QuantizeLinear"));
            assert_eq!(convs, 40, "{name}");
            check_parameters(&proto).unwrap();
            assert_eq!(fuse_convolutions(&mut proto).unwrap(), 27, "{name}");
            assert_eq!(count(&proto, "Conv"), 13, "{name}");
            let graph = proto.graph.as_ref().unwrap();
            assert!(
                graph
                    .node
                    .iter()
                    .filter(|n| n.op_type == "Conv")
                    .all(|n| attr_int(n, "group").unwrap_or(1) > 1),
                "{name}: only depthwise convolutions stay float"
            );
            assert_eq!(count(&proto, "QLinearConv"), 27, "{name}");
            assert_eq!(count(&proto, "QuantizeLinear"), quantize - 27, "{name}");
        }
    }

    /// A convolution whose float output is also read elsewhere keeps it: no fusion.
    #[test]
    fn a_convolution_read_twice_stays_float() {
        let mut proto = fixture("mobilenet_v2_style_int8");
        let graph = proto.graph.as_mut().unwrap();
        let conv = graph.node.iter().find(|n| n.op_type == "Conv").unwrap();
        graph.output.push(tract_onnx::pb::ValueInfoProto {
            name: conv.output[0].clone(),
            ..Default::default()
        });
        assert_eq!(fuse_convolutions(&mut proto).unwrap(), 26);
    }

    /// The classifier's QDQ `Gemm` runs as `MatMulInteger` on its int8 weights.
    #[test]
    fn the_qdq_gemm_runs_on_integers() {
        let mut proto = fixture("mobilenet_v2_style_int8");
        assert_eq!(count(&proto, "Gemm"), 1);
        assert_eq!(fuse_matmuls(&mut proto).unwrap(), 1);
        assert_eq!(count(&proto, "Gemm"), 0);
        assert_eq!(count(&proto, "MatMulInteger"), 1);
    }

    fn predict(proto: &ModelProto) -> Vec<f32> {
        let shape = crate::onnx::InputShape {
            name: "x".into(),
            dims: vec![Some(1), Some(3), Some(224), Some(224)],
        };
        let model = crate::onnx::load_onnx(&proto.encode_to_vec(), &[shape]).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let mut seed = 7u32;
        let x: Vec<f32> = (0..3 * 224 * 224)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
            })
            .collect();
        let x = Tensor::from_shape(&[1, 3, 224, 224], &x).unwrap();
        let out = plan.run(tvec!(x.into_tvalue())).unwrap();
        values::<f32>(&out[0], "the output").unwrap()
    }

    /// Weights stored `[N, K]` and read with `transB = 1` (as PyTorch exports
    /// a linear layer) are transposed into the integer op: same outputs.
    #[test]
    fn a_transposed_gemm_gives_the_same_outputs() {
        let proto = fixture("mobilenet_v2_style_int8");
        let mut transposed = proto.clone();
        let graph = transposed.graph.as_mut().unwrap();
        let w = graph
            .initializer
            .iter_mut()
            .find(|t| t.name == "fc_w_quantized")
            .unwrap();
        let (k, n) = (w.dims[0] as usize, w.dims[1] as usize);
        let raw = w.raw_data.clone();
        w.raw_data = (0..n * k).map(|i| raw[(i % k) * n + i / k]).collect();
        w.dims = vec![n as i64, k as i64];
        for node in graph.node.iter_mut() {
            if node.op_type == "DequantizeLinear" && node.input[0] == "fc_w_quantized" {
                node.attribute
                    .iter_mut()
                    .find(|a| a.name == "axis")
                    .unwrap()
                    .i = 0;
            }
            if node.op_type == "Gemm" {
                node.attribute
                    .iter_mut()
                    .find(|a| a.name == "transB")
                    .unwrap()
                    .i = 1;
            }
        }
        assert_eq!(fuse_matmuls(&mut transposed.clone()).unwrap(), 1);
        let (a, b) = (predict(&proto), predict(&transposed));
        assert_eq!(a.len(), 100);
        assert_eq!(a, b);
    }

    /// A float model has nothing to fuse.
    #[test]
    fn a_float_model_is_left_alone() {
        let mut proto = fixture("mobilenet_v2_style");
        let before = proto.encode_to_vec();
        assert_eq!(fuse_convolutions(&mut proto).unwrap(), 0);
        assert_eq!(fuse_matmuls(&mut proto).unwrap(), 0);
        assert_eq!(proto.encode_to_vec(), before);
    }
}
