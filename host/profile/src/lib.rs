//! What the training data looked like, column by column: the reference that
//! live data is judged against. `wasmops build --training-data` infers it
//! ([`ColumnProfile::of_numbers`], [`ColumnProfile::of_text`]) and signs it
//! into the component's claims; a device counts live values into the same
//! bins ([`ColumnProfile::bin`]) and categories ([`code_key`]); the
//! coordinator compares those counts with the reference counts here.
//!
//! Numeric columns get quantile bins (each holds about 1/[`BINS`] of the
//! training rows: equal-mass bins keep PSI and Jensen–Shannon sensitive where
//! the data is, and 20 of them resolve a half-std shift of a normal feature
//! to PSI ≈ 0.25); integer columns with few values are categorical codes,
//! counted per value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Quantile bins per numeric column (fewer when the data has fewer values).
pub const BINS: usize = 20;
/// Integer-valued columns with at most this many distinct values are
/// categorical codes (a class id, a count of doors), counted per value.
pub const MAX_CODES: usize = 10;
/// Categories kept per categorical column; rarer ones are lumped together.
pub const MAX_DOMAIN: usize = 256;
/// The quantiles a profile reports (as `numpy.quantile`, linear).
pub const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
/// Columns a profile holds at most (inputs and outputs each).
pub const MAX_COLUMNS: usize = 4096;

/// A column's kind, as drift and data-quality checks treat it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    /// Continuous or many-valued numbers: quantile bins.
    Numeric,
    /// Codes or names: counts per value.
    Categorical,
    /// Two values (0/1, yes/no): counts per value.
    Binary,
}

/// The whole reference: model inputs and, when known, model outputs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Training rows profiled.
    pub rows: u64,
    /// The model input whose `[rows, features]` columns `columns` describe,
    /// in order (feature j of this input is `columns[j]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    pub columns: Vec<ColumnProfile>,
    /// The training labels (for label drift against posted outcomes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<ColumnProfile>,
    /// The model's outputs on the training data, per output column.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<ColumnProfile>,
}

/// One column of the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnProfile {
    pub name: String,
    pub kind: ColumnKind,
    /// Rows, and rows without a value (empty, null or NaN).
    pub rows: u64,
    pub missing: u64,
    /// Numbers only: range, moments (population std), quantiles at [`QUANTILES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quantiles: Vec<f64>,
    /// Whether every value is a whole number.
    #[serde(default)]
    pub integer: bool,
    /// Numeric: inner bin edges (bin i holds edges[i-1] ≤ x < edges[i]) and
    /// the reference count of each of the `edges.len() + 1` bins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<u64>,
    /// Categorical and binary: count per value ([`code_key`] for numbers).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domain: BTreeMap<String, u64>,
    /// Distinct present values, the share of the most frequent one, and how
    /// many were seen exactly once (the Good–Turing estimate of unseen ones).
    pub distinct: u64,
    pub top_share: f64,
    pub singletons: u64,
}

/// How a model output's columns are named in a profile and in telemetry:
/// the tensor's name for `[rows]` and `[rows, 1]` outputs, `name[j]` for
/// column j of `[rows, k]`.
pub fn output_column(tensor: &str, column: usize, width: usize) -> String {
    if width == 1 {
        tensor.to_string()
    } else {
        format!("{tensor}[{column}]")
    }
}

/// How close to an edge a value counts as on it: devices feed the model
/// float32, so a training value of 5.1 reaches their counters as
/// 5.0999999, just below the edge 5.1 it sat on. Measured on iris (edges
/// are data values there, with heavy ties): without this tolerance the
/// binned W1/std of training rows replayed through devices averaged 0.09
/// per 800 rows — false drift from rounding alone.
pub fn tolerance(edge: f64) -> f64 {
    f64::from(f32::EPSILON) * edge.abs().max(1.0)
}

/// The bin of `x` among ascending `edges` (`0 ..= edges.len()`): past
/// every edge at or below it, within [`tolerance`].
pub fn bin_of(edges: &[f64], x: f64) -> usize {
    edges.partition_point(|e| *e <= x + tolerance(*e))
}

/// Whether `x` lies below `min` / above `max` by more than [`tolerance`].
pub fn beyond(min: Option<f64>, max: Option<f64>, x: f64) -> (bool, bool) {
    (
        min.is_some_and(|m| x < m - tolerance(m)),
        max.is_some_and(|m| x > m + tolerance(m)),
    )
}

/// The name a numeric code goes by in a domain: `3` for 3.0, `0` for -0.0.
pub fn code_key(x: f64) -> String {
    format!("{}", x + 0.0)
}

