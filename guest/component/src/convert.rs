//! Conversions between the WIT tensor types, the pipeline's tensors and tract's.

use tract_nnef::internal::*;
use wasmops_batching::Plan;
use wasmops_pipeline::{Data, Extent, Pipeline, PipelineError, Tensor as PTensor};

use crate::Bundle;
use crate::wasmops::model::types::{
    Dim, ElementType, ModelInfo, PredictError, Tensor, TensorData, TensorSpec,
};

pub fn from_wit(t: Tensor) -> Result<PTensor, PredictError> {
    let shape: Vec<usize> = t.shape.iter().map(|d| *d as usize).collect();
    let data = match t.data {
        TensorData::Float32(v) => Data::F32(v),
        TensorData::Int64(v) => Data::I64(v),
        TensorData::Text(v) => Data::Text(v),
    };
    let expected = shape.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d));
    if expected != Some(data.len()) {
        return Err(PredictError::BadShape(format!(
            "input `{}`: shape {:?} holds {} elements but {} were given",
            t.name,
            shape,
            expected
                .map(|e| e.to_string())
                .unwrap_or_else(|| "too many".into()),
            data.len()
        )));
    }
    Ok(PTensor {
        name: t.name,
        shape,
        data,
    })
}

pub fn pipeline_error(e: PipelineError) -> PredictError {
    let text = e.to_string();
    match e {
        PipelineError::MissingInput(_) => PredictError::MissingInput(text),
        PipelineError::BadShape { .. } => PredictError::BadShape(text),
        PipelineError::BadType { .. } => PredictError::BadType(text),
        PipelineError::InvalidValue { .. } => PredictError::InvalidValue(text),
        PipelineError::Parse(_) | PipelineError::Config { .. } => PredictError::Inference(text),
    }
}

/// Matches caller tensors to the model inputs by name, checking dtype and shape
/// against the model's facts so errors name the input instead of a tract node.
pub fn order_inputs(
    plan: &Plan,
    names: &[String],
    mut given: Vec<PTensor>,
) -> Result<TVec<TValue>, PredictError> {
    if let Some(extra) = given.iter().find(|t| !names.contains(&t.name)) {
        return Err(PredictError::UnknownInput(format!(
            "unknown input `{}`; the model takes {:?}",
            extra.name, names
        )));
    }
    let mut out = tvec![];
    for (ix, name) in names.iter().enumerate() {
        let at = given
            .iter()
            .position(|t| &t.name == name)
            .ok_or_else(|| PredictError::MissingInput(format!("input `{name}` is missing")))?;
        let t = given.swap_remove(at);
        let fact = plan
            .input_fact(ix)
            .map_err(|e| PredictError::Inference(e.to_string()))?;
        check_shape(name, &fact.shape, &t.shape)?;
        wasmops_pipeline::check_finite(&t).map_err(pipeline_error)?;
        let tensor = to_tract(t, fact.datum_type)?;
        out.push(tensor.into_tvalue());
    }
    Ok(out)
}

fn check_shape(name: &str, expected: &ShapeFact, got: &[usize]) -> Result<(), PredictError> {
    let ok = expected.rank() == got.len()
        && expected.iter().zip(got).all(|(e, g)| match e.to_i64() {
            Ok(fixed) => fixed as usize == *g,
            Err(_) => true,
        });
    if ok {
        Ok(())
    } else {
        Err(PredictError::BadShape(format!(
            "input `{name}`: expected shape {expected:?} (after preprocessing), got {got:?}"
        )))
    }
}

