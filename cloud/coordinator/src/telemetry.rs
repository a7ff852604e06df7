//! Telemetry ingestion: device reports arrive on MQTT, are stored in batches
//! (one transaction per batch), de-duplicated by (device, stream, seq), and
//! acknowledged to the device only after they are committed — so a report is
//! either stored once or still in the device's outbox.

use std::collections::BTreeMap;
use std::sync::Arc;

use rumqttc::QoS;
use serde::Serialize;
use tokio::sync::mpsc;
use wasmops_api::CandidateTelemetry;
use wasmops_protocol::telemetry::{Ack, Report, VersionStats};
use wasmops_protocol::topics;

use crate::Coordinator;

/// Reports stored per transaction, at most.
const BATCH: usize = 2000;

/// One raw telemetry message: the device id from the topic, and the payload.
pub type Incoming = (String, bytes::Bytes);

/// Starts the writer; the MQTT subscriber feeds it.
pub fn spawn_writer(c: Arc<Coordinator>) -> mpsc::Sender<Incoming> {
    let (tx, mut rx) = mpsc::channel::<Incoming>(20_000);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            // Retry a batch that failed on the database (e.g. Postgres restarting);
            // the devices resend anyway, but there is no reason to make them.
            for attempt in 0..3 {
                match store(&c, &batch).await {
                    Ok(acks) => {
                        send_acks(&c, acks);
                        break;
                    }
                    Err(e) => {
                        tracing::error!(
                            "cannot store {} telemetry reports (attempt {}): {e}",
                            batch.len(),
                            attempt + 1
                        );
                        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    }
                }
            }
            batch.clear();
        }
    });
    tx
}

/// Stores a batch; returns what to acknowledge per device (duplicates included:
/// the device needs the ack either way).
async fn store(c: &Coordinator, batch: &[Incoming]) -> sqlx::Result<BTreeMap<String, Vec<u64>>> {
    let mut acks: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let now = crate::now_ms();
    let mut known = c.known.get(c).await?;
    // A device enrolled since the set was read is looked up on its own.
    for (device, _) in batch {
        if !known.contains(device) && c.known.contains(c, device).await? {
            known.insert(device.clone());
        }
    }
    let mut tx = c.db.pool.begin().await?;
    for (device, payload) in batch {
        if !known.contains(device) {
            tracing::warn!("telemetry from `{device}` rejected: not enrolled");
            continue;
        }
        let report: Report = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("telemetry from {device} ignored: not a report: {e}");
                continue;
            }
        };
        if &report.device != device {
            tracing::warn!(
                "telemetry on {device}'s topic claims to be from {}: ignored",
                report.device
            );
            continue;
        }
        // Refused alone, and acknowledged: it can never be stored, and the
        // device must not resend it forever. The batch's other reports go on.
        if let Err(e) = report.check() {
            tracing::warn!("telemetry report {} from {device} refused: {e}", report.seq);
            acks.entry(device.clone()).or_default().push(report.seq);
            continue;
        }
        let fresh = sqlx::query(
            "INSERT INTO telemetry_reports (device, stream, seq, received_at, window_start, window_end, dropped_reports, dropped_predictions)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        )
        .bind(device)
        .bind(&report.stream)
        .bind(report.seq as i64)
        .bind(now)
        .bind(report.window_start_ms)
        .bind(report.window_end_ms)
        .bind(report.dropped_reports as i64)
        .bind(report.dropped_predictions as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if fresh {
            for v in &report.versions {
                sqlx::query(
                    "INSERT INTO telemetry (device, stream, seq, model, version, role, window_end, predictions, errors, agreed, stats)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
                )
                .bind(device)
                .bind(&report.stream)
                .bind(report.seq as i64)
                .bind(&v.model)
                .bind(&v.version)
                .bind(&v.role)
                .bind(report.window_end_ms)
                .bind(v.predictions as i64)
                .bind(v.errors as i64)
                .bind(v.agreed as i64)
                .bind(serde_json::to_string(v).expect("stats serialise"))
                .execute(&mut *tx)
                .await?;
            }
        }
        acks.entry(device.clone()).or_default().push(report.seq);
    }
    tx.commit().await?;
    Ok(acks)
}

