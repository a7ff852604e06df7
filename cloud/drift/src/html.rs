//! The report as one self-contained HTML page: no script, no font, no fetch;
//! every chart is inline SVG, so it opens offline and can be mailed. On top
//! the dataset verdict and the data-quality findings; then per column the
//! reference and current shares overlaid (the bins PSI and Jensen–Shannon
//! use) with the method, score and verdict. Every name from the data is
//! escaped: a column may be called `<script>`.

use std::fmt::Write;

use crate::report::{ColumnDrift, Report};

/// Escapes text for HTML element content and quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}\
h1{font-size:1.4em}table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}\
.drift{color:#b00020;font-weight:600}.ok{color:#2e7d32}section.column{margin:1.5em 0;padding-top:.5em;border-top:1px solid #ccc}\
svg.plot{display:block}.ref{fill:#1f77b4;fill-opacity:.55}.cur{fill:#ff7f0e;fill-opacity:.55}\
.legend span{display:inline-block;width:.8em;height:.8em;margin:0 .3em 0 1em}\
svg.trend polyline{fill:none;stroke:#1f77b4;stroke-width:2}svg.trend line.limit{stroke:#b00020;stroke-dasharray:4 3}";

/// Renders `report` as a page titled `title`.
pub fn render(report: &Report, title: &str) -> String {
    let mut h = String::new();
    let drifted = report.columns.iter().filter(|c| c.drifted).count();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>",
        escape(title)
    );
    let _ = write!(
        h,
        "<h1>{}</h1><p id=\"summary\" class=\"{}\">Dataset drift: <b>{}</b> — {} of {} columns drifted (share {:.3}; the dataset drifts at {:.3}).</p>",
        escape(title),
        if report.dataset_drift { "drift" } else { "ok" },
        if report.dataset_drift {
            "detected"
        } else {
            "not detected"
        },
        drifted,
        report.columns.len(),
        report.drift_share,
        report.dataset_threshold,
    );
    h.push_str("<table id=\"columns\"><tr><th>column</th><th>kind</th><th>method</th><th>score</th><th>threshold</th><th>drifted</th><th>KS p-value</th><th>PSI</th></tr>");
    for c in &report.columns {
        let _ = write!(
            h,
            "<tr><td><a href=\"#col-{i}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.name),
            c.kind.name(),
            c.method,
            number(c.score),
            c.threshold,
            if c.drifted { "drift" } else { "ok" },
            if c.drifted { "yes" } else { "no" },
            c.ks_p_value.map_or("—".into(), number),
            number(c.psi),
            i = anchor(&c.name),
        );
    }
    h.push_str("</table>");
    if report.data_quality.is_empty() {
        h.push_str("<h2>Data quality</h2><p id=\"quality\">No anomaly.</p>");
    } else {
        h.push_str("<h2>Data quality</h2><table id=\"quality\"><tr><th>column</th><th>anomaly</th><th>detail</th></tr>");
        for a in &report.data_quality {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.column),
                escape(&a.anomaly),
                escape(&a.detail)
            );
        }
        h.push_str("</table>");
    }
    h.push_str("<p class=\"legend\"><span class=\"ref\" style=\"background:#1f77b4\"></span>reference<span class=\"cur\" style=\"background:#ff7f0e\"></span>current</p>");
    for c in &report.columns {
        column(&mut h, c);
    }
    h.push_str("</body></html>\n");
    h
}

/// A score for people: 4 decimals, or 3 significant digits in exponent form
/// for tiny and huge values (p-values of 1e-30 stay readable); `—` for NaN.
pub fn number(x: f64) -> String {
    if x.is_nan() {
        "—".into()
    } else if x != 0.0 && (x.abs() < 1e-3 || x.abs() >= 1e6) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// A stable id for a column's section (names may hold any character).
fn anchor(name: &str) -> String {
    name.bytes().map(|b| format!("{b:02x}")).collect()
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 40.0;

fn column(h: &mut String, c: &ColumnDrift) {
    let _ = write!(
        h,
        "<section class=\"column\" id=\"col-{}\" data-column=\"{}\"><h3>{} <small class=\"{}\">{} {} = {} (threshold {})</small></h3>",
        anchor(&c.name),
        escape(&c.name),
        escape(&c.name),
        if c.drifted { "drift" } else { "ok" },
        if c.drifted { "drifted:" } else { "no drift:" },
        c.method,
        number(c.score),
        c.threshold,
    );
    let b = &c.binned;
    let bins = b.labels.len().max(1);
    let top = b
        .reference
        .iter()
        .chain(&b.current)
        .copied()
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let _ = write!(
        h,
        "<svg class=\"plot\" role=\"img\" aria-label=\"reference and current shares of {}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(&c.name)
    );
    let plot_w = WIDTH - LEFT - 10.0;
    let plot_h = HEIGHT - BOTTOM - 10.0;
    let slot = plot_w / bins as f64;
    // Axis and the top share.
    let _ = write!(
        h,
        "<line x1=\"{LEFT}\" y1=\"{y0}\" x2=\"{x1}\" y2=\"{y0}\" stroke=\"#888\"/><text x=\"2\" y=\"18\" font-size=\"10\">{:.0}%</text>",
        top * 100.0,
        y0 = 10.0 + plot_h,
        x1 = LEFT + plot_w,
    );
    for (i, label) in b.labels.iter().enumerate() {
        let x = LEFT + i as f64 * slot;
        for (class, shares, offset) in [("ref", &b.reference, 0.1), ("cur", &b.current, 0.3)] {
            let share = shares.get(i).copied().unwrap_or(0.0);
            let bar_h = share / top * plot_h;
            let _ = write!(
                h,
                "<rect class=\"{class}\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\"><title>{}: {} {:.2}%</title></rect>",
                x + slot * offset,
                10.0 + plot_h - bar_h,
                slot * 0.6,
                bar_h,
                escape(label),
                if class == "ref" {
                    "reference"
                } else {
                    "current"
                },
                share * 100.0
            );
        }
        // Label every bin when few, else about six of them.
        if bins <= 8 || i % bins.div_ceil(6) == 0 {
            let _ = write!(
                h,
                "<text x=\"{:.2}\" y=\"{:.2}\" font-size=\"10\" text-anchor=\"middle\">{}</text>",
                x + slot / 2.0,
                HEIGHT - BOTTOM + 24.0,
                escape(&truncate(label, 22))
            );
        }
    }
    h.push_str("</svg></section>");
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_data_are_escaped() {
        assert_eq!(
            escape("<script>\"a\"&'b'"),
            "&lt;script&gt;&quot;a&quot;&amp;&#39;b&#39;"
        );
    }
}
