//! `wasmops drift`: data drift and data quality between two of a data
//! scientist's own files, with Evidently's default rules (`wasmops_drift`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use wasmops_drift::{Method, Options, Report, Rule, Rules, Table, compare};

use crate::files;

/// Compare current data with reference data, column by column: drift
/// (Evidently's default test per column) and data quality.
///
/// REF and CUR are CSV files with a header row (an empty cell is a missing
/// value) or JSON `{"columns": {"name": [values, null for missing]}}`. With at
/// most 1000 reference values a column is judged by a p-value (KS for numeric
/// columns with more than 5 distinct values, else chi-square, or a z-test for
/// two values; drift at p < 0.05); with more, by a distance (normalised
/// Wasserstein for numeric columns, else Jensen–Shannon; drift at ≥ 0.1). The
/// dataset drifts when at least half its columns do.
#[derive(Parser)]
pub struct DriftCommand {
    /// The reference (training) data.
    #[arg(long, value_name = "REF")]
    pub reference: PathBuf,
    /// The data to compare with it.
    #[arg(long, value_name = "CUR")]
    pub current: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// A method for every column (METHOD) or one (COLUMN=METHOD): ks,
    /// chisquare, z, wasserstein_norm, jensenshannon, psi. Repeatable.
    #[arg(long, value_name = "[COLUMN=]METHOD")]
    pub method: Vec<String>,
    /// A threshold for every column (VALUE) or one (COLUMN=VALUE); p-value
    /// methods drift below it, distances at or above it. Repeatable.
    #[arg(long, value_name = "[COLUMN=]VALUE")]
    pub threshold: Vec<String>,
    /// Share of drifted columns at which the dataset counts as drifted.
    #[arg(long, default_value_t = wasmops_drift::report::DEFAULT_DRIFT_SHARE)]
    pub drift_share: f64,
    /// Exit with status 1 when the dataset drifts (for pipelines).
    #[arg(long)]
    pub fail_on_drift: bool,
}

impl DriftCommand {
    pub fn execute(self) -> Result<()> {
        let rules = rules(&self.method, &self.threshold)?;
        let reference = Table::read(&self.reference, "reference", None)?;
        let current = Table::read(&self.current, "current", Some(&reference))?;
        let report = compare(
            &reference,
            &current,
            &Options {
                rules,
                drift_share: self.drift_share,
            },
        )?;
        if let Some(path) = &self.html {
            let title = format!(
                "Drift: {} against {}",
                self.current.display(),
                self.reference.display()
            );
            files::write_atomic(
                path,
                wasmops_drift::html::render(&report, &title).as_bytes(),
            )?;
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print_table(&report);
        }
        if self.fail_on_drift && report.dataset_drift {
            bail!(
                "dataset drift: {:.0}% of columns drifted",
                report.drift_share * 100.0
            );
        }
        Ok(())
    }
}

/// `--method`/`--threshold` values as rules: a bare value for every column,
/// `COLUMN=VALUE` for one (a column name may itself hold `=`: the last one splits).
fn rules(methods: &[String], thresholds: &[String]) -> Result<Rules> {
    let mut rules = Rules::default();
    let slot = |spec: &str| -> (Option<String>, String) {
        match spec.rsplit_once('=') {
            Some((c, v)) => (Some(c.to_string()), v.to_string()),
            None => (None, spec.to_string()),
        }
    };
    for spec in methods {
        let (column, value) = slot(spec);
        let method: Method = value
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--method {spec}: {e}"))?;
        set(&mut rules, column, |r| r.method = Some(method));
    }
    for spec in thresholds {
        let (column, value) = slot(spec);
        let t: f64 = value
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .with_context(|| {
                format!("--threshold {spec}: `{value}` is not a non-negative number")
            })?;
        set(&mut rules, column, |r| r.threshold = Some(t));
    }
    Ok(rules)
}

fn set(rules: &mut Rules, column: Option<String>, f: impl FnOnce(&mut Rule)) {
    match column {
        Some(c) => f(rules.columns.entry(c).or_default()),
        None => f(&mut rules.default),
    }
}

/// A score as the HTML report writes it, `-` when there is none.
fn number(x: Option<f64>) -> String {
    x.filter(|v| !v.is_nan())
        .map_or("-".into(), wasmops_drift::html::number)
}

fn print_table(report: &Report) {
    let width = report
        .columns
        .iter()
        .map(|c| c.name.chars().count())
        .chain([6])
        .max()
        .unwrap_or(6);
    println!(
        "{:width$}  {:11}  {:16}  {:>10}  {:>9}  {:7}  {:>10}  {:>8}",
        "column", "kind", "method", "score", "threshold", "drifted", "KS p", "PSI"
    );
    for c in &report.columns {
        println!(
            "{:width$}  {:11}  {:16}  {:>10}  {:>9}  {:7}  {:>10}  {:>8}",
            c.name,
            c.kind.name(),
            c.method.name(),
            number(Some(c.score)),
            c.threshold,
            if c.drifted { "yes" } else { "no" },
            number(c.ks_p_value),
            number(Some(c.psi)),
        );
    }
    let drifted = report.columns.iter().filter(|c| c.drifted).count();
    println!(
        "\ndataset drift: {} ({drifted} of {} columns, share {:.2}; drifts at {:.2})",
        if report.dataset_drift {
            "DETECTED"
        } else {
            "not detected"
        },
        report.columns.len(),
        report.drift_share,
        report.dataset_threshold
    );
    if report.data_quality.is_empty() {
        println!("data quality: no anomaly");
    } else {
        println!("data quality:");
        for a in &report.data_quality {
            println!("  {}  {}  {}", a.column, a.anomaly, a.detail);
        }
    }
}
