//! The built-in trainers (no Python needed): multinomial logistic regression
//! and ordinary least squares from linfa, on standardised features with
//! missing values filled by the training mean, written as ONNX ([`Linear`]).

use linfa::prelude::*;
use linfa_linear::LinearRegression;
use linfa_logistic::MultiLogisticRegression;
use ndarray::{Array1, Array2};

use crate::onnx::{Head, Linear};
use crate::{Frame, Target, TrainerError};

/// Which built-in trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Classes: multinomial logistic regression (L2, L-BFGS).
    Logistic,
    /// Numbers: ordinary least squares.
    Linear,
}

impl Algorithm {
    pub fn parse(name: &str) -> Result<Algorithm, TrainerError> {
        match name {
            "logistic" => Ok(Algorithm::Logistic),
            "linear" => Ok(Algorithm::Linear),
            other => Err(TrainerError::Settings(format!(
                "unknown built-in trainer `{other}`: logistic or linear"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Logistic => "logistic",
            Algorithm::Linear => "linear",
        }
    }

    /// Whether its label is a class code.
    pub fn classifies(self) -> bool {
        self == Algorithm::Logistic
    }
}

/// Algorithm settings (`params` of a run's trainer), unknown keys refused.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// L-BFGS iterations (logistic).
    pub max_iterations: u64,
    /// L2 penalty strength (logistic).
    pub alpha: f64,
    /// Stop when the gradient's norm is below this (logistic).
    pub gradient_tolerance: f64,
}

impl Default for Settings {
    fn default() -> Settings {
        // linfa's defaults but more iterations: 100 left iris (4 features,
        // 3 classes, standardised) short of convergence.
        Settings {
            max_iterations: 300,
            alpha: 1.0,
            gradient_tolerance: 1e-4,
        }
    }
}

impl Settings {
    pub fn from_json(params: &serde_json::Value) -> Result<Settings, TrainerError> {
        if params.is_null() {
            return Ok(Settings::default());
        }
        let s: Settings = serde_json::from_value(params.clone())
            .map_err(|e| TrainerError::Settings(format!("trainer params: {e}")))?;
        if s.max_iterations == 0 || s.max_iterations > 100_000 {
            return Err(TrainerError::Settings(
                "max_iterations must be 1-100000".into(),
            ));
        }
        if !(s.alpha.is_finite() && s.alpha >= 0.0) {
            return Err(TrainerError::Settings("alpha must be ≥ 0".into()));
        }
        if !(s.gradient_tolerance.is_finite() && s.gradient_tolerance > 0.0) {
            return Err(TrainerError::Settings(
                "gradient_tolerance must be > 0".into(),
            ));
        }
        Ok(s)
    }
}

/// Per-feature mean and spread of the training rows (missing values left
/// out; a constant column has spread 1).
struct Scaling {
    mean: Vec<f64>,
    std: Vec<f64>,
    any_missing: bool,
}

impl Scaling {
    fn of(frame: &Frame) -> Result<Scaling, TrainerError> {
        let f = frame.features.len();
        let (mut sum, mut sq, mut n) = (vec![0.0; f], vec![0.0; f], vec![0usize; f]);
        let mut any_missing = false;
        for i in 0..frame.rows() {
            for (j, x) in frame.row(i).iter().enumerate() {
                if x.is_nan() {
                    any_missing = true;
                } else {
                    sum[j] += x;
                    sq[j] += x * x;
                    n[j] += 1;
                }
            }
        }
        if let Some(j) = n.iter().position(|&c| c == 0) {
            return Err(TrainerError::Data(format!(
                "column `{}` has no values in the training rows",
                frame.features[j]
            )));
        }
        let mean: Vec<f64> = (0..f).map(|j| sum[j] / n[j] as f64).collect();
        let std = (0..f)
            .map(|j| {
                let var = (sq[j] / n[j] as f64 - mean[j] * mean[j]).max(0.0);
                if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 }
            })
            .collect();
        Ok(Scaling {
            mean,
            std,
            any_missing,
        })
    }

    /// Standardised rows, missing values at the mean (0).
    fn apply(&self, frame: &Frame) -> Array2<f64> {
        let f = frame.features.len();
        Array2::from_shape_fn((frame.rows(), f), |(i, j)| {
            let x = frame.row(i)[j];
            if x.is_nan() {
                0.0
            } else {
                (x - self.mean[j]) / self.std[j]
            }
        })
    }

    /// Weights on standardised features → weights and bias on raw ones.
    fn fold(&self, w: &Array2<f64>, b: &Array1<f64>) -> (Vec<f32>, Vec<f32>) {
        let (f, k) = w.dim();
        let mut weights = Vec::with_capacity(f * k);
        for j in 0..f {
            for c in 0..k {
                weights.push((w[[j, c]] / self.std[j]) as f32);
            }
        }
        let bias = (0..k)
            .map(|c| {
                let shift: f64 = (0..f).map(|j| self.mean[j] * w[[j, c]] / self.std[j]).sum();
                (b[c] - shift) as f32
            })
            .collect();
        (weights, bias)
    }
}

/// Fits `algorithm` on `frame`: the model as a [`Linear`] graph.
pub fn fit(
    algorithm: Algorithm,
    settings: &Settings,
    frame: &Frame,
) -> Result<Linear, TrainerError> {
    let scaling = Scaling::of(frame)?;
    let z = scaling.apply(frame);
    let (w, b, head) = match (&frame.y, algorithm) {
        (Target::Classes(y), Algorithm::Logistic) => {
            let distinct: std::collections::BTreeSet<i64> = y.iter().copied().collect();
            if distinct.len() < 2 {
                return Err(TrainerError::Data(format!(
                    "the label has one class only ({}): nothing to tell apart",
                    y[0]
                )));
            }
            let data = Dataset::new(z, Array1::from(y.clone()));
            let fitted = MultiLogisticRegression::default()
                .max_iterations(settings.max_iterations)
                .alpha(settings.alpha)
                .gradient_tolerance(settings.gradient_tolerance)
                .fit(&data)
                .map_err(|e| TrainerError::Fit(e.to_string()))?;
            (
                fitted.params().to_owned(),
                fitted.intercept().to_owned(),
                Head::Classifier {
                    classes: fitted.classes().to_vec(),
                },
            )
        }
        (Target::Values(y), Algorithm::Linear) => {
            let data = Dataset::new(z, Array1::from(y.clone()));
            let fitted = LinearRegression::new()
                .fit(&data)
                .map_err(|e| TrainerError::Fit(e.to_string()))?;
            let w = fitted.params().clone().insert_axis(ndarray::Axis(1));
            (w, Array1::from(vec![fitted.intercept()]), Head::Regressor)
        }
        _ => {
            return Err(TrainerError::Settings(format!(
                "the {} trainer needs {} labels",
                algorithm.name(),
                if algorithm.classifies() {
                    "class"
                } else {
                    "numeric"
                }
            )));
        }
    };
    if w.iter().chain(b.iter()).any(|x| !x.is_finite()) {
        return Err(TrainerError::Fit(
            "the fit diverged (weights are not finite)".into(),
        ));
    }
    let (weights, bias) = scaling.fold(&w, &b);
    Ok(Linear {
        features: frame.features.len(),
        fill: scaling
            .any_missing
            .then(|| scaling.mean.iter().map(|m| *m as f32).collect()),
        weights,
        bias,
        head,
    })
}

impl Linear {
    /// The graph's answers computed here (f32, as the ONNX runs): per row
    /// the class code and probabilities, or the value.
    pub fn predict(&self, frame: &Frame) -> Vec<(Option<i64>, Vec<f32>)> {
        let k = self.bias.len();
        (0..frame.rows())
            .map(|i| {
                let row: Vec<f32> = frame
                    .row(i)
                    .iter()
                    .enumerate()
                    .map(|(j, x)| match (&self.fill, x.is_nan()) {
                        (Some(fill), true) => fill[j],
                        _ => *x as f32,
                    })
                    .collect();
                let scores: Vec<f32> = (0..k)
                    .map(|c| {
                        row.iter()
                            .enumerate()
                            .map(|(j, x)| x * self.weights[j * k + c])
                            .sum::<f32>()
                            + self.bias[c]
                    })
                    .collect();
                match &self.head {
                    Head::Regressor => (None, scores),
                    Head::Classifier { classes } => {
                        let top = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let e: Vec<f32> = scores.iter().map(|s| (s - top).exp()).collect();
                        let total: f32 = e.iter().sum();
                        let best = scores
                            .iter()
                            .enumerate()
                            .fold(0, |b, (c, s)| if *s > scores[b] { c } else { b });
                        (Some(classes[best]), e.iter().map(|x| x / total).collect())
                    }
                }
            })
            .collect()
    }
}
