//! Drift bin edges: the per-feature deciles of the training data become
//! signed claims (`feature_bins`), and devices count live inputs into the same
//! bins, so the coordinator can compare live and training distributions.

use std::collections::BTreeMap;

use wasmops_runtime::bindings::{Tensor, TensorData};

/// Bins per feature `wasmops build --training-data` uses (deciles).
pub const TRAINING_BINS: usize = 10;

/// Widest `[rows, features]` input whose columns get bins each: as many as
/// claims accept and a telemetry report summarises.
pub const MAX_BINNED_FEATURES: usize = 4096;

/// Bin edges at the `bins`-quantiles of each feature of `inputs` (NaN
/// skipped, repeated edges merged): how live inputs are binned later.
/// Features are named as telemetry names them: `X[0]`, `X[1]`, … for
/// `[rows, features]` float inputs.
pub fn quantile_edges(inputs: &[Tensor], bins: usize) -> BTreeMap<String, Vec<f64>> {
    let mut out = BTreeMap::new();
    for t in inputs {
        let TensorData::Float32(v) = &t.data else {
            continue;
        };
        if t.shape.len() != 2 || t.shape[1] == 0 || t.shape[1] as usize > MAX_BINNED_FEATURES {
            continue;
        }
        let width = t.shape[1] as usize;
        for col in 0..width {
            let mut xs: Vec<f64> = v
                .iter()
                .skip(col)
                .step_by(width)
                .map(|x| *x as f64)
                .filter(|x| x.is_finite())
                .collect();
            if xs.len() < 2 {
                continue;
            }
            xs.sort_by(f64::total_cmp);
            let mut edges: Vec<f64> = (1..bins).map(|i| xs[(i * (xs.len() - 1)) / bins]).collect();
            edges.dedup();
            if !edges.is_empty() {
                out.insert(format!("{}[{col}]", t.name), edges);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_edges_split_training_data_evenly() {
        let data: Vec<f32> = (0..100).flat_map(|i| [i as f32, 7.0]).collect();
        let t = Tensor {
            name: "X".into(),
            shape: vec![100, 2],
            data: TensorData::Float32(data),
        };
        let e = quantile_edges(&[t], 4);
        assert_eq!(e["X[0]"], vec![24.0, 49.0, 74.0]);
        assert_eq!(e["X[1]"], vec![7.0], "a constant feature has one edge");
    }
}
