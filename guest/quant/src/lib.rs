//! Quantisation ops in NNEF, for int8 models.
//!
//! Data path: onnxruntime's quantiser writes `QuantizeLinear`,
//! `DequantizeLinear` and `DynamicQuantizeLinear` nodes; tract's ONNX front
//! turns them into [`QuantizeLinearU8`]/[`QuantizeLinearI8`],
//! [`DequantizeLinearF32`] (a dequantize-then-quantize pair it can fold
//! becomes a [`LookupTable`]) and tract-onnx's own dynamic op, which
//! `wasmops build` swaps for [`DynamicQuantize`]. tract-nnef has no
//! serialiser for any of them, so `build` could not write such a model in the
//! guest's form. [`registry`] adds one primitive per op, written by `build`
//! (host) and read by the guest: `wasmops_quantize_linear_u8`/`_i8`,
//! `wasmops_dequantize_linear`, `wasmops_lookup_table`,
//! `wasmops_dynamic_quantize_linear`.
//!
//! Quantised convolutions and matrix products need nothing here: tract-nnef
//! writes them (`tract_core_conv`/`einsum` with quantised types), and only
//! the full guest links them in.

use std::any::TypeId;

use tract_nnef::internal::*;
use tract_nnef::ser::{invocation, numeric};
use tract_nnef::tract_core::ops::element_wise::ElementWiseOp;
use tract_nnef::tract_core::ops::quant::{
    DequantizeLinearF32, LookupTable, QuantizeLinearI8, QuantizeLinearU8, lookup_table,
    quantize_linear_i8, quantize_linear_u8,
};

/// The registry's id, named in the NNEF archive's header.
pub const REGISTRY: &str = "wasmops_quant";

/// The ops' serialisers (used by `build`; a load-only tract-nnef keeps none)
/// and loaders (used by the guest).
pub fn registry() -> Registry {
    let mut r = Registry::new(REGISTRY)
        .with_doc("wasmops: quantize/dequantize-linear, lookup tables and dynamic quantisation");
    r.register_element_wise(
        "wasmops_quantize_linear_u8",
        TypeId::of::<QuantizeLinearU8>(),
        Box::new(dump_quantize_u8),
        quantize_parameters(),
        load_quantize_u8,
    );
    r.register_element_wise(
        "wasmops_quantize_linear_i8",
        TypeId::of::<QuantizeLinearI8>(),
        Box::new(dump_quantize_i8),
        quantize_parameters(),
        load_quantize_i8,
    );
    r.register_element_wise(
        "wasmops_lookup_table",
        TypeId::of::<LookupTable>(),
        Box::new(dump_lookup_table),
        vec![
            TypeName::Scalar.tensor().named("input"),
            TypeName::Integer.tensor().named("table"),
        ],
        load_lookup_table,
    );
    r.register_dumper(dump_dequantize);
    r.register_primitive(
        "wasmops_dequantize_linear",
        &[
            TypeName::Integer.tensor().named("input"),
            TypeName::Scalar.named("scale"),
            TypeName::Integer.named("zero_point"),
        ],
        &[("output", TypeName::Scalar.tensor())],
        load_dequantize,
    );
    r.register_dumper(dump_dynamic);
    r.register_primitive(
        "wasmops_dynamic_quantize_linear",
        &[TypeName::Scalar.tensor().named("input")],
        &[
            ("output", TypeName::Integer.tensor()),
            ("scale", TypeName::Scalar.tensor()),
            ("zero_point", TypeName::Integer.tensor()),
        ],
        load_dynamic,
    );
    r
}

