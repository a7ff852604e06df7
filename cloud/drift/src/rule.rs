//! Which test judges a column, and its verdict. The default is Evidently's
//! (`registry._get_default_stattest`): with at most 1000 reference values, a
//! two-sample KS test for numeric columns with more than 5 distinct values,
//! chi-square for other columns with more than 2, a z-test of proportions for
//! the rest (drift at p < 0.05); above 1000, the normalised Wasserstein
//! distance for numeric columns with more than 5 distinct values and
//! Jensen–Shannon for the rest (drift at ≥ 0.1).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats;
use crate::table::Kind;

/// Reference samples larger than this are judged by distances, not p-values
/// (large samples make every tiny difference "significant").
pub const SMALL_REFERENCE: usize = 1000;

/// A drift test or distance, named as in Evidently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Two-sample Kolmogorov–Smirnov p-value (numeric).
    Ks,
    /// Pearson chi-square p-value against the reference shares.
    Chisquare,
    /// z-test of two proportions, p-value (at most two values).
    Z,
    /// W1 / reference standard deviation (numeric).
    WassersteinNorm,
    /// Jensen–Shannon distance of the binned shares.
    Jensenshannon,
    /// Population stability index of the binned shares.
    Psi,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Ks,
        Method::Chisquare,
        Method::Z,
        Method::WassersteinNorm,
        Method::Jensenshannon,
        Method::Psi,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Ks => "ks",
            Method::Chisquare => "chisquare",
            Method::Z => "z",
            Method::WassersteinNorm => "wasserstein_norm",
            Method::Jensenshannon => "jensenshannon",
            Method::Psi => "psi",
        }
    }

    /// A p-value drifts below its threshold; a distance at or above it.
    pub fn is_p_value(self) -> bool {
        matches!(self, Method::Ks | Method::Chisquare | Method::Z)
    }

    /// Evidently's default thresholds: 0.05 for p-values, 0.1 for distances.
    pub fn default_threshold(self) -> f64 {
        if self.is_p_value() { 0.05 } else { 0.1 }
    }

    pub fn drifted(self, score: f64, threshold: f64) -> bool {
        if self.is_p_value() {
            score < threshold
        } else {
            score >= threshold
        }
    }

    /// Whether the method applies to a column of `kind`.
    pub fn applies_to(self, kind: Kind) -> bool {
        kind == Kind::Numeric || !matches!(self, Method::Ks | Method::WassersteinNorm)
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Method, String> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                format!("unknown drift method `{s}`; one of {}", names.join(", "))
            })
    }
}

/// Evidently's default method for a column of `kind` whose reference holds
/// `reference_len` values and whose two samples together hold `distinct`
/// distinct values.
pub fn default_method(kind: Kind, reference_len: usize, distinct: usize) -> Method {
    let numeric_spread = kind == Kind::Numeric && distinct > 5;
    match (reference_len <= SMALL_REFERENCE, numeric_spread) {
        (true, true) => Method::Ks,
        (true, false) if distinct > 2 => Method::Chisquare,
        (true, false) => Method::Z,
        (false, true) => Method::WassersteinNorm,
        (false, false) => Method::Jensenshannon,
    }
}

/// The present (non-missing) values of one column in both samples.
#[derive(Debug, Clone, Copy)]
pub enum Samples<'a> {
    Numeric(&'a [f64], &'a [f64]),
    Categorical(&'a [&'a str], &'a [&'a str]),
}

/// Reference and current shares per bin, as Evidently bins for PSI and
/// Jensen–Shannon: numbers with more than 20 distinct reference values in
/// Sturges bins over both samples, everything else one bin per value.
#[derive(Debug, Clone, PartialEq)]
pub struct Binned {
    /// Bin names for a chart: `[lo, hi)` ranges or the values.
    pub labels: Vec<String>,
    pub reference: Vec<f64>,
    pub current: Vec<f64>,
}

/// Every statistic of one column: each test where it applies (`None` where it
/// does not, or has no answer), and the binned shares.
#[derive(Debug, Clone)]
pub struct Scores {
    pub ks: Option<f64>,
    pub chisquare: Option<f64>,
    pub z: Option<f64>,
    pub wasserstein_norm: Option<f64>,
    pub jensenshannon: f64,
    pub psi: f64,
    /// Distinct values in both samples together.
    pub distinct: usize,
    pub binned: Binned,
}

impl Scores {
    pub fn get(&self, method: Method) -> Option<f64> {
        match method {
            Method::Ks => self.ks,
            Method::Chisquare => self.chisquare,
            Method::Z => self.z,
            Method::WassersteinNorm => self.wasserstein_norm,
            Method::Jensenshannon => Some(self.jensenshannon),
            Method::Psi => Some(self.psi),
        }
    }
}

/// Computes every statistic of two non-empty samples.
pub fn scores(samples: Samples<'_>) -> Scores {
    match samples {
        Samples::Numeric(r, c) => {
            let counts = value_counts(r, c, f64::total_cmp);
            let reference_distinct = {
                let mut v = r.to_vec();
                v.sort_by(f64::total_cmp);
                v.dedup();
                v.len()
            };
            let binned = if reference_distinct > 20 {
                let all: Vec<f64> = r.iter().chain(c).copied().collect();
                let edges = stats::sturges_edges(&all);
                let share = |x: &[f64]| -> Vec<f64> {
                    let n = x.len() as f64;
                    stats::histogram(x, &edges).iter().map(|k| k / n).collect()
                };
                Binned {
                    labels: edges
                        .windows(2)
                        .map(|w| format!("{} – {}", short(w[0]), short(w[1])))
                        .collect(),
                    reference: share(r),
                    current: share(c),
                }
            } else {
                counts.binned(r.len(), c.len(), |v| short(*v))
            };
            let ks = stats::ks_two_sample(r, c).p_value;
            Scores {
                ks: Some(ks),
                wasserstein_norm: Some(stats::wasserstein_norm(r, c)),
                ..common(&counts, r.len(), c.len(), binned)
            }
        }
        Samples::Categorical(r, c) => {
            let counts = value_counts(r, c, |a, b| a.cmp(b));
            let binned = counts.binned(r.len(), c.len(), |v| v.to_string());
            common(&counts, r.len(), c.len(), binned)
        }
    }
}

