//! `wasmops fleet bench-monitor`: what monitoring costs, in one run.
//!
//! - Evaluation: `devices` × `windows` telemetry reports of one version with
//!   `features` binned columns are stored (and folded) on a fresh SQLite
//!   coordinator, one window per bucket; then the whole range is judged
//!   bucket by bucket and merged ([`report`]), against the baseline of the
//!   same judgement from the raw per-report rows (no folding).
//! - Telemetry size: the bytes of one device's report with `features`
//!   columns, per minute at the agent's default 10 s window.
//! - Detection: with the default 60 s buckets and 300 s window, 10 devices
//!   at two rows a second, two of the columns shift by half a std at a set
//!   time; the watcher looks every 5 s (simulated clock) until
//!   `DataDriftDetected`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use wasmops_drift::fleet::evaluate;
use wasmops_profile::{ColumnProfile, Profile};
use wasmops_protocol::telemetry::{Report, Summary, VersionStats};

use super::report::{Query, report};
use crate::Coordinator;

/// What the benchmark measured.
#[derive(Debug, Serialize)]
pub struct Figures {
    pub devices: usize,
    pub features: usize,
    pub windows: usize,
    /// Seconds to store and fold every report.
    pub store_s: f64,
    /// Judging the range from the folded buckets (the report the API serves).
    pub report_ms: f64,
    /// Judging the same range from the raw per-report rows.
    pub raw_ms: f64,
    pub raw_over_folded: f64,
    pub report_bytes: usize,
    pub bytes_per_device_per_minute: usize,
    /// From the first shifted prediction to `DataDriftDetected` (default windows).
    pub detection_s: f64,
}

/// A deterministic spread of `n` values like the reference's (golden-ratio
/// points on [-2, 2] plus `shift`).
fn spread(n: usize, shift: f64, phase: f64) -> impl Iterator<Item = f64> {
    (0..n).map(move |i| shift + (((i as f64 + phase) * 0.618_033_988_7) % 1.0) * 4.0 - 2.0)
}

fn profile(features: usize) -> Profile {
    Profile {
        rows: 5000,
        input: Some("X".into()),
        columns: (0..features)
            .map(|j| {
                let v: Vec<Option<f64>> = spread(5000, 0.0, j as f64 * 0.1).map(Some).collect();
                ColumnProfile::of_numbers(&format!("f{j}"), &v)
            })
            .collect(),
        ..Profile::default()
    }
}

/// `values` counted as an agent counts them against `reference`.
pub(crate) fn summarise(reference: &ColumnProfile, values: impl Iterator<Item = f64>) -> Summary {
    let mut s = Summary::default();
    for x in values {
        s.add(x);
        let (below, above) = wasmops_profile::beyond(reference.min, reference.max, x);
        s.add_bin(reference.bin(x), reference.counts.len(), below, above);
    }
    s
}

/// One device window: `rows` values per column, columns `0..shifted` moved by `shift`.
fn stats(p: &Profile, rows: usize, seed: u64, shifted: usize, shift: f64) -> VersionStats {
    let mut features = BTreeMap::new();
    for (j, reference) in p.columns.iter().enumerate() {
        let by = if j < shifted { shift } else { 0.0 };
        let values = spread(rows, by, seed as f64 * 0.37 + j as f64);
        features.insert(reference.name.clone(), summarise(reference, values));
    }
    VersionStats {
        model: "bench".into(),
        version: "1.0.0".into(),
        role: "live".into(),
        predictions: rows as u64,
        features,
        ..VersionStats::default()
    }
}

fn message(device: &str, seq: u64, v: VersionStats) -> crate::telemetry::Incoming {
    let r = Report {
        device: device.into(),
        stream: "bench".into(),
        seq,
        window_start_ms: 0,
        window_end_ms: 1,
        versions: vec![v],
        dropped_reports: 0,
        dropped_predictions: 0,
    };
    (
        device.into(),
        serde_json::to_vec(&r).expect("reports serialise").into(),
    )
}

