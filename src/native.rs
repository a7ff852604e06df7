//! A model's ONNX file run by native tract, with the same conversion as
//! `build` (`wasmops_compiler::load_model`), the same plan
//! (`wasmops_batching`) and the same preprocessing code (`wasmops_pipeline`)
//! as the component: the baseline `bench` and `serve --native` measure
//! components against. Nothing here is signed or sandboxed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tract_onnx::prelude::*;
use wasmops_pipeline::Pipeline;
use wasmops_runtime::HostError;
use wasmops_runtime::bindings::{
    Dim, ElementType, ModelInfo, PredictError, Tensor, TensorData, TensorSpec,
};

/// One operator kind's time in [`NativeModel::profile`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpTime {
    /// tract's operator name (`OptMatMul`, `Requant`, `DepthWiseConv`, …).
    pub op: String,
    /// Nodes of the plan with this operator.
    pub nodes: usize,
    pub ms_per_run: f64,
    /// Of the time spent in all nodes.
    pub share: f64,
}

pub struct NativeModel {
    plan: wasmops_batching::Plan,
    pipeline: Pipeline,
    input_names: Vec<String>,
    output_names: Vec<String>,
    info: ModelInfo,
}

fn element_type(dt: DatumType) -> ElementType {
    match dt {
        DatumType::F32 => ElementType::Float32,
        DatumType::I64 => ElementType::Int64,
        DatumType::I32 => ElementType::Int32,
        DatumType::Bool => ElementType::Boolean,
        DatumType::String => ElementType::Text,
        _ => ElementType::Other,
    }
}

fn spec(name: &str, fact: &TypedFact) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        element_type: element_type(fact.datum_type),
        shape: fact
            .shape
            .iter()
            .map(|d| match d.to_i64() {
                Ok(n) => Dim::Fixed(n as u64),
                Err(_) => Dim::Symbol(d.to_string()),
            })
            .collect(),
    }
}