fn common<T>(counts: &Counts<T>, nr: usize, nc: usize, binned: Binned) -> Scores {
    let (nr, nc) = (nr as f64, nc as f64);
    let expected: Vec<f64> = counts.values().map(|(r, _)| r * nc / nr).collect();
    let observed: Vec<f64> = counts.values().map(|(_, c)| c).collect();
    let z = match counts.len() {
        // Both samples one and the same value.
        0 | 1 => Some(1.0),
        // "Not the first value" is a hit on each side.
        2 => {
            let (r0, c0) = counts.values().next().unwrap_or((0.0, 0.0));
            Some(stats::z_test_p(nr - r0, nr, nc - c0, nc))
        }
        // A test of two proportions: for two values only.
        _ => None,
    };
    let mut with_fill = binned.clone();
    stats::fill_zeroes(&mut with_fill.reference);
    stats::fill_zeroes(&mut with_fill.current);
    Scores {
        ks: None,
        chisquare: stats::chi_square_p(&observed, &expected),
        z,
        wasserstein_norm: None,
        jensenshannon: stats::jensen_shannon(&binned.reference, &binned.current),
        psi: stats::psi(&with_fill.reference, &with_fill.current),
        distinct: counts.len(),
        binned,
    }
}

/// Counts per distinct value of both samples, in value order.
struct Counts<T>(Vec<(T, f64, f64)>);

fn value_counts<T: Copy>(r: &[T], c: &[T], cmp: impl Fn(&T, &T) -> Ordering) -> Counts<T> {
    let mut all: Vec<(T, bool)> = r
        .iter()
        .map(|v| (*v, true))
        .chain(c.iter().map(|v| (*v, false)))
        .collect();
    all.sort_by(|a, b| cmp(&a.0, &b.0));
    let mut out: Vec<(T, f64, f64)> = vec![];
    for (v, is_ref) in all {
        match out.last_mut() {
            Some(last) if cmp(&last.0, &v) == Ordering::Equal => {}
            _ => out.push((v, 0.0, 0.0)),
        }
        let last = out.last_mut().expect("pushed above");
        if is_ref {
            last.1 += 1.0;
        } else {
            last.2 += 1.0;
        }
    }
    Counts(out)
}

impl<T> Counts<T> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn values(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.0.iter().map(|(_, r, c)| (*r, *c))
    }

    fn binned(&self, nr: usize, nc: usize, label: impl Fn(&T) -> String) -> Binned {
        Binned {
            labels: self.0.iter().map(|(v, _, _)| label(v)).collect(),
            reference: self.0.iter().map(|(_, r, _)| r / nr as f64).collect(),
            current: self.0.iter().map(|(_, _, c)| c / nc as f64).collect(),
        }
    }
}

/// A number as a short label (4 significant digits).
pub fn short(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() >= 1e6 || x.abs() < 1e-3 {
        return format!("{x:.3e}");
    }
    let decimals = (3 - x.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".into() } else { s }
}

/// A method and threshold chosen for one column, or for all.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rule {
    pub method: Option<Method>,
    pub threshold: Option<f64>,
}

/// Per-column rules over a default one.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub default: Rule,
    pub columns: BTreeMap<String, Rule>,
}

impl Rules {
    /// The rule for `column`: its own settings first, then the default's.
    pub fn for_column(&self, column: &str) -> Rule {
        let own = self.columns.get(column).copied().unwrap_or_default();
        Rule {
            method: own.method.or(self.default.method),
            threshold: own.threshold.or(self.default.threshold),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_method_follows_evidently() {
        use Kind::*;
        assert_eq!(default_method(Numeric, 1000, 6), Method::Ks);
        assert_eq!(default_method(Numeric, 1000, 5), Method::Chisquare);
        assert_eq!(default_method(Numeric, 1000, 2), Method::Z);
        assert_eq!(default_method(Categorical, 10, 30), Method::Chisquare);
        assert_eq!(default_method(Numeric, 1001, 6), Method::WassersteinNorm);
        assert_eq!(default_method(Numeric, 1001, 5), Method::Jensenshannon);
        assert_eq!(default_method(Categorical, 5000, 2), Method::Jensenshannon);
    }

    #[test]
    fn verdicts_and_names() {
        assert!(Method::Ks.drifted(0.049, 0.05) && !Method::Ks.drifted(0.05, 0.05));
        assert!(Method::Psi.drifted(0.1, 0.1) && !Method::Psi.drifted(0.099, 0.1));
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>(), Ok(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.name());
        }
        assert!("kl".parse::<Method>().unwrap_err().contains("one of ks"));
        assert_eq!(short(1.50), "1.5");
        assert_eq!(short(14.020667), "14.02");
        assert_eq!(short(1234.6), "1235");
        assert_eq!(short(-0.0), "0");
        assert_eq!(short(2e-5), "2.000e-5");
    }
}
