//! Counters for `GET /metrics`, in Prometheus' text format (version 0.0.4):
//! requests by model and status code, request and instance-creation time and
//! requests per call (dynamic batching) as histograms, requests in flight and
//! waiting, and which models are on probation ([`crate::slots`]; the slots
//! keep that state, [`render_probation`] writes it).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Request time buckets, in seconds: from a small tabular model's 0.2 ms to
/// the deadline's tens of seconds.
const REQUEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Instance creation buckets, in seconds: a pooled copy-on-write instance
/// takes tens of microseconds.
const INSTANTIATE_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01,
];
/// Requests one call answered: 1 at low load, up to the batch's rows.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, s: f64) {
        for (bound, count) in self.bounds.iter().zip(&mut self.counts) {
            if s <= *bound {
                *count += 1;
            }
        }
        self.sum += s;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, model: &str) {
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{model=\"{model}\",le=\"{bound}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {}",
            self.count
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {}", self.count);
    }
}

struct PerModel {
    by_code: BTreeMap<u16, u64>,
    duration: Histogram,
    instantiate: Histogram,
    batch: Histogram,
}

/// Everything `/metrics` shows. Model names come from the served components
/// (checked at start), never from a request, so label values stay bounded.
pub struct Metrics {
    models: Mutex<BTreeMap<String, PerModel>>,
    /// Requests for models nobody serves, by status (404 only today).
    unknown: AtomicI64,
    pub(crate) in_flight: AtomicI64,
    pub(crate) waiting: AtomicI64,
}

impl Metrics {
    pub(crate) fn new<'a>(names: impl Iterator<Item = &'a String>) -> Metrics {
        let models = names
            .map(|n| {
                let m = PerModel {
                    by_code: BTreeMap::new(),
                    duration: Histogram::new(REQUEST_BUCKETS),
                    instantiate: Histogram::new(INSTANTIATE_BUCKETS),
                    batch: Histogram::new(BATCH_BUCKETS),
                };
                (n.clone(), m)
            })
            .collect();
        Metrics {
            models: Mutex::new(models),
            unknown: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            waiting: AtomicI64::new(0),
        }
    }

    pub(crate) fn unknown_model(&self) {
        self.unknown.fetch_add(1, Ordering::Relaxed);
    }

    /// One answered request: its status and its whole time.
    pub(crate) fn record(&self, model: &str, code: u16, took: Duration) {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = models.get_mut(model) {
            *m.by_code.entry(code).or_default() += 1;
            m.duration.observe(took.as_secs_f64());
        }
    }

    /// One call that answered `requests` requests, and (when an instance was
    /// made for it) how long that took.
    pub(crate) fn instance(&self, model: &str, instantiate: Option<Duration>, requests: usize) {
        let mut models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = models.get_mut(model) {
            m.batch.observe(requests as f64);
            if let Some(i) = instantiate {
                m.instantiate.observe(i.as_secs_f64());
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let models = self.models.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str("# HELP wasmops_serve_requests_total Predict requests answered, by model and HTTP status.\n# TYPE wasmops_serve_requests_total counter\n");
        for (name, m) in models.iter() {
            for (code, n) in &m.by_code {
                let _ = writeln!(
                    out,
                    "wasmops_serve_requests_total{{model=\"{name}\",code=\"{code}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "wasmops_serve_requests_total{{model=\"\",code=\"404\"}} {}",
            self.unknown.load(Ordering::Relaxed)
        );
        out.push_str("# HELP wasmops_serve_request_duration_seconds Time from the request's arrival to its answer.\n# TYPE wasmops_serve_request_duration_seconds histogram\n");
        for (name, m) in models.iter() {
            m.duration
                .render(&mut out, "wasmops_serve_request_duration_seconds", name);
        }
        out.push_str("# HELP wasmops_serve_instantiate_seconds Time to make the fresh instance each call runs on.\n# TYPE wasmops_serve_instantiate_seconds histogram\n");
        for (name, m) in models.iter() {
            m.instantiate
                .render(&mut out, "wasmops_serve_instantiate_seconds", name);
        }
        out.push_str("# HELP wasmops_serve_batch_requests Requests answered by one call (requests waiting together share one).\n# TYPE wasmops_serve_batch_requests histogram\n");
        for (name, m) in models.iter() {
            m.batch
                .render(&mut out, "wasmops_serve_batch_requests", name);
        }
        let _ = writeln!(
            out,
            "# HELP wasmops_serve_in_flight Requests running a model now.\n# TYPE wasmops_serve_in_flight gauge\nwasmops_serve_in_flight {}",
            self.in_flight.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP wasmops_serve_waiting Requests waiting for a free slot.\n# TYPE wasmops_serve_waiting gauge\nwasmops_serve_waiting {}",
            self.waiting.load(Ordering::Relaxed)
        );
        out
    }
}

/// The probation gauge: 1 for each model whose last call ran into its
/// deadline, so it may hold one slot only ([`crate::slots`]).
pub(crate) fn render_probation<'a>(
    out: &mut String,
    models: impl Iterator<Item = (&'a str, bool)>,
) {
    out.push_str("# HELP wasmops_serve_probation 1 while a model whose last call ran into its deadline may hold one slot only.\n# TYPE wasmops_serve_probation gauge\n");
    for (name, on) in models {
        let _ = writeln!(
            out,
            "wasmops_serve_probation{{model=\"{name}\"}} {}",
            u8::from(on)
        );
    }
}
