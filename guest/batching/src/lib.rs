//! A model's runnable plan, and how a batch goes through it.
//!
//! tract 0.23 takes its fast convolution paths (depthwise kernels, lazy im2col,
//! activations fused into the matrix product) only when the input shape is
//! concrete. With the symbolic batch dimension that ONNX exports carry, a
//! MobileNetV2-style model falls back to generic im2col with separate bias and
//! ReLU6 passes and runs 7–9× slower. So a convolutional model whose samples are
//! provably independent along the batch axis is optimised for batch 1 and runs a
//! batch one sample at a time; everything else keeps the symbolic plan (tabular
//! models score large batches in one pass, which a per-row loop would slow down).
//!
//! `wasmops build` decides ([`per_sample_batch`] on the model as converted, then
//! [`per_sample`] on the model loaded again for batch 1); the guest and the native
//! bench baseline both build their [`Plan`] here, so the benchmark compares the
//! same plan on both sides.

use tract_core::internal::*;
use tract_core::ops::array::{Pad, Slice, TypedConcat};
use tract_core::ops::binary::TypedBinOp;
use tract_core::ops::cast::Cast;
use tract_core::ops::cnn::{Conv, MaxPool, SumPool};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::element_wise::ElementWiseOp;
use tract_core::ops::konst::Const;
use tract_core::ops::nn::{Reduce, Softmax};
use tract_core::ops::quant::DequantizeLinearF32;
use tract_core::ops::source::TypedSource;

/// The model property that marks a model prepared by [`per_sample`]: its batch
/// dimension is set to 1 and the value names the symbol callers see instead.
pub const PER_SAMPLE: &str = "wasmops_per_sample_batch";

/// An optimised model with the interface callers see.
#[derive(Debug, Clone)]
pub struct Plan {
    plan: Arc<TypedSimplePlan>,
    /// Input and output facts as callers see them (symbolic batch included),
    /// whatever the plan was specialised to.
    inputs: Vec<TypedFact>,
    outputs: Vec<TypedFact>,
    per_sample: bool,
}

/// Marks `batch_one`, a model whose batch dimension [`per_sample_batch`] found
/// to be `batch` and that was then loaded again with batch 1, so that [`Plan::new`]
/// runs a batch through it sample by sample. Set on the model as loaded rather than
/// with `set_symbols` on the decluttered one: decluttering with a symbolic batch
/// already lowers some convolutions into transposes and einsums that a concrete
/// batch does not need.
pub fn per_sample(batch_one: &mut TypedModel, batch: &Symbol) {
    batch_one
        .properties
        .insert(PER_SAMPLE.to_string(), rctensor0(batch.to_string()));
}

impl Plan {
    /// Optimises `model`: a model marked by [`per_sample`] for batch 1 (callers
    /// still see its batch symbol), anything else for every batch at once.
    pub fn new(model: TypedModel) -> TractResult<Plan> {
        let batch = match model.properties.get(PER_SAMPLE) {
            Some(name) => Some(
                model
                    .symbols
                    .sym(name.try_as_plain_ram()?.to_scalar::<String>()?),
            ),
            None => None,
        };
        let interface = |fact: &TypedFact| match &batch {
            Some(batch) => {
                let mut dims: TVec<TDim> = fact.shape.to_tvec();
                dims[0] = batch.to_dim();
                fact.datum_type.fact(dims)
            }
            None => fact.clone(),
        };
        let inputs = (0..model.inputs.len())
            .map(|ix| model.input_fact(ix).map(interface))
            .collect::<TractResult<Vec<_>>>()?;
        let outputs = (0..model.outputs.len())
            .map(|ix| model.output_fact(ix).map(interface))
            .collect::<TractResult<Vec<_>>>()?;
        let plan = model.into_optimized()?.into_runnable()?;
        Ok(Plan {
            plan,
            inputs,
            outputs,
            per_sample: batch.is_some(),
        })
    }

    /// The optimised model (node names, output labels).
    pub fn model(&self) -> &TypedModel {
        self.plan.model()
    }

    pub fn input_fact(&self, ix: usize) -> TractResult<&TypedFact> {
        self.inputs
            .get(ix)
            .with_context(|| format!("the model has no input #{ix}"))
    }

    pub fn output_fact(&self, ix: usize) -> TractResult<&TypedFact> {
        self.outputs
            .get(ix)
            .with_context(|| format!("the model has no output #{ix}"))
    }

    /// Whether a batch runs sample by sample through a batch-1 plan.
    pub fn per_sample(&self) -> bool {
        self.per_sample
    }

    pub fn run(&self, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        if !self.per_sample {
            return self.plan.run(inputs);
        }
        let batch = inputs
            .first()
            .map(|t| t.shape().first().copied().unwrap_or(1))
            .unwrap_or(1);
        if let Some(t) = inputs.iter().find(|t| t.shape().first() != Some(&batch)) {
            bail!(
                "inputs disagree on the batch size: {batch} and {:?}",
                t.shape().first()
            );
        }
        if batch == 0 {
            bail!("the batch is empty (batch dimension 0)");
        }
        if batch == 1 {
            return self.plan.run(inputs);
        }
        let mut outputs: Vec<Vec<Tensor>> = vec![Vec::with_capacity(batch); self.outputs.len()];
        for i in 0..batch {
            let sample = inputs
                .iter()
                .map(|t| Ok(t.slice(0, i, i + 1)?.into_tvalue()))
                .collect::<TractResult<TVec<_>>>()?;
            for (all, one) in outputs.iter_mut().zip(self.plan.run(sample)?) {
                all.push(one.into_tensor());
            }
        }
        outputs
            .into_iter()
            .map(|parts| Ok(Tensor::stack_tensors(0, &parts)?.into_tvalue()))
            .collect()
    }
}

