//! `wasmops monitor MODEL`: a model version's drift, data quality and
//! performance, from what its devices counted (the coordinator's
//! `GET /v1/models/{name}/monitor`).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Parser;
use wasmops_api::{Drift, MonitorReport, MonitorSettings};

use crate::args::Connection;
use crate::files;

/// Drift per column (method, score, threshold, verdict, trend), data-quality
/// alerts with their devices, realised and estimated performance.
#[derive(Parser)]
pub struct MonitorCommand {
    pub model: String,
    /// A version (default: the latest with telemetry in the range).
    #[arg(long)]
    pub version: Option<String>,
    /// How far back: `90s`, `30m`, `24h`, `7d`.
    #[arg(long, default_value = "24h", value_parser = crate::args::parse_age)]
    pub since: i64,
    /// Only devices with these labels: `site=eu` or `site=eu,line=2`.
    #[arg(long)]
    pub selector: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as one self-contained HTML page.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Also write the raw input rows devices sampled in the range (opt-in per
    /// model: `sample_rows` in agent.toml) as CSV with a header, newest first:
    /// for retraining, or `wasmops drift --reference training.csv --current`
    /// (exact tests on raw values).
    #[arg(long, value_name = "FILE.csv")]
    pub samples: Option<PathBuf>,
    /// First set how the model is judged, from a TOML file:
    /// `method`, `threshold`, `drift_share`, `accuracy_margin`, and
    /// `[columns.NAME]` tables with `method` and `threshold`.
    #[arg(long)]
    pub configure: Option<PathBuf>,
    #[command(flatten)]
    pub conn: Connection,
}

impl MonitorCommand {
    pub fn execute(self) -> Result<()> {
        let client = self.conn.client()?;
        if let Some(path) = &self.configure {
            let text = String::from_utf8(files::read(path)?)
                .with_context(|| format!("{} is not UTF-8", path.display()))?;
            let settings: MonitorSettings =
                toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
            client
                .set_monitor_settings(&self.model, &settings)
                .context("cannot set the monitoring settings")?;
            eprintln!("monitoring settings of {} set", self.model);
        }
        let since = wasmops_protocol::now_ms() - self.since;
        let report = client.monitor(
            &self.model,
            self.version.as_deref(),
            since,
            self.selector.as_deref(),
        )?;
        if let Some(path) = &self.html {
            let page = wasmops_coordinator::monitor::page::render(&report);
            files::write_atomic(path, page.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(path) = &self.samples {
            let s = client.samples(
                &self.model,
                &report.version,
                since,
                wasmops_api::MAX_SAMPLE_ANSWER_ROWS,
            )?;
            let mut csv = s.columns.join(",") + "\n";
            for row in &s.rows {
                let cells: Vec<String> = row
                    .iter()
                    .map(|x| x.map_or(String::new(), |x| x.to_string()))
                    .collect();
                csv.push_str(&cells.join(","));
                csv.push('\n');
            }
            files::write_atomic(path, csv.as_bytes())?;
            eprintln!("wrote {} sampled rows to {}", s.rows.len(), path.display());
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", text(&report));
        }
        if report.predictions == 0 && report.trend.is_empty() {
            bail!("no telemetry in the range");
        }
        Ok(())
    }
}

/// A column's scores over the trend as a sparkline (`·` where none).
fn sparkline(r: &MonitorReport, column: &str, outputs: bool) -> String {
    const LEVELS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let scores: Vec<Option<f64>> = r
        .trend
        .iter()
        .map(|p| {
            let m = if outputs {
                &p.prediction_scores
            } else {
                &p.scores
            };
            m.get(column).copied()
        })
        .collect();
    let top = scores.iter().flatten().fold(0.0f64, |a, b| a.max(*b));
    // The last 30 buckets.
    scores[scores.len().saturating_sub(30)..]
        .iter()
        .map(|s| match s {
            None => '·',
            Some(_) if top <= 0.0 => LEVELS[0],
            Some(x) => LEVELS[((x / top) * 7.0).round().clamp(0.0, 7.0) as usize],
        })
        .collect()
}

fn drift_table(out: &mut String, r: &MonitorReport, d: &Drift, outputs: bool) {
    use std::fmt::Write;
    let width = d
        .columns
        .iter()
        .map(|c| c.name.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "  {:width$}  {:16}  {:>8}  {:>9}  {:7}  {:>8}  trend",
        "column", "method", "score", "threshold", "drifted", "values"
    );
    for c in &d.columns {
        let _ = writeln!(
            out,
            "  {:width$}  {:16}  {:>8}  {:>9}  {:7}  {:>8}  {}",
            c.name,
            c.method,
            c.score.map_or("—".into(), wasmops_drift::rule::short),
            wasmops_drift::rule::short(c.threshold),
            if c.drifted { "DRIFT" } else { "no" },
            c.count,
            sparkline(r, &c.name, outputs),
        );
    }
}

/// The report for people.
fn text(r: &MonitorReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}@{}: {} predictions from {} devices{} ({} trend points of {} s)",
        r.model,
        r.version,
        r.predictions,
        r.devices,
        r.selector
            .as_deref()
            .map_or(String::new(), |s| format!(" matching {s}")),
        r.trend.len(),
        r.bucket_ms / 1000,
    );
    for n in &r.notes {
        let _ = writeln!(out, "note: {n}");
    }
    let d = &r.data_drift;
    let _ = writeln!(
        out,
        "\ndata drift: {} (share {:.2}, coefficient {:.3})",
        if d.dataset_drift {
            "DETECTED"
        } else {
            "not detected"
        },
        d.drift_share,
        d.coefficient
    );
    drift_table(&mut out, r, d, false);
    for g in r.groups.iter().filter(|g| !g.drifted.is_empty()) {
        let names: Vec<&str> = g.drifted.iter().map(|c| c.name.as_str()).collect();
        let _ = writeln!(
            out,
            "  in {} ({} devices, last window): {} drifted",
            g.group,
            g.devices,
            names.join(", ")
        );
    }
    let p = &r.prediction_drift;
    let _ = writeln!(
        out,
        "\nprediction drift: {}",
        if p.columns.iter().any(|c| c.drifted) {
            "DETECTED"
        } else {
            "not detected"
        }
    );
    drift_table(&mut out, r, p, true);
    if let Some(prev) = &r.prediction_drift_vs_previous {
        let drifted: Vec<&str> = prev
            .drift
            .columns
            .iter()
            .filter(|c| c.drifted)
            .map(|c| c.name.as_str())
            .collect();
        let _ = writeln!(
            out,
            "  against {}: {}",
            prev.version,
            if drifted.is_empty() {
                "no output drifted".into()
            } else {
                format!("drifted: {}", drifted.join(", "))
            }
        );
    }
    if let Some(l) = &r.label_drift {
        let _ = writeln!(
            out,
            "\nlabel drift: {}",
            if l.columns.iter().any(|c| c.drifted) {
                "DETECTED"
            } else {
                "not detected"
            }
        );
        drift_table(&mut out, r, l, false);
    }
    let _ = writeln!(out, "\ndata quality:");
    if r.quality.is_empty() {
        let _ = writeln!(out, "  no anomaly");
    }
    for a in &r.quality {
        let devices = if a.devices.len() > 8 {
            format!(
                "{} … ({} devices)",
                a.devices[..8].join(", "),
                a.devices.len()
            )
        } else {
            a.devices.join(", ")
        };
        let _ = writeln!(out, "  {} {}: {}", a.column, a.anomaly, a.detail);
        if !devices.is_empty() {
            let _ = writeln!(out, "    devices: {devices}");
        }
        if !a.groups.is_empty() {
            let groups: Vec<String> = a.groups.iter().map(|(g, n)| format!("{g} ({n})")).collect();
            let _ = writeln!(out, "    groups: {}", groups.join(", "));
        }
    }
    let perf = &r.performance;
    let _ = writeln!(out, "\nperformance: {} labelled predictions", perf.labelled);
    for (name, value) in [
        ("accuracy", perf.accuracy),
        ("auc", perf.auc),
        ("log_loss", perf.log_loss),
        ("mae", perf.mae),
        ("rmse", perf.rmse),
    ] {
        if let Some(v) = value {
            let _ = writeln!(out, "  {name}: {v:.4}");
        }
    }
    if let Some(e) = perf.estimated_accuracy {
        let _ = writeln!(
            out,
            "  estimated accuracy (from the model's confidence; an estimate, not a measurement): {e:.4}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::args::parse_age;

    #[test]
    fn ages() {
        assert_eq!(parse_age("90s"), Ok(90_000));
        assert_eq!(parse_age("24h"), Ok(86_400_000));
        assert_eq!(parse_age("7d"), Ok(604_800_000));
        assert!(parse_age("5y").unwrap_err().contains("unknown unit"));
        assert!(parse_age("h").is_err());
        assert!(parse_age("0m").is_err());
    }
}
