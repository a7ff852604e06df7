//! A model's ONNX file run natively in tract (the reference for what the
//! built component must answer), and the comparison of two sets of answers.

use tract_onnx::prelude::*;

use crate::{Frame, TrainerError};

/// Per row: the class code (a classifier) and the float outputs
/// (probabilities, or the values of a regressor).
pub type Answers = Vec<(Option<i64>, Vec<f32>)>;

fn model_error(e: impl std::fmt::Display) -> TrainerError {
    TrainerError::Model(format!("{e:#}"))
}

/// Runs `onnx` on `frame`'s rows (input 0, `[rows, features]` f32).
pub fn run(onnx: &[u8], frame: &Frame) -> Result<Answers, TrainerError> {
    let (n, f) = (frame.rows(), frame.features.len());
    if n == 0 {
        return Ok(vec![]);
    }
    let model = tract_onnx::onnx()
        .model_for_read(&mut std::io::Cursor::new(onnx))
        .map_err(model_error)?
        .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), [n, f]))
        .map_err(model_error)?
        .into_typed()
        .map_err(model_error)?;
    run_model(model, frame)
}

/// Runs a typed model (input 0 fixed to `[rows, features]` f32) on `frame`.
pub fn run_model(model: TypedModel, frame: &Frame) -> Result<Answers, TrainerError> {
    let (n, f) = (frame.rows(), frame.features.len());
    if n == 0 {
        return Ok(vec![]);
    }
    let model = model
        .into_optimized()
        .map_err(model_error)?
        .into_runnable()
        .map_err(model_error)?;
    let x: Vec<f32> = frame.x.iter().map(|v| *v as f32).collect();
    let input = tract_ndarray::Array2::from_shape_vec((n, f), x)
        .map_err(model_error)?
        .into_tensor();
    let outputs = model.run(tvec!(input.into())).map_err(model_error)?;
    let mut labels: Option<Vec<i64>> = None;
    let mut floats: Option<(Vec<f32>, usize)> = None;
    for t in outputs {
        let width = if t.rank() == 2 { t.shape()[1] } else { 1 };
        if t.shape().first() != Some(&n) {
            return Err(TrainerError::Model(format!(
                "an output has shape {:?}, not one row per input row ({n})",
                t.shape()
            )));
        }
        match t.datum_type() {
            DatumType::I64 if labels.is_none() => {
                labels = Some(
                    t.to_plain_array_view::<i64>()
                        .map_err(model_error)?
                        .iter()
                        .copied()
                        .collect(),
                )
            }
            DatumType::F32 if floats.is_none() => {
                floats = Some((
                    t.to_plain_array_view::<f32>()
                        .map_err(model_error)?
                        .iter()
                        .copied()
                        .collect::<Vec<f32>>(),
                    width,
                ))
            }
            _ => {}
        }
    }
    let Some((values, width)) = floats else {
        return Err(TrainerError::Model(
            "no float output (probabilities or values)".into(),
        ));
    };
    Ok((0..n)
        .map(|i| {
            (
                labels.as_ref().map(|l| l[i]),
                values[i * width..(i + 1) * width].to_vec(),
            )
        })
        .collect())
}

/// `Ok` when both answer the same classes and their floats differ by at most
/// `tolerance` (relative to the value's size when it is above 1); else the
/// first row that differs.
pub fn agree(a: &Answers, b: &Answers, tolerance: f32) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} rows against {}", a.len(), b.len()));
    }
    for (i, ((la, fa), (lb, fb))) in a.iter().zip(b).enumerate() {
        if la != lb {
            return Err(format!("row {i}: class {la:?} against {lb:?}"));
        }
        if fa.len() != fb.len() {
            return Err(format!(
                "row {i}: {} outputs against {}",
                fa.len(),
                fb.len()
            ));
        }
        for (x, y) in fa.iter().zip(fb) {
            if (x - y).abs() > tolerance * x.abs().max(1.0) || x.is_nan() != y.is_nan() {
                return Err(format!("row {i}: {fa:?} against {fb:?}"));
            }
        }
    }
    Ok(())
}
