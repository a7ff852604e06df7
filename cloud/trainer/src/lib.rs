//! Training a candidate model: dataset rows in, an ONNX file and its holdout
//! metrics out.
//!
//! Data path: a dataset file and its label column → [`Frame`] (numeric
//! features, missing = NaN; [`data`]) → split into training and holdout rows
//! (seeded) or a separate holdout file → a trainer:
//! - built in ([`builtin`]): linfa's logistic or linear regression on
//!   standardised features → [`onnx::Linear`] → ONNX bytes, loaded back in
//!   tract and run on the holdout rows ([`native`]), whose answers must equal
//!   the fitted model's own (the export is checked before anything uses it);
//! - or any command ([`external`]) that writes an ONNX file (and optionally a
//!   metrics JSON), under a time limit, its output lines streamed to the caller.
//!
//! [`metrics`] scores predictions against the holdout labels the way
//! scikit-learn does (`wasmops_drift::performance`).

pub mod builtin;
pub mod data;
pub mod external;
pub mod metrics;
pub mod native;
pub mod onnx;

pub use builtin::{Algorithm, Settings};
pub use data::{Frame, Target};

/// Why training did not give a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    #[error("the dataset: {0}")]
    Data(String),
    #[error("the trainer's settings: {0}")]
    Settings(String),
    #[error("training failed: {0}")]
    Fit(String),
    #[error("the trained model: {0}")]
    Model(String),
    #[error("the trainer command: {0}")]
    Command(String),
    #[error("the trainer ran past its time limit of {0} s and was stopped")]
    TimedOut(u64),
}

/// A built-in trainer's result.
#[derive(Debug, Clone)]
pub struct Trained {
    pub onnx: Vec<u8>,
    /// On the holdout rows, computed from the ONNX file's own answers.
    pub metrics: serde_json::Value,
    /// What trained it, e.g. `builtin:logistic wasmops-trainer 0.1.0`.
    pub code: String,
}

/// Largest difference between a built-in model's own probabilities (or
/// values, relative) and its ONNX file's in tract: both compute in f32, in
/// a different order.
pub const EXPORT_TOLERANCE: f32 = 1e-4;

/// Fits `algorithm` on `train`, writes it as ONNX, checks the file against
/// the fitted model on `holdout`, and scores it there.
pub fn train_builtin(
    algorithm: Algorithm,
    settings: &Settings,
    train: &Frame,
    holdout: &Frame,
) -> Result<Trained, TrainerError> {
    if !train.same_columns(holdout) {
        return Err(TrainerError::Data(format!(
            "the holdout's columns ({}) differ from the training data's ({})",
            holdout.features.join(", "),
            train.features.join(", ")
        )));
    }
    let model = builtin::fit(algorithm, settings, train)?;
    let code = format!(
        "builtin:{} wasmops-trainer {}",
        algorithm.name(),
        env!("CARGO_PKG_VERSION")
    );
    let onnx = model.to_onnx(&code);
    let ours = model.predict(holdout);
    let theirs = native::run(&onnx, holdout)?;
    native::agree(&ours, &theirs, EXPORT_TOLERANCE)
        .map_err(|e| TrainerError::Model(format!("the ONNX export disagrees with the fit: {e}")))?;
    let classes = match &model.head {
        onnx::Head::Classifier { classes } => classes.clone(),
        onnx::Head::Regressor => vec![],
    };
    let metrics = metrics::score(&theirs, &holdout.y, &classes)?;
    Ok(Trained {
        onnx,
        metrics,
        code,
    })
}