async fn coordinator(
    dir: &std::path::Path,
    p: &Profile,
    devices: usize,
) -> anyhow::Result<Arc<Coordinator>> {
    let mut config =
        crate::CoordinatorConfig::new(dir.to_path_buf(), wasmops_trust::TrustPolicy::keys(vec![]));
    config.mqtt = crate::MqttConfig::External("mqtt://127.0.0.1:1".into());
    let c = Coordinator::open(&config).await?;
    sqlx::query("INSERT INTO models (name, created_at) VALUES ('bench', 0)")
        .execute(&c.db.pool)
        .await?;
    sqlx::query(
        "INSERT INTO model_versions (name, version, sequence, sha256, size_bytes, signer, claims, registered_at, registered_by)
         VALUES ('bench', '1.0.0', 1, '-', 0, '-', $1, 0, 'bench')",
    )
    .bind(serde_json::json!({ "profile": p }).to_string())
    .execute(&c.db.pool)
    .await?;
    let mut tx = c.db.pool.begin().await?;
    for d in 0..devices {
        crate::auth::create(
            &mut tx,
            &crate::enrolment::credential_name(&format!("dev-{d:04}")),
            crate::auth::Role::Device,
            None,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(c)
}

/// The baseline: the same judgement from the raw rows, merged per bucket.
async fn raw(c: &Coordinator, p: &Profile, since: i64, until: i64) -> anyhow::Result<usize> {
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT received_at, stats FROM telemetry WHERE model = 'bench' AND version = '1.0.0' AND received_at >= $1 AND received_at < $2",
    )
    .bind(since)
    .bind(until)
    .fetch_all(&c.db.pool)
    .await?;
    let mut buckets: BTreeMap<i64, VersionStats> = BTreeMap::new();
    for (at, s) in &rows {
        let v: VersionStats = serde_json::from_str(s)?;
        buckets
            .entry(c.monitor.bucket_of(*at))
            .or_default()
            .merge(&v);
    }
    let mut all = VersionStats::default();
    let mut judged = 0;
    for v in buckets.values() {
        all.merge(v);
        let counts = v
            .features
            .iter()
            .map(|(k, s)| (k.clone(), super::report::counts_of(s)))
            .collect();
        judged += evaluate(&p.columns, &counts, &Default::default(), None)
            .columns
            .len();
    }
    Ok(judged + rows.len())
}

/// Runs the benchmark in `dir`.
pub async fn run(
    dir: &std::path::Path,
    devices: usize,
    features: usize,
    windows: usize,
) -> anyhow::Result<Figures> {
    let p = profile(features);
    let c = coordinator(&dir.join("evaluate"), &p, devices).await?;
    let bucket = c.monitor.bucket_ms();
    let start = c.monitor.bucket_of(crate::now_ms()) - windows as i64 * bucket;
    let mut report_bytes = 0;
    let stored = Instant::now();
    let mut seq = 0;
    for w in 0..windows {
        let batch: Vec<_> = (0..devices)
            .map(|d| {
                seq += 1;
                let m = message(&format!("dev-{d:04}"), seq, stats(&p, 60, seq, 0, 0.0));
                report_bytes = m.1.len();
                m
            })
            .collect();
        for chunk in batch.chunks(2000) {
            crate::telemetry::store_at(&c, chunk, start + w as i64 * bucket + 1).await?;
        }
    }
    let store_s = stored.elapsed().as_secs_f64();
    let (since, until) = (start, start + windows as i64 * bucket);
    let q = Query {
        model: "bench".into(),
        version: Some("1.0.0".into()),
        since_ms: since,
        until_ms: until,
        ..Query::default()
    };
    // Best of three, each way.
    let mut report_ms = f64::MAX;
    let mut raw_ms = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let r = report(&c, &q).await?;
        report_ms = report_ms.min(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            r.trend.len() == windows && r.devices == devices as u64,
            "the report saw {} buckets and {} devices",
            r.trend.len(),
            r.devices
        );
        let t = Instant::now();
        raw(&c, &p, since, until).await?;
        raw_ms = raw_ms.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Figures {
        devices,
        features,
        windows,
        store_s,
        report_ms,
        raw_ms,
        raw_over_folded: raw_ms / report_ms,
        report_bytes,
        bytes_per_device_per_minute: report_bytes * 6,
        detection_s: detection(&dir.join("detect"), &p).await?,
    })
}

/// Seconds from the first shifted row to `DataDriftDetected` under the
/// default windows, on a simulated clock.
async fn detection(dir: &std::path::Path, p: &Profile) -> anyhow::Result<f64> {
    const DEVICES: usize = 10;
    let c = coordinator(dir, p, DEVICES).await?;
    let t0 = c.monitor.bucket_of(crate::now_ms()) - 3_600_000;
    let shift_at = t0 + 600_000;
    let step = Duration::from_secs(5).as_millis() as i64;
    let mut seq = 0;
    let mut now = t0;
    while now < shift_at + 1_800_000 {
        now += step;
        // Every 10 s each device reports its window of 20 rows (two a second).
        if (now - t0) % 10_000 == 0 {
            let shifted = now > shift_at;
            let batch: Vec<_> = (0..DEVICES)
                .map(|d| {
                    seq += 1;
                    let v = stats(p, 20, seq, if shifted { 2 } else { 0 }, 0.5 * 1.155);
                    message(&format!("dev-{d:04}"), seq, v)
                })
                .collect();
            crate::telemetry::store_at(&c, &batch, now).await?;
        }
        let emitted = super::watch::look(&c, now).await;
        if emitted.iter().any(|(k, _)| *k == "DataDriftDetected") {
            anyhow::ensure!(now > shift_at, "drift announced before the shift");
            // The first shifted rows are those of the window that ends
            // first after the shift: 10 s before it is reported.
            return Ok(((now - shift_at) as f64 / 1000.0).max(0.0));
        }
    }
    anyhow::bail!("no DataDriftDetected within 30 minutes of the shift")
}

#[cfg(test)]
mod tests {
    /// The benchmark's own checks hold on a small fleet, and a half-std
    /// shift is found within the default window.
    #[tokio::test]
    async fn a_small_benchmark_runs_and_finds_the_shift() {
        let dir = tempfile::tempdir().unwrap();
        let f = super::run(dir.path(), 20, 5, 4).await.unwrap();
        assert!(f.report_bytes > 1000, "{f:?}");
        assert!(f.detection_s > 0.0 && f.detection_s <= 300.0, "{f:?}");
        eprintln!("{f:?}");
    }
}