impl ColumnProfile {
    /// Profiles a numeric column; `None` and NaN are missing. Integer
    /// columns with at most [`MAX_CODES`] values become categorical (binary
    /// for two), the rest numeric with quantile bins.
    pub fn of_numbers(name: &str, values: &[Option<f64>]) -> ColumnProfile {
        let mut xs: Vec<f64> = values
            .iter()
            .flatten()
            .copied()
            .filter(|x| !x.is_nan())
            .map(|x| x + 0.0)
            .collect();
        xs.sort_by(f64::total_cmp);
        let present = xs.len();
        let integer = xs.iter().all(|x| x.fract() == 0.0);
        let mut runs: Vec<(f64, u64)> = vec![];
        for x in &xs {
            match runs.last_mut() {
                Some((v, n)) if v == x => *n += 1,
                _ => runs.push((*x, 1)),
            }
        }
        let kind = match runs.len() {
            _ if !integer || present == 0 => ColumnKind::Numeric,
            1 | 2 => ColumnKind::Binary,
            n if n <= MAX_CODES => ColumnKind::Categorical,
            _ => ColumnKind::Numeric,
        };
        let n = present as f64;
        let mean = (present > 0).then(|| xs.iter().sum::<f64>() / n);
        let std = mean.map(|m| (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt());
        let mut p = ColumnProfile {
            name: name.to_string(),
            kind,
            rows: values.len() as u64,
            missing: (values.len() - present) as u64,
            min: xs.first().copied(),
            max: xs.last().copied(),
            mean,
            std,
            quantiles: if present > 0 {
                QUANTILES.iter().map(|q| quantile(&xs, *q)).collect()
            } else {
                vec![]
            },
            integer,
            edges: vec![],
            counts: vec![],
            domain: BTreeMap::new(),
            distinct: runs.len() as u64,
            top_share: runs.iter().map(|r| r.1).max().unwrap_or(0) as f64 / n.max(1.0),
            singletons: runs.iter().filter(|r| r.1 == 1).count() as u64,
        };
        if kind == ColumnKind::Numeric {
            // Inner edges at the i/BINS quantiles (lower value), repeats merged.
            let mut edges: Vec<f64> = (1..BINS)
                .filter(|_| present > 1)
                .map(|i| xs[(i * (present - 1)) / BINS])
                .collect();
            edges.dedup();
            // A bin must not be empty of training data at its low end.
            edges.retain(|e| Some(*e) != p.min);
            p.counts = vec![0; edges.len() + 1];
            for x in &xs {
                p.counts[bin_of(&edges, *x)] += 1;
            }
            p.edges = edges;
        } else {
            p.domain = runs.iter().map(|(v, c)| (code_key(*v), *c)).collect();
        }
        p
    }

    /// Profiles a column of names (categorical; binary for two); `None` is
    /// missing. Past [`MAX_DOMAIN`] values the rarest are counted as `…other`.
    pub fn of_text(name: &str, values: &[Option<String>]) -> ColumnProfile {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for v in values.iter().flatten() {
            *counts.entry(v.clone()).or_default() += 1;
        }
        let present: u64 = counts.values().sum();
        let distinct = counts.len() as u64;
        let singletons = counts.values().filter(|c| **c == 1).count() as u64;
        let top = counts.values().max().copied().unwrap_or(0);
        if counts.len() > MAX_DOMAIN {
            let mut by_count: Vec<(String, u64)> = counts.into_iter().collect();
            by_count.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let rest: u64 = by_count[MAX_DOMAIN - 1..].iter().map(|e| e.1).sum();
            by_count.truncate(MAX_DOMAIN - 1);
            counts = by_count.into_iter().collect();
            counts.insert(OTHER.to_string(), rest);
        }
        ColumnProfile {
            name: name.to_string(),
            kind: if distinct <= 2 {
                ColumnKind::Binary
            } else {
                ColumnKind::Categorical
            },
            rows: values.len() as u64,
            missing: values.len() as u64 - present,
            min: None,
            max: None,
            mean: None,
            std: None,
            quantiles: vec![],
            integer: false,
            edges: vec![],
            counts: vec![],
            domain: counts,
            distinct,
            top_share: top as f64 / present.max(1) as f64,
            singletons,
        }
    }

    /// Present rows.
    pub fn present(&self) -> u64 {
        self.rows - self.missing
    }

    /// The numeric bin of `x` (0 ..= edges.len()).
    pub fn bin(&self, x: f64) -> usize {
        bin_of(&self.edges, x)
    }

    /// Counted per value rather than binned.
    pub fn is_categorical(&self) -> bool {
        self.kind != ColumnKind::Numeric
    }

    /// Every rule a profile column must follow, whoever wrote it.
    pub fn validate(&self) -> Result<(), String> {
        let name = &self.name;
        if name.is_empty() || name.len() > 256 {
            return Err("a profile column needs a name of 1-256 bytes".into());
        }
        if self.missing > self.rows {
            return Err(format!("`{name}`: more missing values than rows"));
        }
        let finite = |x: &Option<f64>| x.is_none_or(|v| v.is_finite());
        if !(finite(&self.min) && finite(&self.max) && finite(&self.mean) && finite(&self.std))
            || self.quantiles.iter().any(|q| !q.is_finite())
            || !(0.0..=1.0).contains(&self.top_share)
        {
            return Err(format!("`{name}`: statistics must be finite numbers"));
        }
        if self.edges.len() > 4 * BINS
            || self.edges.iter().any(|e| !e.is_finite())
            || self.edges.windows(2).any(|w| w[0] >= w[1])
        {
            return Err(format!(
                "`{name}`: at most {} finite, strictly increasing bin edges",
                4 * BINS
            ));
        }
        if self.kind == ColumnKind::Numeric && self.counts.len() != self.edges.len() + 1 {
            return Err(format!("`{name}`: one count per bin (edges + 1)"));
        }
        if self.domain.len() > MAX_DOMAIN || self.domain.keys().any(|k| k.len() > 256) {
            return Err(format!(
                "`{name}`: at most {MAX_DOMAIN} categories of 1-256 bytes"
            ));
        }
        Ok(())
    }
}

/// The category that holds the rarest values past [`MAX_DOMAIN`].
pub const OTHER: &str = "…other";

impl Profile {
    /// Every rule a profile must follow, whoever wrote it.
    pub fn validate(&self) -> Result<(), String> {
        for (what, cols) in [("input", &self.columns), ("output", &self.outputs)] {
            if cols.len() > MAX_COLUMNS {
                return Err(format!(
                    "{} {what} columns; at most {MAX_COLUMNS}",
                    cols.len()
                ));
            }
            for (i, c) in cols.iter().enumerate() {
                c.validate()?;
                if cols[..i].iter().any(|o| o.name == c.name) {
                    return Err(format!("{what} column `{}` appears twice", c.name));
                }
            }
        }
        if let Some(l) = &self.label {
            l.validate()?;
        }
        Ok(())
    }

    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// `numpy.quantile(sorted, q)` (linear interpolation) of a sorted, non-empty slice.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn some(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|x| Some(*x)).collect()
    }

