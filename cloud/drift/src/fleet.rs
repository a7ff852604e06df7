//! Monitoring a model version from what its devices counted: per column the
//! drift verdict ([`binned::judge`]) and the data-quality findings
//! ([`quality::check`]), the dataset verdict, and the drift coefficient with
//! each column's contribution. The coordinator merges device summaries into
//! [`ColumnCounts`] (over a time bucket, a label selector, or one device) and
//! asks [`evaluate`]; nothing here knows about devices, MQTT or databases.

use std::collections::BTreeMap;

use serde::Serialize;
use wasmops_profile::{ColumnProfile, code_key};

use crate::binned::{self, BinCounts, Current};
use crate::quality::{self, Anomaly, Observed};
use crate::report::DEFAULT_DRIFT_SHARE;
use crate::rule::{Method, Rules};

/// What was counted of one column, merged over devices and windows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnCounts {
    /// Values seen, and those missing among them.
    pub rows: u64,
    pub missing: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Numeric columns: counts per profile bin, and beyond the training range.
    pub bins: Vec<u64>,
    pub below: u64,
    pub above: u64,
    /// Categorical columns: count per value.
    pub categories: BTreeMap<String, u64>,
}

impl ColumnCounts {
    fn current(&self, reference: &ColumnProfile) -> Current {
        if reference.is_categorical() {
            Current::Categories(self.categories.clone())
        } else {
            Current::Bins(BinCounts {
                counts: self.bins.clone(),
                min: self.min,
                max: self.max,
            })
        }
    }

    /// The counts as the data-quality checks read them.
    pub fn observed(&self, reference: &ColumnProfile) -> Observed {
        let present = self.rows.saturating_sub(self.missing);
        let constant = if present < 2 {
            None
        } else if reference.is_categorical() {
            (self.categories.len() == 1)
                .then(|| self.categories.keys().next().cloned())
                .flatten()
        } else {
            match (self.min, self.max) {
                (Some(a), Some(b)) if a == b => Some(code_key(a)),
                _ => None,
            }
        };
        Observed {
            rows: self.rows,
            missing: self.missing,
            below: self.below,
            above: self.above,
            min: self.min,
            max: self.max,
            unknown: self
                .categories
                .iter()
                .filter(|(k, _)| !reference.domain.contains_key(*k))
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
            constant,
        }
    }
}

/// One column's verdict from counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColumnVerdict {
    pub name: String,
    pub method: Method,
    /// `None` when there was nothing to judge (no value counted).
    pub score: Option<f64>,
    pub threshold: f64,
    pub drifted: bool,
    pub psi: Option<f64>,
    pub count: u64,
    /// Share of the drift coefficient (0 when nothing drifted).
    pub contribution: f64,
}

/// A version's verdict over one stretch of time (or one group of devices).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    pub dataset_drift: bool,
    /// Share of judged columns that drifted.
    pub drift_share: f64,
    /// Magnitude of dataset drift in [0, 1] ([`binned::drift_coefficient`]).
    pub coefficient: f64,
    pub columns: Vec<ColumnVerdict>,
    pub data_quality: Vec<Anomaly>,
}