/// Refuses quantisation parameters that have no meaning, naming the node: a
/// scale that is zero, negative or not finite (tract keeps 1/scale for a
/// quantize, so a zero scale shows as an infinite multiplier).
pub fn check(model: &TypedModel) -> TractResult<()> {
    for node in &model.nodes {
        let scale = if let Some(op) = node.op_as::<DequantizeLinearF32>() {
            Some(op.scale)
        } else if let Some(op) = node.op_as::<ElementWiseOp>() {
            if let Some(q) = op.0.downcast_ref::<QuantizeLinearU8>() {
                Some(q.scale.recip())
            } else {
                op.0.downcast_ref::<QuantizeLinearI8>()
                    .map(|q| q.scale.recip())
            }
        } else {
            None
        };
        if let Some(scale) = scale
            && !(scale.is_finite() && scale > 0.0)
        {
            bail!(
                "node `{}` quantises with scale {scale}: scales must be finite and positive",
                node.name
            );
        }
    }
    Ok(())
}

fn quantize_parameters() -> Vec<Parameter> {
    vec![
        TypeName::Scalar.tensor().named("input"),
        // tract keeps 1/scale: x · multiplier, rounded, plus the zero point.
        TypeName::Scalar.named("multiplier"),
        TypeName::Integer.named("zero_point"),
    ]
}

fn mini_op<O: ElementWiseMiniOp>(node: &TypedNode) -> TractResult<&O> {
    node.op_as::<ElementWiseOp>()
        .and_then(|op| op.0.downcast_ref::<O>())
        .with_context(|| {
            format!(
                "node {} is not the element-wise op it was registered for",
                node.name
            )
        })
}

fn dump_quantize_u8(ast: &mut IntoAst, node: &TypedNode) -> TractResult<Option<Arc<RValue>>> {
    let op = mini_op::<QuantizeLinearU8>(node)?;
    dump_quantize(
        ast,
        node,
        "wasmops_quantize_linear_u8",
        op.scale,
        op.zero_point as i32,
    )
}

fn dump_quantize_i8(ast: &mut IntoAst, node: &TypedNode) -> TractResult<Option<Arc<RValue>>> {
    let op = mini_op::<QuantizeLinearI8>(node)?;
    dump_quantize(
        ast,
        node,
        "wasmops_quantize_linear_i8",
        op.scale,
        op.zero_point as i32,
    )
}

fn dump_quantize(
    ast: &mut IntoAst,
    node: &TypedNode,
    id: &str,
    multiplier: f32,
    zero_point: i32,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(invocation(
        id,
        &[input],
        &[
            ("multiplier", numeric(multiplier)),
            ("zero_point", numeric(zero_point)),
        ],
    )))
}

/// A quantisation's parameters as the file gives them, refused when they
/// cannot be one: a zero, negative or non-finite multiplier, a zero point
/// outside the integer type.
fn quantize_params(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
    range: std::ops::RangeInclusive<i64>,
) -> TractResult<(OutletId, f32, i64)> {
    let input = invocation.named_arg_as(builder, "input")?;
    let multiplier: f32 = invocation.named_arg_as(builder, "multiplier")?;
    let zero_point: i64 = invocation.named_arg_as(builder, "zero_point")?;
    ensure!(
        multiplier.is_finite() && multiplier > 0.0,
        "quantisation scale must be finite and positive (1/scale is {multiplier})"
    );
    ensure!(
        range.contains(&zero_point),
        "zero point {zero_point} is outside {range:?}"
    );
    Ok((input, multiplier, zero_point))
}

fn load_quantize_u8(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let (input, multiplier, zero_point) = quantize_params(builder, invocation, 0..=255)?;
    builder.wire(quantize_linear_u8(multiplier, zero_point as u8), &[input])
}

fn load_quantize_i8(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let (input, multiplier, zero_point) = quantize_params(builder, invocation, -128..=127)?;
    builder.wire(quantize_linear_i8(multiplier, zero_point as i8), &[input])
}

fn dump_lookup_table(ast: &mut IntoAst, node: &TypedNode) -> TractResult<Option<Arc<RValue>>> {
    let op = mini_op::<LookupTable>(node)?;
    let input = ast.mapping[&node.inputs[0]].clone();
    let table = Arc::new(tensor1(op.table.table()));
    let table = ast.konst(format!("{}.table", node.name), &table)?;
    Ok(Some(invocation(
        "wasmops_lookup_table",
        &[input, table],
        &[],
    )))
}

