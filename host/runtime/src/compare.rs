//! How far two sets of outputs of the same model are apart: the shadow check on
//! devices and `wasmops bench --against` both ask this.

use crate::bindings::{Tensor, TensorData};

/// The largest relative difference `|a - b| / max(|a|, 1)` over every float output
/// (absolute near zero), or what makes the two incomparable: a missing output, a
/// different shape or type, a differing integer or text value, or a NaN on one side only.
pub fn output_difference(reference: &[Tensor], other: &[Tensor]) -> Result<f64, String> {
    if reference.len() != other.len() {
        return Err(format!(
            "{} outputs against {}",
            reference.len(),
            other.len()
        ));
    }
    let mut worst = 0f64;
    for r in reference {
        let o = other
            .iter()
            .find(|o| o.name == r.name)
            .ok_or_else(|| format!("no output `{}`", r.name))?;
        if o.shape != r.shape {
            return Err(format!(
                "output `{}` has shape {:?} against {:?}",
                r.name, o.shape, r.shape
            ));
        }
        match (&r.data, &o.data) {
            (TensorData::Float32(a), TensorData::Float32(b)) => {
                for (x, y) in a.iter().zip(b) {
                    if x.is_nan() != y.is_nan() {
                        return Err(format!("output `{}` is NaN on one side only", r.name));
                    }
                    if !x.is_nan() {
                        worst = worst.max(((x - y).abs() / x.abs().max(1.0)) as f64);
                    }
                }
            }
            (TensorData::Int64(a), TensorData::Int64(b)) if a == b => {}
            (TensorData::Text(a), TensorData::Text(b)) if a == b => {}
            (TensorData::Int64(_), TensorData::Int64(_))
            | (TensorData::Text(_), TensorData::Text(_)) => {
                return Err(format!("output `{}` differs", r.name));
            }
            _ => return Err(format!("output `{}` has a different element type", r.name)),
        }
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, data: TensorData) -> Tensor {
        let n = match &data {
            TensorData::Float32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Text(v) => v.len(),
        };
        Tensor {
            name: name.into(),
            shape: vec![n as u32],
            data,
        }
    }

    #[test]
    fn relative_above_one_absolute_below() {
        let a = [t("y", TensorData::Float32(vec![100.0, 0.001]))];
        let b = [t("y", TensorData::Float32(vec![101.0, 0.0015]))];
        let d = output_difference(&a, &b).unwrap();
        assert!((d - 0.01).abs() < 1e-6, "{d}");
        assert_eq!(output_difference(&a, &a).unwrap(), 0.0);
    }

    #[test]
    fn incomparable_outputs_are_named() {
        let a = [t("label", TensorData::Int64(vec![1, 2]))];
        assert!(
            output_difference(&a, &[t("label", TensorData::Int64(vec![1, 3]))])
                .unwrap_err()
                .contains("`label` differs")
        );
        assert!(
            output_difference(&a, &[t("other", TensorData::Int64(vec![1, 2]))])
                .unwrap_err()
                .contains("no output `label`")
        );
        assert!(
            output_difference(&a, &[t("label", TensorData::Float32(vec![1.0, 2.0]))])
                .unwrap_err()
                .contains("element type")
        );
        let nan = [t("y", TensorData::Float32(vec![f32::NAN]))];
        assert!(
            output_difference(&nan, &[t("y", TensorData::Float32(vec![0.0]))])
                .unwrap_err()
                .contains("NaN")
        );
        assert_eq!(output_difference(&nan, &nan).unwrap(), 0.0);
    }
}
