//! The monitoring report as one self-contained page
//! (`GET /v1/models/{name}/monitor.html`): the verdicts on top, then per
//! input column its drift score over time as a line against its threshold
//! (inline SVG, no script), then the quality findings and performance.

use std::fmt::Write;

use wasmops_api::{Drift, MonitorReport};
use wasmops_drift::html::{STYLE, escape, number};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 120.0;

fn table(h: &mut String, id: &str, d: &Drift) {
    let _ = write!(
        h,
        "<table id=\"{id}\"><tr><th>column</th><th>method</th><th>score</th><th>threshold</th><th>drifted</th><th>PSI</th><th>values</th><th>contribution</th></tr>"
    );
    for c in &d.columns {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.name),
            escape(&c.method),
            c.score.map_or("—".into(), number),
            number(c.threshold),
            if c.drifted { "drift" } else { "ok" },
            if c.drifted { "yes" } else { "no" },
            c.psi.map_or("—".into(), number),
            c.count,
            number(c.contribution),
        );
    }
    h.push_str("</table>");
}

/// One column's score per bucket as a polyline, with its threshold.
fn trend(h: &mut String, r: &MonitorReport, column: &str, threshold: f64) {
    let points: Vec<(i64, f64)> = r
        .trend
        .iter()
        .filter_map(|p| p.scores.get(column).map(|s| (p.start_ms, *s)))
        .collect();
    let top = points
        .iter()
        .map(|p| p.1)
        .fold(threshold * 1.5, f64::max)
        .max(1e-9);
    let (t0, t1) = (r.since_ms as f64, r.until_ms.max(r.since_ms + 1) as f64);
    let x = |t: i64| (t as f64 - t0) / (t1 - t0) * WIDTH;
    let y = |s: f64| HEIGHT - (s / top).clamp(0.0, 1.0) * HEIGHT;
    let line: Vec<String> = points
        .iter()
        .map(|(t, s)| format!("{:.1},{:.1}", x(*t), y(*s)))
        .collect();
    let _ = write!(
        h,
        "<section class=\"column\" data-column=\"{}\"><h3>{}</h3><svg class=\"plot trend\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\"><title>{} score over time</title><line class=\"limit\" x1=\"0\" x2=\"{WIDTH}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\"/><polyline points=\"{}\"/></svg></section>",
        escape(column),
        escape(column),
        escape(column),
        line.join(" "),
        ly = y(threshold),
    );
}

/// Renders `r`.
pub fn render(r: &MonitorReport) -> String {
    let title = format!("{}@{} monitoring", r.model, r.version);
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>{STYLE}</style></head><body><h1>{t}</h1>",
        t = escape(&title)
    );
    let _ = write!(
        h,
        "<p id=\"summary\" class=\"{}\">Data drift: <b>{}</b> (share {}, coefficient {}); {} predictions from {} devices{}.</p>",
        if r.data_drift.dataset_drift {
            "drift"
        } else {
            "ok"
        },
        if r.data_drift.dataset_drift {
            "detected"
        } else {
            "not detected"
        },
        number(r.data_drift.drift_share),
        number(r.data_drift.coefficient),
        r.predictions,
        r.devices,
        r.selector
            .as_deref()
            .map_or(String::new(), |s| format!(" matching {}", escape(s))),
    );
    for n in &r.notes {
        let _ = write!(h, "<p class=\"note\">{}</p>", escape(n));
    }
    h.push_str("<h2>Inputs</h2>");
    table(&mut h, "columns", &r.data_drift);
    h.push_str("<h2>Predictions</h2>");
    table(&mut h, "outputs", &r.prediction_drift);
    h.push_str("<h2>Data quality</h2>");
    if r.quality.is_empty() {
        h.push_str("<p id=\"quality\">No anomaly.</p>");
    } else {
        h.push_str("<table id=\"quality\"><tr><th>column</th><th>anomaly</th><th>detail</th><th>devices</th></tr>");
        for a in &r.quality {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&a.column),
                escape(&a.anomaly),
                escape(&a.detail),
                escape(&a.devices.join(", ")),
            );
        }
        h.push_str("</table>");
    }
    let p = &r.performance;
    let _ = write!(
        h,
        "<h2>Performance</h2><p id=\"performance\">{} labelled; accuracy {}; estimated accuracy (from confidence, an estimate) {}.</p>",
        p.labelled,
        p.accuracy.map_or("—".into(), number),
        p.estimated_accuracy.map_or("—".into(), number),
    );
    h.push_str("<h2>Drift over time</h2>");
    for c in &r.data_drift.columns {
        trend(&mut h, r, &c.name, c.threshold);
    }
    h.push_str("</body></html>\n");
    h
}