fn send_acks(c: &Coordinator, acks: BTreeMap<String, Vec<u64>>) {
    let Some(bus) = c.bus.get() else { return };
    for (device, seqs) in acks {
        let payload = serde_json::to_vec(&Ack { seqs }).expect("acks serialise");
        // If the queue is full the device resends and gets its ack then.
        if let Err(e) = bus.try_publish(
            topics::telemetry_ack(&device),
            QoS::AtLeastOnce,
            false,
            payload,
        ) {
            tracing::debug!("ack to {device} not queued: {e}");
        }
    }
}

/// Deletes telemetry whose window ended before `cutoff_ms`, and the
/// de-duplication records received before it; returns the rows deleted.
pub async fn prune(c: &Coordinator, cutoff_ms: i64) -> sqlx::Result<u64> {
    let mut tx = c.db.pool.begin().await?;
    let a = sqlx::query("DELETE FROM telemetry WHERE window_end < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM telemetry_reports WHERE received_at < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(a + b)
}

/// Keeps `retention` of telemetry: prunes once a minute. Never returns.
pub async fn run_pruner(c: Arc<Coordinator>, retention: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        match prune(&c, crate::now_ms() - retention.as_millis() as i64).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("pruned {n} telemetry rows older than {retention:?}"),
            Err(e) => tracing::error!("telemetry pruning failed: {e}"),
        }
    }
}

/// Telemetry for one model version, merged over devices and windows.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    pub model: String,
    pub version: String,
    pub role: String,
    /// Counts, failure rate, latency quantiles, agreement: what rollout views show.
    #[serde(flatten)]
    pub summary: CandidateTelemetry,
    pub stats: VersionStats,
}

/// Merges the reports for `model@version` in `role` whose window ended at or
/// after `since_ms`, from `devices` (all when `None`).
pub async fn aggregate(
    c: &Coordinator,
    model: &str,
    version: &str,
    role: &str,
    devices: Option<&[String]>,
    since_ms: i64,
) -> sqlx::Result<Aggregate> {
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT device, stats FROM telemetry WHERE model = $1 AND version = $2 AND role = $3 AND window_end >= $4")
        .bind(model)
        .bind(version)
        .bind(role)
        .bind(since_ms)
        .fetch_all(&c.db.pool)
        .await?;
    let wanted: Option<std::collections::HashSet<&str>> =
        devices.map(|d| d.iter().map(String::as_str).collect());
    let mut stats = VersionStats {
        model: model.into(),
        version: version.into(),
        role: role.into(),
        ..Default::default()
    };
    let mut seen = std::collections::HashSet::new();
    for (device, json) in &rows {
        if wanted
            .as_ref()
            .is_some_and(|w| !w.contains(device.as_str()))
        {
            continue;
        }
        if let Ok(s) = serde_json::from_str::<VersionStats>(json) {
            stats.merge(&s);
            seen.insert(device.clone());
        }
    }
    let n = stats.predictions;
    let summary = CandidateTelemetry {
        predictions: n,
        errors: stats.errors,
        failure_rate: (n > 0).then(|| stats.errors as f64 / n as f64),
        p50_ms: stats.latency.quantile_ms(0.5),
        p95_ms: stats.latency.quantile_ms(0.95),
        p99_ms: stats.latency.quantile_ms(0.99),
        agreement: (role == "shadow" && n > 0).then(|| stats.agreed as f64 / n as f64),
        devices: seen.len(),
    };
    Ok(Aggregate {
        model: model.into(),
        version: version.into(),
        role: role.into(),
        summary,
        stats,
    })
}