    #[test]
    fn numbers_get_equal_mass_bins_and_codes_get_a_domain() {
        let xs: Vec<f64> = (0..1000).map(|i| i as f64 / 10.0).collect();
        let mut values = some(&xs);
        values.push(None);
        values.push(Some(f64::NAN));
        let p = ColumnProfile::of_numbers("t", &values);
        assert_eq!(p.kind, ColumnKind::Numeric);
        assert_eq!((p.rows, p.missing), (1002, 2));
        assert_eq!(p.edges.len(), BINS - 1);
        assert!(
            p.counts.iter().all(|c| (49..=51).contains(c)),
            "{:?}",
            p.counts
        );
        assert_eq!(p.counts.iter().sum::<u64>(), 1000);
        assert_eq!(p.quantiles[3], 49.95); // the median, as numpy
        assert_eq!((p.min, p.max), (Some(0.0), Some(99.9)));
        assert_eq!(p.bin(-5.0), 0);
        assert_eq!(p.bin(1e9), BINS - 1);
        p.validate().unwrap();

        let codes = ColumnProfile::of_numbers("c", &some(&[1.0, 2.0, 2.0, 3.0, -0.0]));
        assert_eq!(codes.kind, ColumnKind::Categorical);
        assert_eq!(
            codes.domain.keys().collect::<Vec<_>>(),
            ["0", "1", "2", "3"]
        );
        assert_eq!(codes.top_share, 0.4);
        assert_eq!(codes.singletons, 3);
        let flag = ColumnProfile::of_numbers("f", &some(&[0.0, 1.0, 1.0]));
        assert_eq!(flag.kind, ColumnKind::Binary);
        // A constant float column: one bin, no edges.
        let k = ColumnProfile::of_numbers("k", &some(&[2.5; 10]));
        assert_eq!(
            (k.kind, k.edges.len(), k.counts.clone()),
            (ColumnKind::Numeric, 0, vec![10])
        );
    }

    #[test]
    fn text_columns_keep_the_commonest_categories() {
        let mut values: Vec<Option<String>> = (0..600).map(|i| Some(format!("c{i}"))).collect();
        values.extend((0..50).map(|_| Some("common".to_string())));
        let p = ColumnProfile::of_text("s", &values);
        assert_eq!(p.kind, ColumnKind::Categorical);
        assert_eq!(p.domain.len(), MAX_DOMAIN);
        assert_eq!(p.domain["common"], 50);
        assert_eq!(p.domain[OTHER], 600 - (MAX_DOMAIN as u64 - 2));
        assert_eq!(p.distinct, 601);
        p.validate().unwrap();
    }

    #[test]
    fn forged_profiles_are_refused() {
        let mut p = ColumnProfile::of_numbers(
            "t",
            &some(&[
                1.0, 2.0, 3.0, 4.5, 5.5, 7.25, 8.0, 9.0, 10.0, 11.0, 12.0, 13.5,
            ]),
        );
        p.edges.reverse();
        assert!(p.validate().unwrap_err().contains("increasing"));
        let mut p = ColumnProfile::of_numbers("t", &some(&[1.5, 2.5]));
        p.mean = Some(f64::INFINITY);
        assert!(p.validate().unwrap_err().contains("finite"));
        let profile = Profile {
            rows: 2,
            columns: vec![ColumnProfile::of_numbers("t", &some(&[1.5])); 2],
            ..Profile::default()
        };
        assert!(profile.validate().unwrap_err().contains("twice"));
    }
}