/// Judges `counts` (by column name) against the reference `columns`.
/// Columns without counts are left out; `rules` set methods and thresholds.
pub fn evaluate(
    columns: &[ColumnProfile],
    counts: &BTreeMap<String, ColumnCounts>,
    rules: &Rules,
    drift_share: Option<f64>,
) -> Evaluation {
    let mut verdicts = vec![];
    let mut quality = vec![];
    let mut overlap = vec![];
    for reference in columns {
        let Some(c) = counts.get(&reference.name) else {
            continue;
        };
        quality.extend(quality::check(
            &reference.name,
            reference,
            &c.observed(reference),
        ));
        let rule = rules.for_column(&reference.name);
        let method = rule
            .method
            .unwrap_or_else(|| binned::default_method(reference));
        let judged = binned::judge(
            reference,
            &c.current(reference),
            Some(method),
            rule.threshold,
        );
        if let Some(j) = &judged {
            overlap.push((reference.name.clone(), j.bhattacharyya));
        }
        verdicts.push(ColumnVerdict {
            name: reference.name.clone(),
            method,
            score: judged.as_ref().map(|j| j.score),
            threshold: judged
                .as_ref()
                .map_or(rule.threshold.unwrap_or(method.default_threshold()), |j| {
                    j.threshold
                }),
            drifted: judged.as_ref().is_some_and(|j| j.drifted),
            psi: judged.as_ref().map(|j| j.psi),
            count: c.rows.saturating_sub(c.missing),
            contribution: 0.0,
        });
    }
    let (coefficient, contributions) = binned::drift_coefficient(&overlap);
    for (name, share) in contributions {
        if let Some(v) = verdicts.iter_mut().find(|v| v.name == name) {
            v.contribution = share;
        }
    }
    let judged = verdicts.iter().filter(|v| v.score.is_some()).count();
    let drifted = verdicts.iter().filter(|v| v.drifted).count();
    let share = if judged == 0 {
        0.0
    } else {
        drifted as f64 / judged as f64
    };
    Evaluation {
        dataset_drift: judged > 0 && share >= drift_share.unwrap_or(DEFAULT_DRIFT_SHARE),
        drift_share: share,
        coefficient,
        columns: verdicts,
        data_quality: quality,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str, values: impl Iterator<Item = f64>) -> ColumnProfile {
        ColumnProfile::of_numbers(name, &values.map(Some).collect::<Vec<_>>())
    }

    fn counts(reference: &ColumnProfile, values: impl Iterator<Item = f64>) -> ColumnCounts {
        let mut c = ColumnCounts::default();
        for x in values {
            c.rows += 1;
            if !reference.is_categorical() {
                c.bins.resize(reference.edges.len() + 1, 0);
                c.bins[reference.bin(x)] += 1;
                c.below += u64::from(reference.min.is_some_and(|m| x < m));
                c.above += u64::from(reference.max.is_some_and(|m| x > m));
            } else {
                *c.categories.entry(code_key(x)).or_default() += 1;
            }
            c.min = Some(c.min.map_or(x, |m: f64| m.min(x)));
            c.max = Some(c.max.map_or(x, |m: f64| m.max(x)));
        }
        c
    }

    /// A smooth stand-in for draws: the i-th of n quantiles of a spread.
    fn spread(n: usize, shift: f64, phase: f64) -> impl Iterator<Item = f64> {
        (0..n).map(move |i| shift + (((i as f64 + phase) * 0.618_033_988_7) % 1.0) * 4.0 - 2.0)
    }

    #[test]
    fn a_moved_column_drifts_and_carries_the_coefficient() {
        let a = profile("a", spread(4000, 0.0, 0.0));
        let b = profile("b", spread(4000, 0.0, 0.3));
        let mut seen = BTreeMap::new();
        seen.insert("a".to_string(), counts(&a, spread(2000, 0.0, 0.7)));
        seen.insert("b".to_string(), counts(&b, spread(2000, 0.6, 0.9)));
        let e = evaluate(&[a, b], &seen, &Rules::default(), None);
        let (va, vb) = (&e.columns[0], &e.columns[1]);
        assert!(!va.drifted && vb.drifted, "{e:#?}");
        assert_eq!(e.drift_share, 0.5);
        assert!(e.dataset_drift);
        assert!(vb.contribution > 0.9, "{e:#?}");
        assert!(e.coefficient > 0.1 && e.coefficient < 1.0);
        // The shifted column leaves the training range too.
        assert!(
            e.data_quality
                .iter()
                .any(|q| q.column == "b" && q.anomaly == "FLOAT_TYPE_BIG_FLOAT"),
            "{:?}",
            e.data_quality
        );
    }

    #[test]
    fn a_stuck_sensor_is_a_quality_finding() {
        let a = profile("a", spread(4000, 0.0, 0.0));
        let mut seen = BTreeMap::new();
        seen.insert("a".to_string(), counts(&a, std::iter::repeat_n(0.0, 200)));
        let e = evaluate(std::slice::from_ref(&a), &seen, &Rules::default(), None);
        assert!(
            e.data_quality
                .iter()
                .any(|q| q.anomaly == "FEATURE_TYPE_LOW_UNIQUE"),
            "{:?}",
            e.data_quality
        );
        // A column with no counts is not judged.
        let none = evaluate(&[a], &BTreeMap::new(), &Rules::default(), None);
        assert!(none.columns.is_empty() && !none.dataset_drift);
    }
}
