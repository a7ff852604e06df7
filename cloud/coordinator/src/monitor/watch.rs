//! The watcher: every few seconds, each model version with telemetry in the
//! latest window is judged ([`report`]) and a finding that was not there at
//! the last look becomes an event — `DataDriftDetected` and
//! `PredictionDriftDetected` (naming the drifted columns),
//! `DataQualityAlert` (one per column and anomaly, naming devices and label
//! groups; again when it spreads to more devices), `PerformanceDegraded` (realised accuracy below the model's own
//! expectation by the model's margin). A finding that goes away is
//! forgotten, so its return is announced again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::json;
use wasmops_api::{Drift, MonitorReport};

use super::report::{Query, report_with};
use super::settings;
use crate::{Coordinator, events};

/// A column drifts for the watcher only once this many of its values are in
/// the window. Measured on iris (150 training rows, 14–19 bins), the binned
/// W1/std of n rows drawn from the training rows themselves — pure sampling
/// noise — averages 0.04 at n = 800 (worst of 50 draws 0.105: a false
/// alarm), 0.026 at 2,000 (worst 0.075) and 0.013 at 8,000 (worst 0.033);
/// at 3,000 the worst of many looks stays near 0.06, under the 0.1 rule.
pub const MIN_ROWS: u64 = 3_000;

/// Realised accuracy is compared with the estimate only over this many
/// outcomes: the accuracy of 50 outcomes has a standard error of at most 0.07.
pub const MIN_LABELS: u64 = 50;

/// The watcher looks this often at most (and once a bucket when buckets are longer).
const TICK_MS: i64 = 5_000;

/// Findings announced last, per (model, version, event kind).
#[derive(Debug, Default)]
pub struct Announced(std::sync::Mutex<BTreeMap<Finding, BTreeSet<String>>>);

