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

use crate::table::Values;

pub use wasmops_profile::ColumnProfile;
use wasmops_profile::code_key;

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

/// The reference profile of a column of a data scientist's file (the same
/// inference `wasmops build --training-data` signs into claims).
pub fn profile(name: &str, values: &Values) -> ColumnProfile {
    match values {
        Values::Numeric(v) => ColumnProfile::of_numbers(name, v),
        Values::Categorical(v) => ColumnProfile::of_text(name, v),
    }
}

/// Counts what `values` (the same column, current data) show against `r`.
pub fn observe(r: &ColumnProfile, values: &Values) -> Observed {
    let mut o = Observed {
        rows: values.len() as u64,
        missing: values.missing() as u64,
        ..Observed::default()
    };
    let mut unknown = |key: String| {
        if !r.domain.contains_key(&key) {
            *o.unknown.entry(key).or_default() += 1;
        }
    };
    let keys: Vec<String> = match values {
        Values::Numeric(v) => v.iter().flatten().map(|x| code_key(*x)).collect(),
        Values::Categorical(v) => v.iter().flatten().cloned().collect(),
    };
    if r.is_categorical() {
        keys.iter().cloned().for_each(&mut unknown);
    }
    if let Values::Numeric(v) = values
        && !r.is_categorical()
    {
        let (lo, hi) = (
            r.min.unwrap_or(f64::NEG_INFINITY),
            r.max.unwrap_or(f64::INFINITY),
        );
        for x in v.iter().flatten() {
            o.below += u64::from(*x < lo);
            o.above += u64::from(*x > hi);
            o.min = Some(o.min.map_or(*x, |m| m.min(*x)));
            o.max = Some(o.max.map_or(*x, |m| m.max(*x)));
        }
    }
    if let Some(first) = keys.first()
        && keys.iter().all(|v| v == first)
    {
        o.constant = Some(first.clone());
    }
    o
}

/// Three standard errors of a share `p` estimated from `n` values.
fn noise(p: f64, n: u64) -> f64 {
    3.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// The anomalies of column `column` observed as `o` against `r`.
pub fn check(column: &str, r: &ColumnProfile, o: &Observed) -> Vec<Anomaly> {
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
    match r.is_categorical() {
        false if r.present() > 0 => {
            // Beyond the training range more often than chance allows.
            let q = 1.0 / (r.present() + 1) as f64;
            let allowed = q.max(0.01) + noise(q, present);
            let (big, small) = if r.integer {
                ("INT_TYPE_BIG_INT", "INT_TYPE_SMALL_INT")
            } else {
                ("FLOAT_TYPE_BIG_FLOAT", "FLOAT_TYPE_SMALL_FLOAT")
            };
            let sides = [
                (big, o.above, "above", "maximum", r.max, "largest", o.max),
                (small, o.below, "below", "minimum", r.min, "smallest", o.min),
            ];
            for (anomaly, beyond, side, bound, reference, extreme, seen) in sides {
                let share = beyond as f64 / present as f64;
                if share > allowed {
                    push(
                        anomaly,
                        format!(
                            "{} of values are {side} the reference {bound} {} ({extreme} {})",
                            percent(share),
                            reference.unwrap_or(f64::NAN),
                            seen.unwrap_or(f64::NAN)
                        ),
                    );
                }
            }
        }
        true => {
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
        false => {}
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
        let r = profile("t", &numeric(&reference));
        assert!(!r.integer && r.distinct == 97);
        let stuck = check("t", &r, &observe(&r, &numeric(&[0.0; 40])));
        assert_eq!(stuck.len(), 1, "{stuck:?}");
        assert_eq!(stuck[0].anomaly, "FEATURE_TYPE_LOW_UNIQUE");
        // Twenty missing of a hundred, against none in the reference.
        let mut gaps: Vec<Option<f64>> = reference[..100].iter().map(|x| Some(*x)).collect();
        for g in gaps.iter_mut().step_by(5) {
            *g = None;
        }
        let found = check("t", &r, &observe(&r, &Values::Numeric(gaps)));
        assert_eq!(
            found[0].anomaly, "FEATURE_TYPE_LOW_FRACTION_PRESENT",
            "{found:?}"
        );
        let mut high = reference[..100].to_vec();
        high[..5].fill(1e3);
        let found = check("t", &r, &observe(&r, &numeric(&high)));
        assert_eq!(found[0].anomaly, "FLOAT_TYPE_BIG_FLOAT", "{found:?}");
        assert!(found[0].detail.contains("largest 1000"), "{found:?}");
        // The reference itself raises nothing.
        assert!(check("t", &r, &observe(&r, &numeric(&reference))).is_empty());
        assert!(
            check("t", &r, &observe(&r, &Values::Numeric(vec![None; 3])))[0]
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
        let r = profile("c", &cats(&reference));
        let mut current = vec!["a"; 90];
        current.extend(["zz"; 10]);
        let found = check("c", &r, &observe(&r, &cats(&current)));
        assert_eq!(found[0].anomaly, "ENUM_TYPE_UNEXPECTED_STRING_VALUES");
        assert!(found[0].detail.contains("zz (10)"), "{found:?}");
        // One stray value in a thousand is noise.
        let mut current = vec!["a"; 999];
        current.push("zz");
        assert!(check("c", &r, &observe(&r, &cats(&current))).is_empty());
    }
}
