//! Data quality, apart from drift: what a broken sensor or pipeline does to a
//! column (it goes missing, sticks at one value, leaves the training range,
//! invents categories). A column's reference profile is compared with counts
//! of what was observed; both are small summaries, so the same checks run on a
//! data scientist's raw files and on the counts devices send.
//!
//! Anomalies are named as TensorFlow Data Validation names them where one fits
//! (`tensorflow/data-validation` g3doc/anomalies.md). Every threshold leaves
//! room for sampling noise, so a sample drawn from the reference distribution
//! raises nothing: a fresh value lands above the largest of n reference
//! values with probability 1/(n+1), and a category unseen in n values turns up
//! about as often as the categories seen once (Good–Turing).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::table::{Kind, Values};

/// What the reference sample says about one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceColumn {
    pub kind: Kind,
    pub rows: u64,
    pub missing: u64,
    /// Numeric: range of the present values, and whether all are integers.
    pub min: f64,
    pub max: f64,
    pub integer: bool,
    /// Categorical: count per category.
    pub domain: BTreeMap<String, u64>,
    /// Distinct present values, and the share of the most frequent one.
    pub distinct: u64,
    pub top_share: f64,
    /// Values seen exactly once (the Good–Turing estimate of unseen ones).
    pub singletons: u64,
}

/// What was observed of one column in the current data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub rows: u64,
    pub missing: u64,
    /// Numeric: values below the reference minimum / above its maximum, and
    /// the extremes seen.
    pub below: u64,
    pub above: u64,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// Categorical: count per category the reference lacks.
    pub unknown: BTreeMap<String, u64>,
    /// The one value every present value equals, if they all do.
    pub constant: Option<String>,
}

/// One data-quality finding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Anomaly {
    pub column: String,
    /// TFDV's name for it, e.g. `FEATURE_TYPE_LOW_FRACTION_PRESENT`.
    pub anomaly: String,
    pub detail: String,
}

/// Present values of a column, for the profile and the observation.
fn present(values: &Values) -> Vec<String> {
    match values {
        Values::Numeric(v) => v.iter().flatten().map(|x| x.to_string()).collect(),
        Values::Categorical(v) => v.iter().flatten().cloned().collect(),
    }
}

impl ReferenceColumn {
    /// Profiles a reference column.
    pub fn of(values: &Values) -> ReferenceColumn {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for v in present(values) {
            *counts.entry(v).or_default() += 1;
        }
        let n_present = counts.values().sum::<u64>();
        let (mut min, mut max, mut integer) = (f64::INFINITY, f64::NEG_INFINITY, true);
        if let Values::Numeric(v) = values {
            for x in v.iter().flatten() {
                min = min.min(*x);
                max = max.max(*x);
                integer &= x.fract() == 0.0;
            }
        }
        ReferenceColumn {
            kind: values.kind(),
            rows: values.len() as u64,
            missing: values.missing() as u64,
            min,
            max,
            integer,
            distinct: counts.len() as u64,
            top_share: counts
                .values()
                .max()
                .map_or(0.0, |m| *m as f64 / n_present.max(1) as f64),
            singletons: counts.values().filter(|c| **c == 1).count() as u64,
            domain: if values.kind() == Kind::Categorical {
                counts
            } else {
                BTreeMap::new()
            },
        }
    }

    /// Counts what `values` (the same column, current data) show against this
    /// profile.
    pub fn observe(&self, values: &Values) -> Observed {
        let mut o = Observed {
            rows: values.len() as u64,
            missing: values.missing() as u64,
            ..Observed::default()
        };
        match values {
            Values::Numeric(v) => {
                for x in v.iter().flatten() {
                    o.below += u64::from(*x < self.min);
                    o.above += u64::from(*x > self.max);
                    o.min = Some(o.min.map_or(*x, |m| m.min(*x)));
                    o.max = Some(o.max.map_or(*x, |m| m.max(*x)));
                }
            }
            Values::Categorical(v) => {
                for s in v.iter().flatten() {
                    if !self.domain.contains_key(s) {
                        *o.unknown.entry(s.clone()).or_default() += 1;
                    }
                }
            }
        }
        let values = present(values);
        if let Some(first) = values.first()
            && values.iter().all(|v| v == first)
        {
            o.constant = Some(first.clone());
        }
        o
    }

    fn present(&self) -> u64 {
        self.rows - self.missing
    }
}