/// The batch symbol, when `model` (decluttered) has convolutions and every sample
/// provably goes through it on its own: one symbol, at axis 0 of every input and
/// output, and no node that mixes or reshapes along it. An op this does not know
/// keeps the symbolic plan.
pub fn per_sample_batch(model: &TypedModel) -> Option<Symbol> {
    let first = model.input_fact(0).ok()?;
    let batch = match first.shape.iter().next()? {
        TDim::Sym(s) => s.clone(),
        _ => return None,
    };
    let is_batch = |d: &TDim| matches!(d, TDim::Sym(s) if *s == batch);
    for ix in 0..model.inputs.len() {
        let shape = &model.input_fact(ix).ok()?.shape;
        if !shape.iter().next().is_some_and(is_batch)
            || shape.iter().skip(1).any(|d| d.to_i64().is_err())
        {
            return None;
        }
    }
    for ix in 0..model.outputs.len() {
        if !model
            .output_fact(ix)
            .ok()?
            .shape
            .iter()
            .next()
            .is_some_and(is_batch)
        {
            return None;
        }
    }
    let mut has_conv = false;
    for node in model.nodes() {
        let facts = model.node_input_facts(node.id).ok()?;
        let carrying: Vec<&TypedFact> = facts
            .iter()
            .copied()
            .chain(node.outputs.iter().map(|o| &o.fact))
            .filter(|f| f.shape.iter().any(|d| d.symbols().contains(&batch)))
            .collect();
        if carrying.is_empty() {
            continue;
        }
        // Every fact that carries the batch carries it alone, at axis 0.
        let at_zero = |f: &&TypedFact| {
            let mut dims = f.shape.iter();
            dims.next().is_some_and(is_batch) && dims.all(|d| !d.symbols().contains(&batch))
        };
        if !carrying.iter().all(at_zero) {
            return None;
        }
        let op = node.op();
        let ok = if op.is::<TypedSource>()
            || op.is::<Const>()
            || op.is::<ElementWiseOp>()
            || op.is::<Cast>()
            // Element-wise too (a struct op, not an `ElementWiseOp`): without it
            // every static int8 CNN kept the symbolic plan, 2.07x slower natively
            // for the MobileNetV2-style int8 fixture. Dynamic quantisation stays
            // out: its scale comes from the whole batch.
            || op.is::<DequantizeLinearF32>()
        {
            true
        } else if op.is::<TypedBinOp>() {
            // Broadcasting operands line up with the batch or have 1 there.
            let rank = node.outputs[0].fact.rank();
            facts.iter().all(|f| {
                f.rank() == rank
                    && f.shape
                        .iter()
                        .next()
                        .is_some_and(|d| is_batch(d) || d.is_one())
            })
        } else if let Some(conv) = op.downcast_ref::<Conv>() {
            has_conv = true;
            conv.pool_spec.data_format.has_n()
        } else if let Some(pool) = op.downcast_ref::<MaxPool>() {
            pool.pool_spec.data_format.has_n()
        } else if let Some(pool) = op.downcast_ref::<SumPool>() {
            pool.pool_spec.data_format.has_n()
        } else if let Some(reduce) = op.downcast_ref::<Reduce>() {
            !reduce.axes.contains(&0)
        } else if let Some(softmax) = op.downcast_ref::<Softmax>() {
            !softmax.axes.contains(&0)
        } else if let Some(axis_op) = op.downcast_ref::<AxisOp>() {
            match axis_op {
                AxisOp::Add(a) | AxisOp::Rm(a) => *a > 0,
                AxisOp::Move(from, to) => *from > 0 && *to > 0,
                AxisOp::Reshape(at, _, _) => *at > 0,
            }
        } else if let Some(einsum) = op.downcast_ref::<EinSum>() {
            einsum_keeps_batch(einsum)
        } else if let Some(pad) = op.downcast_ref::<Pad>() {
            pad.pads.first() == Some(&(0, 0))
        } else if let Some(slice) = op.downcast_ref::<Slice>() {
            slice.axis != 0
        } else if let Some(concat) = op.downcast_ref::<TypedConcat>() {
            concat.axis != 0
        } else {
            false
        };
        if !ok {
            return None;
        }
    }
    has_conv.then_some(batch)
}

/// An einsum keeps samples apart when the letter of input 0's axis 0 is the
/// output's axis 0 and sits at axis 0 of any other input that has it.
fn einsum_keeps_batch(einsum: &EinSum) -> bool {
    let axes = &einsum.axes;
    let Some(axis) = axes
        .iter_all_axes()
        .find(|a| a.inputs.first().is_some_and(|p| p.contains(&0)))
    else {
        return false;
    };
    axis.outputs.first().is_some_and(|p| p.as_slice() == [0])
        && axis
            .inputs
            .iter()
            .all(|p| p.is_empty() || p.as_slice() == [0])
}