fn to_tract(t: PTensor, dt: DatumType) -> Result<tract_nnef::prelude::Tensor, PredictError> {
    let bad = |got: &str| {
        PredictError::BadType(format!(
            "input `{}`: the model expects {dt:?}, got {got}",
            t.name
        ))
    };
    let tensor = match (&t.data, dt) {
        (Data::F32(v), DatumType::F32) => tract_nnef::prelude::Tensor::from_shape(&t.shape, v),
        (Data::I64(v), DatumType::I64) => tract_nnef::prelude::Tensor::from_shape(&t.shape, v),
        // JSON numbers arrive as int64 when written without a decimal point.
        (Data::I64(v), DatumType::F32) => tract_nnef::prelude::Tensor::from_shape(
            &t.shape,
            &v.iter().map(|x| *x as f32).collect::<Vec<_>>(),
        ),
        (Data::F32(v), DatumType::I64) if v.iter().all(|x| x.fract() == 0.0) => {
            tract_nnef::prelude::Tensor::from_shape(
                &t.shape,
                &v.iter().map(|x| *x as i64).collect::<Vec<_>>(),
            )
        }
        (Data::Text(v), DatumType::String) => {
            tract_ndarray::ArrayD::from_shape_vec(t.shape.clone(), v.clone())
                .map(|a| a.into_tensor())
                .map_err(|e| format_err!("{e}"))
        }
        (data, _) => return Err(bad(data.type_name())),
    };
    tensor.map_err(|e| PredictError::BadShape(format!("input `{}`: {e}", t.name)))
}

pub fn to_wit(name: &str, t: TValue) -> Result<Tensor, PredictError> {
    let fail = |e: TractError| PredictError::Inference(format!("output `{name}`: {e}"));
    let shape = t.shape().iter().map(|d| *d as u32).collect();
    let data = match t.datum_type() {
        DatumType::String => TensorData::Text(
            t.try_as_plain_ram()
                .map_err(fail)?
                .as_slice::<String>()
                .map_err(fail)?
                .to_vec(),
        ),
        dt if dt.is_float() => {
            let f = t.cast_to::<f32>().map_err(fail)?;
            TensorData::Float32(
                f.to_plain_array_view::<f32>()
                    .map_err(fail)?
                    .iter()
                    .copied()
                    .collect(),
            )
        }
        _ => {
            let i = t.cast_to::<i64>().map_err(fail)?;
            TensorData::Int64(
                i.to_plain_array_view::<i64>()
                    .map_err(fail)?
                    .iter()
                    .copied()
                    .collect(),
            )
        }
    };
    Ok(Tensor {
        name: name.to_string(),
        shape,
        data,
    })
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

fn extents(fact: &TypedFact) -> Vec<Extent> {
    fact.shape
        .iter()
        .map(|d| match d.to_i64() {
            Ok(v) => Extent::Fixed(v as u64),
            Err(_) => Extent::Symbol(d.to_string()),
        })
        .collect()
}

fn spec(name: &str, dt: DatumType, shape: Vec<Extent>) -> TensorSpec {
    let shape = shape
        .into_iter()
        .map(|e| match e {
            Extent::Fixed(v) => Dim::Fixed(v),
            Extent::Symbol(s) => Dim::Symbol(s),
        })
        .collect();
    TensorSpec {
        name: name.to_string(),
        element_type: element_type(dt),
        shape,
    }
}

pub fn model_info(
    bundle: &Bundle,
    plan: &Plan,
    pipeline: &Pipeline,
    inputs: &[String],
    outputs: &[String],
) -> TractResult<ModelInfo> {
    // Callers send raw inputs: describe them as they are before the pipeline runs.
    let mut in_specs = inputs
        .iter()
        .enumerate()
        .map(|(ix, n)| {
            let fact = plan.input_fact(ix)?;
            Ok(spec(
                n,
                fact.datum_type,
                pipeline.raw_shape(n, &inputs[0], extents(fact)),
            ))
        })
        .collect::<TractResult<Vec<_>>>()?;
    for source in pipeline.text_sources() {
        in_specs.push(TensorSpec {
            name: source.to_string(),
            element_type: ElementType::Text,
            shape: vec![Dim::Symbol("N".into())],
        });
    }
    let out_specs = outputs
        .iter()
        .enumerate()
        .map(|(ix, n)| {
            let fact = plan.output_fact(ix)?;
            Ok(spec(n, fact.datum_type, extents(fact)))
        })
        .collect::<TractResult<Vec<_>>>()?;
    Ok(ModelInfo {
        name: bundle.name.clone(),
        version: bundle.version.clone(),
        inputs: in_specs,
        outputs: out_specs,
        preprocessing: pipeline.describe(),
    })
}
