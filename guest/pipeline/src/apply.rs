//! Applying steps to tensors. Every function checks shapes and types first and
//! reports the tensor by name; none panics on caller data.

use crate::spec::{Encoding, Step, Unknown};
use crate::{Data, PipelineError, Tensor};

fn bad_shape(t: &Tensor, message: String) -> PipelineError {
    PipelineError::BadShape {
        input: t.name.clone(),
        message,
    }
}

fn floats(t: &mut Tensor) -> Result<&mut Vec<f32>, PipelineError> {
    let got = t.data.type_name();
    match &mut t.data {
        Data::F32(v) => Ok(v),
        _ => Err(PipelineError::BadType {
            input: t.name.clone(),
            expected: "float32",
            got,
        }),
    }
}

/// Number of columns (size of the last axis) checked against a per-column parameter list.
fn columns(t: &Tensor, wanted: usize, what: &str) -> Result<usize, PipelineError> {
    let cols = *t
        .shape
        .last()
        .ok_or_else(|| bad_shape(t, format!("{what} needs at least one axis")))?;
    if cols != wanted {
        return Err(bad_shape(
            t,
            format!(
                "{what} has {wanted} columns but the last axis is {cols} (shape {:?})",
                t.shape
            ),
        ));
    }
    Ok(cols)
}

fn per_column(
    t: &mut Tensor,
    params: usize,
    what: &str,
    f: impl Fn(usize, f32) -> f32,
) -> Result<(), PipelineError> {
    let cols = columns(t, params, what)?;
    for (i, x) in floats(t)?.iter_mut().enumerate() {
        *x = f(i % cols, *x);
    }
    Ok(())
}

pub(crate) fn apply_step(
    step: &Step,
    t: &mut Tensor,
    source: Option<Tensor>,
) -> Result<(), PipelineError> {
    match step {
        Step::Impute { value, values, .. } => match values {
            Some(vals) => per_column(t, vals.len(), "impute", |c, x| {
                if x.is_nan() { vals[c] } else { x }
            }),
            None => {
                let v = value.unwrap_or(0.0);
                floats(t)?
                    .iter_mut()
                    .filter(|x| x.is_nan())
                    .for_each(|x| *x = v);
                Ok(())
            }
        },
        Step::StandardScale { mean, std, .. } => {
            per_column(t, mean.len(), "standard-scale", |c, x| {
                (x - mean[c]) / std[c]
            })
        }
        Step::MinMax {
            min, max, range, ..
        } => {
            let [lo, hi] = range.unwrap_or([0.0, 1.0]);
            per_column(t, min.len(), "min-max", |c, x| {
                let span = max[c] - min[c];
                // scikit-learn treats a constant column as span 1.
                let span = if span == 0.0 { 1.0 } else { span };
                (x - min[c]) / span * (hi - lo) + lo
            })
        }
        Step::Clip { min, max, .. } => {
            floats(t)?.iter_mut().for_each(|x| *x = x.clamp(*min, *max));
            Ok(())
        }
        Step::OneHot {
            column,
            categories,
            unknown,
            ..
        } => one_hot_column(t, *column, categories, *unknown),
        Step::CategoryMap {
            categories,
            encoding,
            unknown,
            source: name,
            ..
        } => {
            let source = source.ok_or_else(|| PipelineError::MissingInput(name.clone()))?;
            append_categories(t, source, categories, *encoding, *unknown)
        }
        Step::Resize { height, width, .. } => resize(t, *height, *width),
        Step::Normalize {
            scale, mean, std, ..
        } => {
            let s = scale.unwrap_or(1.0);
            per_column(t, mean.len(), "normalize", |c, x| {
                (x * s - mean[c]) / std[c]
            })
        }
        Step::HwcToChw { .. } => hwc_to_chw(t),
    }
}

fn one_hot_column(
    t: &mut Tensor,
    column: usize,
    categories: &[f32],
    unknown: Unknown,
) -> Result<(), PipelineError> {
    let cols = *t
        .shape
        .last()
        .ok_or_else(|| bad_shape(t, "one-hot needs a [.., F] tensor".into()))?;
    if column >= cols {
        return Err(bad_shape(
            t,
            format!("one-hot column {column} is outside {cols} columns"),
        ));
    }
    let name = t.name.clone();
    let data = floats(t)?;
    let k = categories.len();
    let new_cols = cols - 1 + k;
    let mut out = Vec::with_capacity(data.len() / cols.max(1) * new_cols);
    for row in data.chunks(cols) {
        out.extend_from_slice(&row[..column]);
        let v = row[column];
        match categories.iter().position(|c| *c == v) {
            Some(hit) => out.extend((0..k).map(|i| if i == hit { 1.0 } else { 0.0 })),
            None if unknown == Unknown::Ignore => out.extend(std::iter::repeat_n(0.0, k)),
            None => {
                return Err(PipelineError::InvalidValue {
                    input: name,
                    message: format!(
                        "column {column}: unknown category {v} (known: {categories:?})"
                    ),
                });
            }
        }
        out.extend_from_slice(&row[column + 1..]);
    }
    *t.shape.last_mut().unwrap() = new_cols;
    t.data = Data::F32(out);
    Ok(())
}