/// (model, version, event kind).
type Finding = (String, String, &'static str);

impl Announced {
    /// Records `now` as the findings of `key`; returns those not announced before.
    fn news(&self, key: Finding, now: BTreeSet<String>) -> BTreeSet<String> {
        let mut seen = self.0.lock().expect("announced lock");
        let before = seen.get(&key).cloned().unwrap_or_default();
        let new = now.difference(&before).cloned().collect();
        seen.insert(key, now);
        new
    }
}

fn drifted(d: &Drift) -> BTreeSet<String> {
    d.columns
        .iter()
        .filter(|c| c.drifted && c.count >= MIN_ROWS)
        .map(|c| c.name.clone())
        .collect()
}

fn drift_detail(
    r: &MonitorReport,
    d: &Drift,
    columns: &BTreeSet<String>,
    window_ms: i64,
) -> serde_json::Value {
    let judged: Vec<_> = d
        .columns
        .iter()
        .filter(|c| columns.contains(&c.name))
        .collect();
    // Where it shows: the label groups whose own counts drift in these columns.
    let groups: BTreeMap<&str, Vec<&str>> = r
        .groups
        .iter()
        .filter_map(|g| {
            let here: Vec<&str> = g
                .drifted
                .iter()
                .filter(|c| c.count >= MIN_ROWS && columns.contains(&c.name))
                .map(|c| c.name.as_str())
                .collect();
            (!here.is_empty()).then_some((g.group.as_str(), here))
        })
        .collect();
    json!({
        "model": r.model,
        "version": r.version,
        "columns": columns,
        "groups": groups,
        "scores": judged.iter().map(|c| (c.name.clone(), json!({"method": c.method, "score": c.score, "threshold": c.threshold}))).collect::<BTreeMap<_, _>>(),
        "dataset_drift": d.dataset_drift,
        "drift_share": d.drift_share,
        "coefficient": d.coefficient,
        "devices": r.devices,
        "predictions": r.predictions,
        "window_ms": window_ms,
    })
}

/// Judges every version with telemetry in the window ending at `now_ms`
/// and emits what is new; returns the events emitted (kind, subject).
pub async fn look(c: &Coordinator, now_ms: i64) -> Vec<(&'static str, String)> {
    let window = c.monitor.window_ms();
    let since = now_ms - window;
    let versions: Vec<(String, String)> = match sqlx::query_as(
        "SELECT DISTINCT model, version FROM monitor_counts WHERE device = $1 AND bucket >= $2",
    )
    .bind(super::fold::FLEET)
    .bind(c.monitor.bucket_of(since))
    .fetch_all(&c.db.read)
    .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("monitoring: cannot list versions with telemetry: {e}");
            return vec![];
        }
    };
    let mut emitted = vec![];
    for (model, version) in versions {
        let q = Query {
            model: model.clone(),
            version: Some(version.clone()),
            since_ms: since,
            until_ms: now_ms + 1,
            selector: BTreeMap::new(),
        };
        let resolved = match settings::load(c, &model).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("monitoring {model}@{version}: {e}");
                continue;
            }
        };
        let r = match report_with(c, &q, &resolved).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("monitoring {model}@{version}: {e}");
                continue;
            }
        };
        let subject = format!("{model}@{version}");
        let key = |kind| (model.clone(), version.clone(), kind);
        for (kind, d) in [
            ("DataDriftDetected", &r.data_drift),
            ("PredictionDriftDetected", &r.prediction_drift),
        ] {
            let now = drifted(d);
            if !c.monitor_announced.news(key(kind), now.clone()).is_empty() {
                events::emit(c, kind, subject.clone(), drift_detail(&r, d, &now, window));
                emitted.push((kind, subject.clone()));
            }
        }
        // One finding per (column, anomaly, device): an anomaly is announced
        // again, naming every device it now holds on, when it spreads to
        // devices it did not hold on at the last look.
        let finding = |a: &wasmops_api::QualityAlert, device: &str| {
            format!("{}\u{1f}{}\u{1f}{device}", a.column, a.anomaly)
        };
        let quality: BTreeSet<String> = r
            .quality
            .iter()
            .flat_map(|a| {
                let fleet_wide = a.devices.is_empty().then(String::new);
                a.devices
                    .iter()
                    .cloned()
                    .chain(fleet_wide)
                    .map(move |d| finding(a, &d))
            })
            .collect();
        let new = c.monitor_announced.news(key("DataQualityAlert"), quality);
        for a in r.quality.iter().filter(|a| {
            let fleet_wide = a.devices.is_empty().then(String::new);
            a.devices
                .iter()
                .chain(fleet_wide.as_ref())
                .any(|d| new.contains(&finding(a, d)))
        }) {
            events::emit(
                c,
                "DataQualityAlert",
                subject.clone(),
                json!({
                    "model": r.model, "version": r.version, "column": a.column,
                    "columns": [a.column], "anomaly": a.anomaly, "detail": a.detail,
                    "devices": a.devices, "groups": a.groups, "window_ms": window,
                }),
            );
            emitted.push(("DataQualityAlert", subject.clone()));
        }
        let margin = resolved.accuracy_margin;
        let p = &r.performance;
        let degraded = match (p.accuracy, p.estimated_accuracy) {
            (Some(a), Some(e)) if p.labelled >= MIN_LABELS && a < e - margin => {
                BTreeSet::from(["accuracy".to_string()])
            }
            _ => BTreeSet::new(),
        };
        if !c
            .monitor_announced
            .news(key("PerformanceDegraded"), degraded)
            .is_empty()
        {
            events::emit(
                c,
                "PerformanceDegraded",
                subject.clone(),
                json!({
                    "model": r.model, "version": r.version, "metric": "accuracy",
                    "accuracy": p.accuracy, "estimated_accuracy": p.estimated_accuracy,
                    "margin": margin, "labelled": p.labelled, "devices": r.devices,
                    "window_ms": window,
                }),
            );
            emitted.push(("PerformanceDegraded", subject.clone()));
        }
    }
    emitted
}