fn load_lookup_table(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let table: Arc<Tensor> = invocation.named_arg_as(builder, "table")?;
    let table = table.cast_to::<u8>()?;
    let table = table.try_as_plain_ram()?.as_slice::<u8>()?;
    ensure!(
        table.len() == 256,
        "a lookup table maps each of 256 bytes, this one has {} entries",
        table.len()
    );
    let lut = tract_nnef::tract_core::tract_linalg::routines::lut_u8(table)?;
    builder.wire(lookup_table(lut), &[input])
}

fn dump_dequantize(
    ast: &mut IntoAst,
    node: &TypedNode,
    op: &DequantizeLinearF32,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(invocation(
        "wasmops_dequantize_linear",
        &[input],
        &[
            ("scale", numeric(op.scale)),
            ("zero_point", numeric(op.zero_point)),
        ],
    )))
}

fn load_dequantize(
    builder: &mut ModelBuilder,
    invocation: &ResolvedInvocation,
) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    let scale: f32 = invocation.named_arg_as(builder, "scale")?;
    let zero_point: i64 = invocation.named_arg_as(builder, "zero_point")?;
    ensure!(
        scale.is_finite() && scale > 0.0,
        "dequantisation scale must be finite and positive, not {scale}"
    );
    let zero_point = i32::try_from(zero_point)
        .map_err(|_| format_err!("zero point {zero_point} does not fit 32 bits"))?;
    builder.wire(DequantizeLinearF32::new(scale, zero_point), &[input])
}

fn dump_dynamic(
    ast: &mut IntoAst,
    node: &TypedNode,
    _op: &DynamicQuantize,
) -> TractResult<Option<Arc<RValue>>> {
    let input = ast.mapping[&node.inputs[0]].clone();
    Ok(Some(invocation(
        "wasmops_dynamic_quantize_linear",
        &[input],
        &[],
    )))
}

fn load_dynamic(builder: &mut ModelBuilder, invocation: &ResolvedInvocation) -> TractResult<Value> {
    let input = invocation.named_arg_as(builder, "input")?;
    builder.wire(DynamicQuantize, &[input])
}

/// ONNX `DynamicQuantizeLinear`: u8 values, and the one scale and zero point
/// that map the tensor's range (widened to hold 0) onto 0..=255, computed as
/// onnxruntime does (a constant tensor gets scale 1). The range is the whole
/// tensor's, so rows of a batch are not independent.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct DynamicQuantize;

/// `(scale, zero_point)` for values spanning `min..=max`.
pub fn dynamic_params(min: f32, max: f32) -> (f32, u8) {
    let (min, max) = (min.min(0.0), max.max(0.0));
    let scale = if max == min { 1.0 } else { (max - min) / 255.0 };
    let zero_point = (-min / scale).clamp(0.0, 255.0).round_ties_even();
    (scale, zero_point as u8)
}

/// `saturate(round_half_even(x / scale) + zero_point)`.
pub fn quantize_u8(x: f32, scale: f32, zero_point: u8) -> u8 {
    ((x / scale).round_ties_even() + zero_point as f32).clamp(0.0, 255.0) as u8
}

impl Op for DynamicQuantize {
    fn name(&self) -> StaticName {
        "DynamicQuantize".into()
    }

    op_as_typed_op!();
}

impl EvalOp for DynamicQuantize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = inputs[0].cast_to::<f32>()?;
        let xs = input.try_as_plain_ram()?.as_slice::<f32>()?;
        let (min, max) = xs
            .iter()
            .fold((0f32, 0f32), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        let (scale, zero_point) = dynamic_params(min, max);
        let ys: Vec<u8> = xs
            .iter()
            .map(|x| quantize_u8(*x, scale, zero_point))
            .collect();
        let ys = Tensor::from_shape(input.shape(), &ys)?;
        Ok(tvec!(
            ys.into_tvalue(),
            tensor0(scale).into_tvalue(),
            tensor0(zero_point).into_tvalue()
        ))
    }
}