fn append_categories(
    t: &mut Tensor,
    source: Tensor,
    categories: &[String],
    encoding: Encoding,
    unknown: Unknown,
) -> Result<(), PipelineError> {
    let Data::Text(values) = &source.data else {
        return Err(PipelineError::BadType {
            input: source.name.clone(),
            expected: "text",
            got: source.data.type_name(),
        });
    };
    if t.shape.len() != 2 {
        return Err(bad_shape(
            t,
            format!(
                "category-map appends to a [N, F] tensor, got shape {:?}",
                t.shape
            ),
        ));
    }
    let (rows, cols) = (t.shape[0], t.shape[1]);
    if values.len() != rows || !(source.shape == [rows] || source.shape == [rows, 1]) {
        return Err(PipelineError::BadShape {
            input: source.name.clone(),
            message: format!(
                "expected shape [{rows}] or [{rows}, 1] to match `{}`, got {:?}",
                t.name, source.shape
            ),
        });
    }
    let width = match encoding {
        Encoding::OneHot => categories.len(),
        Encoding::Ordinal => 1,
    };
    let name = t.name.clone();
    let data = floats(t)?;
    let mut out = Vec::with_capacity(rows * (cols + width));
    for (row, value) in data.chunks(cols.max(1)).take(rows).zip(values) {
        out.extend_from_slice(&row[..cols]);
        let hit = categories.iter().position(|c| c == value);
        if hit.is_none() && unknown == Unknown::Error {
            return Err(PipelineError::InvalidValue {
                input: source.name.clone(),
                message: format!("unknown category {value:?} (known: {categories:?})"),
            });
        }
        match encoding {
            Encoding::OneHot => {
                out.extend((0..width).map(|i| if Some(i) == hit { 1.0 } else { 0.0 }))
            }
            Encoding::Ordinal => out.push(hit.map(|i| i as f32).unwrap_or(-1.0)),
        }
    }
    let _ = name;
    t.shape[1] = cols + width;
    t.data = Data::F32(out);
    Ok(())
}

/// `[N,H,W,C]` view of an image tensor, accepting `[H,W,C]` as a batch of one.
fn nhwc(t: &Tensor) -> Result<[usize; 4], PipelineError> {
    match t.shape[..] {
        [n, h, w, c] => Ok([n, h, w, c]),
        [h, w, c] => Ok([1, h, w, c]),
        _ => Err(bad_shape(
            t,
            format!(
                "expected an [N,H,W,C] or [H,W,C] image, got shape {:?}",
                t.shape
            ),
        )),
    }
}

fn resize(t: &mut Tensor, oh: usize, ow: usize) -> Result<(), PipelineError> {
    let [n, h, w, c] = nhwc(t)?;
    if h == 0 || w == 0 {
        return Err(bad_shape(
            t,
            format!("cannot resize an empty image {:?}", t.shape),
        ));
    }
    let batched = t.shape.len() == 4;
    let src = floats(t)?;
    // Half-pixel centres, as ONNX Resize (coordinate_transformation_mode=half_pixel) and PIL do.
    let axis = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
        let scale = inp as f32 / out as f32;
        (0..out)
            .map(|o| {
                let x = ((o as f32 + 0.5) * scale - 0.5).max(0.0);
                let x0 = (x.floor() as usize).min(inp - 1);
                let x1 = (x0 + 1).min(inp - 1);
                (x0, x1, x - x0 as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(oh, h), axis(ow, w));
    let mut out = Vec::with_capacity(n * oh * ow * c);
    for b in 0..n {
        let img = &src[b * h * w * c..(b + 1) * h * w * c];
        let px = |y: usize, x: usize, ch: usize| img[(y * w + x) * c + ch];
        for &(y0, y1, fy) in &ys {
            for &(x0, x1, fx) in &xs {
                for ch in 0..c {
                    let top = px(y0, x0, ch) * (1.0 - fx) + px(y0, x1, ch) * fx;
                    let bottom = px(y1, x0, ch) * (1.0 - fx) + px(y1, x1, ch) * fx;
                    out.push(top * (1.0 - fy) + bottom * fy);
                }
            }
        }
    }
    t.shape = if batched {
        vec![n, oh, ow, c]
    } else {
        vec![oh, ow, c]
    };
    t.data = Data::F32(out);
    Ok(())
}

fn hwc_to_chw(t: &mut Tensor) -> Result<(), PipelineError> {
    let [n, h, w, c] = nhwc(t)?;
    let src = floats(t)?;
    let mut out = vec![0.0; src.len()];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + x] = src[((b * h + y) * w + x) * c + ch];
                }
            }
        }
    }
    t.shape = vec![n, c, h, w];
    t.data = Data::F32(out);
    Ok(())
}