/// Looks every bucket (at most every [`TICK_MS`]). Never returns.
pub async fn run(c: Arc<Coordinator>) {
    let every = c.monitor.bucket_ms().clamp(100, TICK_MS) as u64;
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        look(&c, crate::now_ms()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wasmops_profile::{ColumnProfile, Profile};
    use wasmops_protocol::telemetry::{Report, VersionStats};

    use crate::telemetry::Incoming;

    /// Values spread like the reference: the i-th of n golden-ratio points.
    fn spread(n: usize, shift: f64, phase: f64) -> Vec<f64> {
        (0..n)
            .map(|i| shift + (((i as f64 + phase) * 0.618_033_988_7) % 1.0) * 4.0 - 2.0)
            .collect()
    }

    fn profile() -> Profile {
        let column = |name: &str, phase: f64| {
            let v: Vec<Option<f64>> = spread(4000, 0.0, phase).into_iter().map(Some).collect();
            ColumnProfile::of_numbers(name, &v)
        };
        Profile {
            rows: 4000,
            input: Some("X".into()),
            columns: vec![column("a", 0.0), column("b", 0.3)],
            ..Profile::default()
        }
    }

    /// A device's window: `n` rows, column `b` shifted by `shift`, column `a`
    /// stuck at 0 when `stuck`, counted as an agent counts them.
    fn report(p: &Profile, device: &str, seq: u64, n: usize, shift: f64, stuck: bool) -> Incoming {
        let mut features = BTreeMap::new();
        for (col, values) in [
            (
                "a",
                if stuck {
                    vec![0.0; n]
                } else {
                    spread(n, 0.0, seq as f64 * 0.37)
                },
            ),
            ("b", spread(n, shift, seq as f64 * 0.71)),
        ] {
            let reference = p.column(col).unwrap();
            let s = crate::monitor::bench::summarise(reference, values.into_iter());
            features.insert(col.to_string(), s);
        }
        let r = Report {
            device: device.into(),
            stream: "s".into(),
            seq,
            window_start_ms: 0,
            window_end_ms: 1000,
            versions: vec![VersionStats {
                model: "m".into(),
                version: "1.0.0".into(),
                role: "live".into(),
                predictions: n as u64,
                features,
                ..Default::default()
            }],
            dropped_reports: 0,
            dropped_predictions: 0,
        };
        (device.into(), serde_json::to_vec(&r).unwrap().into())
    }

    /// Reports folded at ingest are judged against the signed profile: a
    /// steady stream raises nothing, a shifted column raises one drift event
    /// naming it (once), a stuck sensor a quality alert naming its device.
    #[tokio::test]
    async fn folded_telemetry_is_judged_and_new_findings_announced_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        let p = profile();
        sqlx::query("INSERT INTO models (name, created_at) VALUES ('m', 0)")
            .execute(&c.db.pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO model_versions (name, version, sequence, sha256, size_bytes, signer, claims, registered_at, registered_by)
             VALUES ('m', '1.0.0', 1, 'x', 1, 'k', $1, 0, 'test')",
        )
        .bind(serde_json::json!({"profile": p}).to_string())
        .execute(&c.db.pool)
        .await
        .unwrap();
        let devices = ["gw-1", "gw-2", "gw-3"];
        for d in devices {
            crate::testing::credential(&c, d).await;
        }
        let now = crate::now_ms();
        let mut seq = 0;
        let mut batch = |shift: f64, stuck_gw3: bool| -> Vec<Incoming> {
            devices
                .iter()
                .map(|d| {
                    seq += 1;
                    report(&p, d, seq, 400, shift, stuck_gw3 && *d == "gw-3")
                })
                .collect()
        };
        let store = async |b: Vec<Incoming>, at: i64| {
            crate::telemetry::store_at(&c, &b, at).await.unwrap();
        };
        // Steady, then (after more than the 300 s window) shifted and stuck.
        let before = now - 400_000;
        store(batch(0.0, false), before).await;
        store(batch(0.0, false), before + 30_000).await;
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT device FROM monitor_counts ORDER BY device")
                .fetch_all(&c.db.read)
                .await
                .unwrap();
        // Two buckets (60 s default), three devices and the fleet row each, at most.
        assert!(rows.len() <= 8 && rows.iter().any(|r| r.0 == super::super::fold::FLEET));
        assert!(
            super::look(&c, before + 31_000).await.is_empty(),
            "steady raises nothing"
        );

        for k in 0..3 {
            store(batch(1.0, true), now + k).await;
        }
        let emitted = super::look(&c, now + 10).await;
        let kinds: Vec<&str> = emitted.iter().map(|e| e.0).collect();
        assert!(kinds.contains(&"DataDriftDetected"), "{emitted:?}");
        assert!(kinds.contains(&"DataQualityAlert"), "{emitted:?}");
        let r = crate::monitor::report::report(
            &c,
            &super::Query {
                model: "m".into(),
                since_ms: before,
                until_ms: now + 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(r.version, "1.0.0");
        assert_eq!(r.devices, 3);
        assert_eq!(r.predictions, 400 * 3 * 5);
        let b = r.data_drift.columns.iter().find(|x| x.name == "b").unwrap();
        assert!(b.drifted, "{r:#?}");
        let stuck = r
            .quality
            .iter()
            .find(|q| q.anomaly == "FEATURE_TYPE_LOW_UNIQUE")
            .unwrap_or_else(|| panic!("{:#?}", r.quality));
        assert_eq!(
            (stuck.column.as_str(), stuck.devices.as_slice()),
            ("a", &["gw-3".to_string()][..])
        );
        // Looked at again: nothing new to announce.
        assert!(super::look(&c, now + 20).await.is_empty());
        // Questions that cannot be answered are the caller's errors.
        let ask = |q: super::Query| {
            let c = c.clone();
            async move { crate::monitor::report::report(&c, &q).await.unwrap_err() }
        };
        let empty_range = ask(super::Query {
            model: "m".into(),
            since_ms: now,
            until_ms: now,
            ..Default::default()
        })
        .await;
        assert!(matches!(
            empty_range,
            crate::CoordinatorError::BadRequest(_)
        ));
        let unknown = ask(super::Query {
            model: "m".into(),
            version: Some("9.9.9".into()),
            since_ms: before,
            until_ms: now,
            ..Default::default()
        })
        .await;
        assert!(matches!(unknown, crate::CoordinatorError::NotFound(m) if m.contains("9.9.9")));
        assert!(super::super::report::parse_selector("site").is_err());
    }
}
