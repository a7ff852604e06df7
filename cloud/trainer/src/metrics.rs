//! Holdout metrics of a model's answers, as scikit-learn computes them
//! (`wasmops_drift::performance`, checked against sklearn there): a
//! classifier's accuracy, log-loss and ROC AUC; a regressor's MAE and RMSE.

use wasmops_drift::performance::{Scored, classification, regression};

use crate::native::Answers;
use crate::{Target, TrainerError};

/// The metrics of `answers` against `truth`, as a JSON object with `rows`.
/// `classes`: a classifier's class code per probability column (sorted
/// codes, as every trainer here and scikit-learn write them).
pub fn score(
    answers: &Answers,
    truth: &Target,
    classes: &[i64],
) -> Result<serde_json::Value, TrainerError> {
    match truth {
        Target::Classes(actual) => {
            let k = classes.len();
            if answers.iter().any(|(l, p)| l.is_none() || p.len() != k) {
                return Err(TrainerError::Model(format!(
                    "a classifier must answer a class code (int64) and {k} probabilities per row"
                )));
            }
            let index = |code: i64| classes.iter().position(|c| *c == code);
            let rows: Vec<Scored> = answers
                .iter()
                .zip(actual)
                .map(|((label, p), truth)| Scored {
                    predicted: index(label.expect("checked")).unwrap_or(k),
                    probabilities: p.iter().map(|x| *x as f64).collect(),
                    // A class the model never learnt: never right, no probability.
                    actual: index(*truth).unwrap_or(k + 1),
                })
                .collect();
            let accuracy = answers
                .iter()
                .zip(actual)
                .filter(|((l, _), t)| *l == Some(**t))
                .count() as f64
                / actual.len().max(1) as f64;
            let c = classification(&rows);
            Ok(serde_json::json!({
                "rows": actual.len(),
                "accuracy": accuracy,
                "log_loss": c.as_ref().and_then(|c| c.log_loss),
                "auc": c.as_ref().and_then(|c| c.auc),
            }))
        }
        Target::Values(actual) => {
            let pairs: Vec<(f64, f64)> = answers
                .iter()
                .zip(actual)
                .map(|((_, v), t)| (v.first().copied().unwrap_or(f32::NAN) as f64, *t))
                .collect();
            let r = regression(&pairs)
                .ok_or_else(|| TrainerError::Data("no holdout rows to score".into()))?;
            Ok(serde_json::json!({"rows": actual.len(), "mae": r.mae, "rmse": r.rmse}))
        }
    }
}
