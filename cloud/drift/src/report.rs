//! A reference and a current table in, a drift report out: per column the
//! method, score, threshold and verdict (plus the KS p-value and PSI,
//! always), the share of drifted columns and the dataset verdict, and the
//! data-quality anomalies of the current data against a profile of the
//! reference. Its JSON is `wasmops drift --json`'s output, field for field.

use serde::Serialize;

use crate::DriftError;
use crate::quality::{self, Anomaly};
use crate::rule::{Binned, Method, Rules, Samples, default_method, scores};
use crate::table::{Kind, Table, Values};

/// Evidently's default: the dataset drifts when at least half its columns do.
pub const DEFAULT_DRIFT_SHARE: f64 = 0.5;

/// One column's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnDrift {
    pub name: String,
    pub kind: Kind,
    pub method: Method,
    /// The value of `method` (null when the current data has no value).
    pub score: f64,
    pub threshold: f64,
    pub drifted: bool,
    /// Always reported for numeric columns; null for categorical ones.
    pub ks_p_value: Option<f64>,
    pub psi: f64,
    /// The shares charted in the HTML report.
    #[serde(skip)]
    pub binned: Binned,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset_drift: bool,
    /// Share of columns that drifted.
    pub drift_share: f64,
    pub columns: Vec<ColumnDrift>,
    pub data_quality: Vec<Anomaly>,
    /// The share at which the dataset counts as drifted.
    #[serde(skip)]
    pub dataset_threshold: f64,
}

/// How to compare: methods and thresholds per column, and the dataset share.
#[derive(Debug, Clone)]
pub struct Options {
    pub rules: Rules,
    pub drift_share: f64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            rules: Rules::default(),
            drift_share: DEFAULT_DRIFT_SHARE,
        }
    }
}

/// Compares `current` with `reference`, column by column (in the reference's
/// order). Every reference column must be in `current`; columns only in
/// `current` are reported as `SCHEMA_NEW_COLUMN` and not judged.
pub fn compare(
    reference: &Table,
    current: &Table,
    options: &Options,
) -> Result<Report, DriftError> {
    if !(0.0..=1.0).contains(&options.drift_share) {
        return Err(DriftError::Options(format!(
            "the dataset drift share must be within 0 and 1, not {}",
            options.drift_share
        )));
    }
    for name in options.rules.columns.keys() {
        if reference.column(name).is_none() {
            return Err(DriftError::Options(format!(
                "a rule names column `{name}`, which the reference does not have"
            )));
        }
    }
    let mut columns = vec![];
    let mut data_quality = vec![];
    for r in &reference.columns {
        let column_error = |detail: String| DriftError::Column {
            column: r.name.clone(),
            detail,
        };
        let c = current
            .column(&r.name)
            .ok_or_else(|| column_error("missing from the current data".into()))?;
        let profile = quality::profile(&r.name, &r.values);
        let observed = quality::observe(&profile, &c.values);
        data_quality.extend(quality::check(&r.name, &profile, &observed));
        let drift = match (&r.values, &c.values) {
            (Values::Numeric(a), Values::Numeric(b)) => {
                let (a, b) = (present(a), present(b));
                judge(&r.name, Kind::Numeric, Samples::Numeric(&a, &b), options)?
            }
            (Values::Categorical(a), Values::Categorical(b)) => {
                let a: Vec<&str> = a.iter().flatten().map(String::as_str).collect();
                let b: Vec<&str> = b.iter().flatten().map(String::as_str).collect();
                judge(
                    &r.name,
                    Kind::Categorical,
                    Samples::Categorical(&a, &b),
                    options,
                )?
            }
            _ => {
                return Err(column_error(format!(
                    "{} in the reference but {} in the current data",
                    r.values.kind().name(),
                    c.values.kind().name()
                )));
            }
        };
        columns.push(drift);
    }
    for c in &current.columns {
        if reference.column(&c.name).is_none() {
            data_quality.push(Anomaly {
                column: c.name.clone(),
                anomaly: "SCHEMA_NEW_COLUMN".into(),
                detail: "in the current data only; not compared".into(),
            });
        }
    }
    let drifted = columns.iter().filter(|c| c.drifted).count();
    let drift_share = if columns.is_empty() {
        0.0
    } else {
        drifted as f64 / columns.len() as f64
    };
    Ok(Report {
        dataset_drift: !columns.is_empty() && drift_share >= options.drift_share,
        drift_share,
        columns,
        data_quality,
        dataset_threshold: options.drift_share,
    })
}

fn present(v: &[Option<f64>]) -> Vec<f64> {
    v.iter().flatten().copied().collect()
}

fn judge(
    name: &str,
    kind: Kind,
    samples: Samples<'_>,
    options: &Options,
) -> Result<ColumnDrift, DriftError> {
    let (nr, nc) = match samples {
        Samples::Numeric(a, b) => (a.len(), b.len()),
        Samples::Categorical(a, b) => (a.len(), b.len()),
    };
    let rule = options.rules.for_column(name);
    let column_error = |detail: String| DriftError::Column {
        column: name.to_string(),
        detail,
    };
    if nr == 0 {
        return Err(column_error(
            "the reference has no value in this column: nothing to compare with".into(),
        ));
    }
    if let Some(m) = rule.method
        && !m.applies_to(kind)
    {
        return Err(column_error(format!(
            "{m} needs numbers, and this column is categorical"
        )));
    }
    if nc == 0 {
        // Nothing to judge: the data-quality check reports the empty column.
        let method = rule.method.unwrap_or(Method::Psi);
        return Ok(ColumnDrift {
            name: name.to_string(),
            kind,
            method,
            score: f64::NAN,
            threshold: rule.threshold.unwrap_or(method.default_threshold()),
            drifted: false,
            ks_p_value: None,
            psi: f64::NAN,
            binned: Binned {
                labels: vec![],
                reference: vec![],
                current: vec![],
            },
        });
    }
    let s = scores(samples);
    let method = rule
        .method
        .unwrap_or_else(|| default_method(kind, nr, s.distinct));
    let threshold = rule.threshold.unwrap_or(method.default_threshold());
    let score = s.get(method).unwrap_or(f64::NAN);
    Ok(ColumnDrift {
        name: name.to_string(),
        kind,
        method,
        score,
        threshold,
        drifted: !score.is_nan() && method.drifted(score, threshold),
        ks_p_value: s.ks,
        psi: s.psi,
        binned: s.binned,
    })
}