impl NativeModel {
    /// `name` and `version` stand in for the metadata a component carries.
    pub fn load(onnx: &[u8], pipeline: Option<&str>, name: &str, version: &str) -> Result<Self> {
        let plan = wasmops_batching::Plan::new(wasmops_compiler::load_model(onnx, &[])?)?;
        let pipeline = Pipeline::from_toml(pipeline.unwrap_or(""))?;
        let model = plan.model();
        // Named as the guest names them: inputs by node, outputs by the
        // graph's output names where the model keeps them.
        let input_names: Vec<String> = model
            .inputs
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let output_names: Vec<String> = model
            .outputs
            .iter()
            .map(|o| {
                model
                    .outlet_label(*o)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| model.node(o.node).name.clone())
            })
            .collect();
        let mut inputs = input_names
            .iter()
            .enumerate()
            .map(|(ix, n)| Ok(spec(n, plan.input_fact(ix)?)))
            .collect::<Result<Vec<_>>>()?;
        inputs.extend(pipeline.text_sources().map(|s| TensorSpec {
            name: s.to_string(),
            element_type: ElementType::Text,
            shape: vec![Dim::Symbol("N".into())],
        }));
        let outputs = output_names
            .iter()
            .enumerate()
            .map(|(ix, n)| Ok(spec(n, plan.output_fact(ix)?)))
            .collect::<Result<Vec<_>>>()?;
        let info = ModelInfo {
            name: name.to_string(),
            version: version.to_string(),
            inputs,
            outputs,
            preprocessing: pipeline.describe(),
        };
        Ok(NativeModel {
            plan,
            pipeline,
            input_names,
            output_names,
            info,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The model's inputs after the pipeline, in the model's order.
    pub fn prepare(&self, inputs: &[Tensor]) -> Result<TVec<TValue>> {
        let mut tensors: Vec<wasmops_pipeline::Tensor> = inputs.iter().map(to_pipeline).collect();
        self.pipeline.apply(&mut tensors, &self.input_names[0])?;
        self.input_names
            .iter()
            .map(|name| {
                let t = tensors
                    .iter()
                    .find(|t| &t.name == name)
                    .with_context(|| format!("no input `{name}` for the native run"))?;
                let tensor = match &t.data {
                    wasmops_pipeline::Data::F32(v) => {
                        tract_onnx::prelude::Tensor::from_shape(&t.shape, v)?
                    }
                    wasmops_pipeline::Data::I64(v) => {
                        tract_onnx::prelude::Tensor::from_shape(&t.shape, v)?
                    }
                    wasmops_pipeline::Data::Text(_) => {
                        bail!("text input `{name}` reaches the model")
                    }
                };
                Ok(tensor.into_tvalue())
            })
            .collect()
    }

    pub fn run(&self, prepared: TVec<TValue>) -> Result<TVec<TValue>> {
        let outputs = self.plan.run(prepared);
        clear_upper_vector_state();
        outputs
    }

    /// Where native tract spends its time on `prepared`: each node of the
    /// optimised plan timed over `rounds` runs, summed per operator kind,
    /// largest first. A per-sample plan is profiled on the first sample (the
    /// plan every sample runs through).
    pub fn profile(&self, prepared: &TVec<TValue>, rounds: usize) -> Result<Vec<OpTime>> {
        let inputs: TVec<TValue> = if self.plan.per_sample() {
            prepared
                .iter()
                .map(|t| Ok(t.slice(0, 0, 1)?.into_tvalue()))
                .collect::<Result<_>>()?
        } else {
            prepared.clone()
        };
        let plan = TypedSimplePlan::new(self.plan.model().clone())?;
        let mut state = TypedSimpleState::new(&plan)?;
        let mut per_op: Vec<(String, std::collections::BTreeSet<usize>, Duration)> = vec![];
        for _ in 0..rounds.max(1) {
            state.run_plan_with_eval(inputs.clone(), |ctx, op_state, node, input| {
                let started = Instant::now();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
                let spent = started.elapsed();
                let name = node.op().name();
                match per_op.iter_mut().find(|(op, ..)| *op == name) {
                    Some((_, nodes, total)) => {
                        nodes.insert(node.id);
                        *total += spent;
                    }
                    None => per_op.push((name.to_string(), [node.id].into(), spent)),
                }
                out
            })?;
        }
        clear_upper_vector_state();
        let all: Duration = per_op.iter().map(|(.., t)| *t).sum();
        let mut times: Vec<OpTime> = per_op
            .into_iter()
            .map(|(op, nodes, total)| OpTime {
                op,
                nodes: nodes.len(),
                ms_per_run: total.as_secs_f64() * 1e3 / rounds.max(1) as f64,
                share: total.as_secs_f64() / all.as_secs_f64().max(f64::MIN_POSITIVE),
            })
            .collect();
        times.sort_by(|a, b| b.ms_per_run.total_cmp(&a.ms_per_run));
        Ok(times)
    }

    /// Tract's outputs as the component would return them.
    fn outputs(&self, values: TVec<TValue>) -> Result<Vec<Tensor>> {
        values
            .into_iter()
            .zip(&self.output_names)
            .map(|(t, name)| {
                let shape = t.shape().iter().map(|d| *d as u32).collect();
                let data = if t.datum_type().is_float() {
                    let f = t.cast_to::<f32>()?;
                    TensorData::Float32(f.to_plain_array_view::<f32>()?.iter().copied().collect())
                } else if t.datum_type() == DatumType::String {
                    TensorData::Text(t.try_as_plain_ram()?.as_slice::<String>()?.to_vec())
                } else {
                    let i = t.cast_to::<i64>()?;
                    TensorData::Int64(i.to_plain_array_view::<i64>()?.iter().copied().collect())
                };
                Ok(Tensor {
                    name: name.clone(),
                    shape,
                    data,
                })
            })
            .collect()
    }
}

impl wasmops_serve::Backend for NativeModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn runtime(&self) -> &'static str {
        "native"
    }

    fn describe(&self) -> serde_json::Value {
        serde_json::json!({"signed_by": null})
    }

    fn predict(&self, inputs: &[Tensor]) -> Result<wasmops_serve::Prediction, HostError> {
        let prepared = self
            .prepare(inputs)
            .map_err(|e| HostError::Predict(PredictError::InvalidValue(format!("{e:#}"))))?;
        let outputs = self
            .run(prepared)
            .and_then(|v| self.outputs(v))
            .map_err(|e| HostError::Predict(PredictError::Inference(format!("{e:#}"))))?;
        Ok(wasmops_serve::Prediction {
            outputs,
            instantiate: None,
        })
    }
}

/// The same tensors in the pipeline crate's form.
fn to_pipeline(t: &Tensor) -> wasmops_pipeline::Tensor {
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

/// Tract's hand-written x86_64 kernels (AVX-512 where the CPU has it) return
/// with the upper halves of the vector registers dirty. On Intel CPUs every
/// legacy-SSE instruction run after that pays for merging them, so guest code
/// that Cranelift compiled in the same thread crawls: on a Xeon with AVX-512,
/// `wasmops bench` saw the component go from 5.2 ms a prediction to 232 ms
/// once native tract had run beside it. `vzeroupper` ends that state.
fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX (checked above); vzeroupper touches only
        // the upper vector halves, which no live Rust value holds here.
        unsafe { zero_upper() }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zero_upper() {
    std::arch::x86_64::_mm256_zeroupper();
}