/// Every (model, version, role) with telemetry since `since_ms`, aggregated,
/// plus per-device drop counters.
pub async fn summary(c: &Coordinator, since_ms: i64) -> sqlx::Result<serde_json::Value> {
    let keys: Vec<(String, String, String)> =
        sqlx::query_as("SELECT DISTINCT model, version, role FROM telemetry WHERE window_end >= $1 ORDER BY model, version, role").bind(since_ms).fetch_all(&c.db.pool).await?;
    let mut versions = vec![];
    for (m, v, r) in keys {
        versions.push(aggregate(c, &m, &v, &r, None, since_ms).await?);
    }
    let (reports,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM telemetry_reports")
        .fetch_one(&c.db.pool)
        .await?;
    let dropped: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT device, MAX(dropped_reports), MAX(dropped_predictions) FROM telemetry_reports GROUP BY device HAVING MAX(dropped_reports) > 0").fetch_all(&c.db.pool).await?;
    Ok(serde_json::json!({
        "reports": reports,
        "versions": versions,
        "dropped": dropped.into_iter().map(|(d, r, p)| serde_json::json!({"device": d, "reports": r, "predictions": p})).collect::<Vec<_>>(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports are stored once whatever the resends, rejected from strangers, and pruned by age.
    #[tokio::test]
    async fn store_dedups_rejects_strangers_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::CoordinatorConfig::new(
            dir.path().to_path_buf(),
            wasmops_trust::TrustPolicy::keys(vec![]),
        );
        config.mqtt = crate::MqttConfig::External("mqtt://127.0.0.1:1".into());
        let c = crate::Coordinator::open(&config).await.unwrap();
        let mut tx = c.db.pool.begin().await.unwrap();
        crate::auth::create(
            &mut tx,
            &crate::enrolment::credential_name("gw-1"),
            crate::auth::Role::Device,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let report = |device: &str, seq: u64, end: i64| -> Incoming {
            let v = VersionStats {
                model: "m".into(),
                version: "1.0.0".into(),
                role: "live".into(),
                predictions: 10,
                errors: 1,
                ..Default::default()
            };
            let r = Report {
                device: device.into(),
                stream: "s".into(),
                seq,
                window_start_ms: end - 1000,
                window_end_ms: end,
                versions: vec![v],
                dropped_reports: 0,
                dropped_predictions: 0,
            };
            (device.to_string(), serde_json::to_vec(&r).unwrap().into())
        };
        let now = crate::now_ms();
        let acks = store(
            &c,
            &[
                report("gw-1", 0, now - 10_000),
                report("gw-1", 1, now),
                report("gw-1", 1, now),
                report("stranger", 0, now),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            acks.get("gw-1"),
            Some(&vec![0, 1, 1]),
            "duplicates are acknowledged too"
        );
        assert!(!acks.contains_key("stranger"));
        let a = aggregate(&c, "m", "1.0.0", "live", None, 0).await.unwrap();
        assert_eq!(
            (a.summary.predictions, a.summary.errors, a.summary.devices),
            (20, 2, 1),
            "the resent report counts once"
        );
        // Issue 24.7: a poisoned report (a NUL in a column name fails a whole
        // Postgres batch) is refused alone; its batch-mate is stored.
        let mut poison: Report = serde_json::from_slice(&report("gw-1", 5, now).1).unwrap();
        poison.versions[0]
            .features
            .insert("x\0y".into(), Default::default());
        let acks = store(
            &c,
            &[
                ("gw-1".into(), serde_json::to_vec(&poison).unwrap().into()),
                report("gw-1", 6, now),
            ],
        )
        .await
        .unwrap();
        assert_eq!(acks.get("gw-1"), Some(&vec![5, 6]));
        let a = aggregate(&c, "m", "1.0.0", "live", None, 0).await.unwrap();
        assert_eq!(a.summary.predictions, 30, "only the good report counts");
        assert_eq!(
            prune(&c, now - 5_000).await.unwrap(),
            1,
            "only the old window goes"
        );
        assert_eq!(
            aggregate(&c, "m", "1.0.0", "live", None, 0)
                .await
                .unwrap()
                .summary
                .predictions,
            20
        );
    }
}