/// Three standard errors of a share `p` estimated from `n` values.
fn noise(p: f64, n: u64) -> f64 {
    3.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The anomalies of column `column` observed as `o` against `r`.
pub fn check(column: &str, r: &ReferenceColumn, o: &Observed) -> Vec<Anomaly> {
    let mut out = vec![];
    let mut push = |anomaly: &str, detail: String| {
        out.push(Anomaly {
            column: column.to_string(),
            anomaly: anomaly.to_string(),
            detail,
        })
    };
    let present = o.rows - o.missing;
    if o.rows == 0 {
        return out;
    }
    if present == 0 {
        if r.present() > 0 {
            push(
                "FEATURE_TYPE_NOT_PRESENT",
                format!("all {} values are missing", o.rows),
            );
        }
        return out;
    }
    // Missing more often than in the reference.
    let ref_missing = r.missing as f64 / r.rows.max(1) as f64;
    let cur_missing = o.missing as f64 / o.rows as f64;
    if cur_missing > ref_missing + 0.05 + noise(ref_missing, o.rows) {
        push(
            "FEATURE_TYPE_LOW_FRACTION_PRESENT",
            format!(
                "{} of values are missing, {} in the reference",
                percent(cur_missing),
                percent(ref_missing)
            ),
        );
    }
    // Stuck at one value, where the reference would almost never give one
    // value `present` times in a row (chance below one in a million).
    if let Some(value) = &o.constant
        && r.distinct > 1
        && present >= 2
        && r.top_share.powf(present as f64) < 1e-6
    {
        push(
            "FEATURE_TYPE_LOW_UNIQUE",
            format!(
                "all {present} present values are {value}; the reference has {} distinct values",
                r.distinct
            ),
        );
    }
    match r.kind {
        Kind::Numeric if r.present() > 0 => {
            // Beyond the training range more often than chance allows.
            let q = 1.0 / (r.present() + 1) as f64;
            let allowed = q.max(0.01) + noise(q, present);
            let (big, small) = if r.integer {
                ("INT_TYPE_BIG_INT", "INT_TYPE_SMALL_INT")
            } else {
                ("FLOAT_TYPE_BIG_FLOAT", "FLOAT_TYPE_SMALL_FLOAT")
            };
            let share_above = o.above as f64 / present as f64;
            if share_above > allowed {
                push(
                    big,
                    format!(
                        "{} of values are above the reference maximum {} (largest {})",
                        percent(share_above),
                        r.max,
                        o.max.unwrap_or(f64::NAN)
                    ),
                );
            }
            let share_below = o.below as f64 / present as f64;
            if share_below > allowed {
                push(
                    small,
                    format!(
                        "{} of values are below the reference minimum {} (smallest {})",
                        percent(share_below),
                        r.min,
                        o.min.unwrap_or(f64::NAN)
                    ),
                );
            }
        }
        Kind::Categorical => {
            let unknown: u64 = o.unknown.values().sum();
            let q = r.singletons as f64 / r.present().max(1) as f64;
            let share = unknown as f64 / present as f64;
            if unknown > 0 && share > q + noise(q.max(1.0 / r.present().max(1) as f64), present) {
                let mut seen: Vec<(&String, &u64)> = o.unknown.iter().collect();
                seen.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
                let names: Vec<String> = seen
                    .iter()
                    .take(5)
                    .map(|(k, n)| format!("{k} ({n})"))
                    .collect();
                push(
                    "ENUM_TYPE_UNEXPECTED_STRING_VALUES",
                    format!(
                        "{} of values are categories the reference lacks: {}{}",
                        percent(share),
                        names.join(", "),
                        if seen.len() > 5 { ", …" } else { "" }
                    ),
                );
            }
        }
        Kind::Numeric => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric(v: &[f64]) -> Values {
        Values::Numeric(v.iter().map(|x| Some(*x)).collect())
    }

    #[test]
    fn a_stuck_sensor_a_gap_and_a_range_break_are_named() {
        let reference: Vec<f64> = (0..500).map(|i| (i % 97) as f64 * 0.37).collect();
        let r = ReferenceColumn::of(&numeric(&reference));
        assert!(!r.integer && r.distinct == 97);
        let stuck = check("t", &r, &r.observe(&numeric(&[0.0; 40])));
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert_eq!(stuck[0].anomaly, "FEATURE_TYPE_LOW_UNIQUE");
        // Twenty missing of a hundred, against none in the reference.
        let mut gaps: Vec<Option<f64>> = reference[..100].iter().map(|x| Some(*x)).collect();
        for g in gaps.iter_mut().step_by(5) {
            *g = None;
        }
        let found = check("t", &r, &r.observe(&Values::Numeric(gaps)));
        assert_eq!(
            found[0].anomaly, "FEATURE_TYPE_LOW_FRACTION_PRESENT",
            "{found:?}"
        );
        let mut high = reference[..100].to_vec();
        high[..5].fill(1e3);
        let found = check("t", &r, &r.observe(&numeric(&high)));
        assert_eq!(found[0].anomaly, "FLOAT_TYPE_BIG_FLOAT", "{found:?}");
        assert!(found[0].detail.contains("largest 1000"), "{found:?}");
        // The reference itself raises nothing.
        assert!(check("t", &r, &r.observe(&numeric(&reference))).is_empty());
        assert!(
            check("t", &r, &r.observe(&Values::Numeric(vec![None; 3])))[0]
                .anomaly
                .contains("NOT_PRESENT")
        );
    }

    #[test]
    fn unknown_categories_beyond_the_good_turing_share() {
        let cats =
            |v: &[&str]| Values::Categorical(v.iter().map(|s| Some(s.to_string())).collect());
        let mut reference = vec!["a"; 300];
        reference.extend(["b"; 200]);
        let r = ReferenceColumn::of(&cats(&reference));
        let mut current = vec!["a"; 90];
        current.extend(["zz"; 10]);
        let found = check("c", &r, &r.observe(&cats(&current)));
        assert_eq!(found[0].anomaly, "ENUM_TYPE_UNEXPECTED_STRING_VALUES");
        assert!(found[0].detail.contains("zz (10)"), "{found:?}");
        // One stray value in a thousand is noise.
        let mut current = vec!["a"; 999];
        current.push("zz");
        assert!(check("c", &r, &r.observe(&cats(&current))).is_empty());
    }
}
