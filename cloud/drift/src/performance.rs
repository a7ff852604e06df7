//! How good a model's predictions were, once outcomes are known (delayed
//! labels joined to prediction records), and how good it expects to be
//! before they are: the metrics scikit-learn reports, computed the same way
//! (`scripts/make_drift_fixtures.py` writes sklearn's values;
//! `tests/fixtures.rs` compares).

use serde::Serialize;

/// Classifier predictions with their outcomes: the predicted class index,
/// the class probabilities (may be empty), and the true class index.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub predicted: usize,
    pub probabilities: Vec<f64>,
    pub actual: usize,
}

/// Realised performance of a classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Classification {
    pub count: u64,
    pub accuracy: f64,
    /// ROC AUC (binary; one-vs-rest macro average for more classes), when
    /// every row has probabilities and each class averaged has both outcomes.
    pub auc: Option<f64>,
    /// Mean negative log-likelihood of the true class, when every row has
    /// probabilities.
    pub log_loss: Option<f64>,
}

/// Realised performance of a regressor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Regression {
    pub count: u64,
    pub mae: f64,
    pub rmse: f64,
}

/// Accuracy, AUC and log-loss of `rows` (`None` without rows).
pub fn classification(rows: &[Scored]) -> Option<Classification> {
    if rows.is_empty() {
        return None;
    }
    let n = rows.len() as f64;
    let accuracy = rows.iter().filter(|r| r.predicted == r.actual).count() as f64 / n;
    let classes = rows
        .iter()
        .map(|r| r.probabilities.len())
        .min()
        .unwrap_or(0);
    let with_probabilities = classes >= 2
        && rows
            .iter()
            .all(|r| r.probabilities.len() == classes && r.actual < classes);
    let (auc, log_loss) = if with_probabilities {
        (auc(rows, classes), Some(log_loss(rows)))
    } else {
        (None, None)
    };
    Some(Classification {
        count: rows.len() as u64,
        accuracy,
        auc,
        log_loss,
    })
}

/// sklearn's `roc_auc_score`: the positive class's probability for two
/// classes; for more, the unweighted mean over classes of one-vs-rest AUCs
/// (`multi_class="ovr"`, `average="macro"`).
fn auc(rows: &[Scored], classes: usize) -> Option<f64> {
    let one = |class: usize| -> Option<f64> {
        let scored: Vec<(f64, bool)> = rows
            .iter()
            .map(|r| (r.probabilities[class], r.actual == class))
            .collect();
        binary_auc(&scored)
    };
    if classes == 2 {
        return one(1);
    }
    let mut sum = 0.0;
    for c in 0..classes {
        sum += one(c)?;
    }
    Some(sum / classes as f64)
}

/// Area under the ROC curve of (score, positive) pairs: the probability
/// that a random positive outscores a random negative, ties counting half
/// (Mann–Whitney with mid-ranks). `None` without both outcomes.
pub fn binary_auc(scored: &[(f64, bool)]) -> Option<f64> {
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = scored.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|a, b| scored[*a].0.total_cmp(&scored[*b].0));
    // Sum of the positives' mid-ranks (1-based).
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scored[order[j + 1]].0 == scored[order[i]].0 {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid * order[i..=j].iter().filter(|k| scored[**k].1).count() as f64;
        i = j + 1;
    }
    let (p, q) = (positives as f64, negatives as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

/// sklearn's `log_loss`: each row's probabilities normalised to sum 1 and
/// clipped to [ε, 1 − ε] with ε the float64 machine epsilon.
fn log_loss(rows: &[Scored]) -> f64 {
    let eps = f64::EPSILON;
    let total: f64 = rows
        .iter()
        .map(|r| {
            let sum: f64 = r.probabilities.iter().sum();
            let p = if sum > 0.0 {
                r.probabilities[r.actual] / sum
            } else {
                0.0
            };
            -p.clamp(eps, 1.0 - eps).ln()
        })
        .sum();
    total / rows.len() as f64
}

/// MAE and RMSE of (predicted, actual) pairs (`None` without pairs).
pub fn regression(pairs: &[(f64, f64)]) -> Option<Regression> {
    if pairs.is_empty() {
        return None;
    }
    let n = pairs.len() as f64;
    let mae = pairs.iter().map(|(p, a)| (p - a).abs()).sum::<f64>() / n;
    let mse = pairs.iter().map(|(p, a)| (p - a) * (p - a)).sum::<f64>() / n;
    Some(Regression {
        count: pairs.len() as u64,
        mae,
        rmse: mse.sqrt(),
    })
}

/// Accuracy a classifier expects of itself before outcomes are known: the
/// mean of its top class probability (NannyML's confidence-based
/// performance estimation, for accuracy; right when the model is
/// calibrated on the data it sees). An estimate, not a measurement.
pub fn expected_accuracy(confidence_sum: f64, rows: u64) -> Option<f64> {
    (rows > 0).then(|| confidence_sum / rows as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_as_half() {
        // Pairs (positive, negative): 0.9 beats both, 0.5 ties one and beats one: 3.5 of 4.
        let s = [(0.9, true), (0.5, true), (0.5, false), (0.1, false)];
        assert_eq!(binary_auc(&s), Some((2.0 + 1.5) / 4.0));
        assert_eq!(binary_auc(&[(0.3, true)]), None);
    }

    #[test]
    fn regression_metrics() {
        let r = regression(&[(1.0, 2.0), (3.0, 3.0), (5.0, 2.0)]).unwrap();
        assert_eq!(r.mae, 4.0 / 3.0);
        assert!((r.rmse - (10.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!(expected_accuracy(1.5, 2), Some(0.75));
    }
}
