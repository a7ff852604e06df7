//! Inputs made up from a model's declared inputs, for when no real request is
//! at hand: the device agent's health probe of a deployment without a sample
//! (zeros), and `wasmops bench` without `--input` (deterministic noise).

use crate::bindings::{Dim, ElementType, ModelInfo, Tensor, TensorData};

/// What the made-up values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Zeros (empty strings for text inputs): a probe that any model should survive.
    Zeros,
    /// Deterministic values in [0, 1) (integers in 0..4), the same every run; text inputs cannot be made up.
    Noise,
}

/// One tensor per declared input; symbolic dimensions take `batch`.
pub fn synthetic_inputs(info: &ModelInfo, batch: u32, fill: Fill) -> Result<Vec<Tensor>, String> {
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    info.inputs
        .iter()
        .map(|spec| {
            let shape: Vec<u32> = spec
                .shape
                .iter()
                .map(|d| {
                    if let Dim::Fixed(n) = d {
                        *n as u32
                    } else {
                        batch
                    }
                })
                .collect();
            let n = shape.iter().map(|d| *d as usize).product();
            let data = match (fill, spec.element_type) {
                (Fill::Zeros, ElementType::Text) => TensorData::Text(vec![String::new(); n]),
                (Fill::Zeros, ElementType::Int64 | ElementType::Int32) => {
                    TensorData::Int64(vec![0; n])
                }
                (Fill::Zeros, _) => TensorData::Float32(vec![0.0; n]),
                (Fill::Noise, ElementType::Float32) => {
                    TensorData::Float32((0..n).map(|_| next()).collect())
                }
                (Fill::Noise, ElementType::Int64 | ElementType::Int32) => {
                    TensorData::Int64((0..n).map(|_| (next() * 4.0) as i64).collect())
                }
                (Fill::Noise, t) => {
                    return Err(format!(
                        "cannot make up input `{}` of type {t:?}",
                        spec.name
                    ));
                }
            };
            Ok(Tensor {
                name: spec.name.clone(),
                shape,
                data,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::TensorSpec;

    #[test]
    fn shapes_types_and_determinism() {
        let info = ModelInfo {
            name: "m".into(),
            version: "1".into(),
            inputs: vec![
                TensorSpec {
                    name: "x".into(),
                    element_type: ElementType::Float32,
                    shape: vec![Dim::Symbol("N".into()), Dim::Fixed(3)],
                },
                TensorSpec {
                    name: "c".into(),
                    element_type: ElementType::Text,
                    shape: vec![Dim::Symbol("N".into())],
                },
            ],
            outputs: vec![],
            preprocessing: vec![],
        };
        let zeros = synthetic_inputs(&info, 2, Fill::Zeros).unwrap();
        assert_eq!(
            (zeros[0].shape.clone(), zeros[1].shape.clone()),
            (vec![2, 3], vec![2])
        );
        assert_eq!(zeros[1].data, TensorData::Text(vec![String::new(); 2]));
        assert!(
            synthetic_inputs(&info, 2, Fill::Noise)
                .unwrap_err()
                .contains("`c`")
        );
        info_noise(&info);
    }

    fn info_noise(info: &ModelInfo) {
        let only_x = ModelInfo {
            inputs: info.inputs[..1].to_vec(),
            ..info.clone()
        };
        let a = synthetic_inputs(&only_x, 4, Fill::Noise).unwrap();
        assert_eq!(
            a,
            synthetic_inputs(&only_x, 4, Fill::Noise).unwrap(),
            "the same every run"
        );
        let TensorData::Float32(v) = &a[0].data else {
            panic!()
        };
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)) && v.len() == 12);
    }
}