impl TypedOp for DynamicQuantize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(
            u8::datum_type().fact(inputs[0].shape.clone()),
            f32::fact([0usize; 0]),
            u8::fact([0usize; 0])
        ))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The examples of the ONNX operator documentation for DynamicQuantizeLinear.
    #[test]
    fn dynamic_quantisation_matches_the_onnx_examples() {
        let cases: [(&[f32], f32, u8, &[u8]); 3] = [
            (
                &[0., 2., -3., -2.5, 1.34, 0.5],
                0.019_607_844,
                153,
                &[153, 255, 0, 26, 221, 179],
            ),
            (
                &[-1., -2.1, -1.3, -2.5, -3.34, -4.],
                0.015_686_275,
                255,
                &[191, 121, 172, 96, 42, 0],
            ),
            (
                &[1., 2.1, 1.3, 2.5, 3.34, 4., 1.5, 2.6, 3.9, 4., 3., 2.345],
                0.015_686_275,
                0,
                &[64, 134, 83, 159, 213, 255, 96, 166, 249, 255, 191, 149],
            ),
        ];
        for (xs, scale, zero_point, ys) in cases {
            let out = DynamicQuantize
                .eval_out_of_plan(tvec!(tensor1(xs).into_tvalue()))
                .unwrap()
                .unwrap();
            assert!(
                (out[1]
                    .try_as_plain_ram()
                    .unwrap()
                    .as_slice::<f32>()
                    .unwrap()[0]
                    - scale)
                    .abs()
                    < 1e-8
            );
            assert_eq!(
                out[2].try_as_plain_ram().unwrap().as_slice::<u8>().unwrap()[0],
                zero_point
            );
            assert_eq!(
                out[0].try_as_plain_ram().unwrap().as_slice::<u8>().unwrap(),
                ys
            );
        }
    }

    /// A model of every op here, written as NNEF and read back, computes the
    /// same values.
    #[test]
    fn every_op_survives_nnef() -> TractResult<()> {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2usize, 3]))?;
        let q = model.wire_node("q", quantize_linear_u8(10.0, 128), &[x])?[0];
        let table: Vec<u8> = (0..=255u8).map(|b| b.wrapping_mul(7)).collect();
        let lut = tract_nnef::tract_core::tract_linalg::routines::lut_u8(&table)?;
        let looked = model.wire_node("lut", lookup_table(lut), &[q])?[0];
        let dq = model.wire_node("dq", DequantizeLinearF32::new(0.1, 128), &[looked])?[0];
        let dynamic = model.wire_node("dyn", DynamicQuantize, &[dq])?;
        let qi = model.wire_node("qi8", quantize_linear_i8(4.0, -3), &[dq])?[0];
        model.select_output_outlets(&[dynamic[0], dynamic[1], dynamic[2], qi])?;
        let nnef = tract_nnef::nnef().with_registry(registry());
        let mut archive = vec![];
        nnef.write_to_tar(&model, &mut archive)?;
        let back = nnef.model_for_read(&mut &archive[..])?;
        let input = tensor2(&[[-1.5f32, 0.0, 0.25], [3.0, 12.7, -12.8]]);
        let ours = model
            .into_runnable()?
            .run(tvec!(input.clone().into_tvalue()))?;
        let theirs = back.into_runnable()?.run(tvec!(input.into_tvalue()))?;
        assert_eq!(ours.len(), 4);
        for (a, b) in ours.iter().zip(&theirs) {
            assert_eq!(a, b);
        }
        Ok(())
    }

    #[test]
    fn a_zero_scale_is_refused_naming_the_node() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", u8::fact([4usize])).unwrap();
        let y = model
            .wire_node("broken_dq", DequantizeLinearF32::new(0.0, 0), &[x])
            .unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        let err = check(&model).unwrap_err().to_string();
        assert!(
            err.contains("broken_dq") && err.contains("finite and positive"),
            "{err}"
        );
    }

    #[test]
    fn a_constant_tensor_gets_scale_one() {
        assert_eq!(dynamic_params(0.0, 0.0), (1.0, 0));
    }
}
