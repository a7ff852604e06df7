//! Telemetry ingestion: device reports arrive on MQTT, are stored in batches
//! (one transaction per batch), de-duplicated by (device, stream, seq), and
//! acknowledged to the device only after they are committed — so a report is
//! either stored once or still in the device's outbox.
//!
//! Time: every row carries the coordinator's receive time (`received_at`),
//! which pruning, gates and queries go by; the device's own window times are
//! kept as data only (a device that boots at 1970 or runs ahead is neither
//! pruned at once nor counted in every later gate). Rollout gates read their
//! telemetry incrementally ([`Tallies`]): each tick reads only rows received
//! since the last one.

use std::collections::BTreeMap;
use std::sync::Arc;

use rumqttc::QoS;
use serde::Serialize;
use tokio::sync::mpsc;
use wasmops_api::CandidateTelemetry;
use wasmops_protocol::telemetry::{Report, VersionStats};
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
    store_at(c, batch, crate::now_ms()).await
}

/// [`store`] with the receive time given: each payload is read and checked
/// (a report that can never be stored is acknowledged and left out), then the
/// rest go to [`store_checked`].
pub(crate) async fn store_at(
    c: &Coordinator,
    batch: &[Incoming],
    now: i64,
) -> sqlx::Result<BTreeMap<String, Vec<u64>>> {
    let mut refused: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut reports = Vec::with_capacity(batch.len());
    for (device, payload) in batch {
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
            refused.entry(device.clone()).or_default().push(report.seq);
            continue;
        }
        reports.push(report);
    }
    store_checked(c, &reports, refused, now).await
}

/// Stores reports already read and checked ([`Report::check`]; each names
/// its device), in one transaction; returns what to acknowledge per device:
/// the stored and duplicate reports, and the `refused` ones (sequence numbers
/// of reports that failed their checks). Nothing is acknowledged to a device
/// that is not enrolled, and its reports are left out.
pub(crate) async fn store_checked(
    c: &Coordinator,
    reports: &[Report],
    refused: BTreeMap<String, Vec<u64>>,
    now: i64,
) -> sqlx::Result<BTreeMap<String, Vec<u64>>> {
    let mut acks: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut known = c.known.get(c).await?;
    // A device enrolled since the set was read is looked up on its own; a
    // stranger is named once per batch.
    let mut strangers = std::collections::BTreeSet::new();
    for device in reports.iter().map(|r| &r.device).chain(refused.keys()) {
        if known.contains(device) || strangers.contains(device) {
            continue;
        }
        if c.known.contains(c, device).await? {
            known.insert(device.clone());
        } else {
            tracing::warn!("telemetry from `{device}` rejected: not enrolled");
            strangers.insert(device.clone());
        }
    }
    acks.extend(refused.into_iter().filter(|(d, _)| known.contains(d)));
    let mut tx = c.db.pool.begin().await?;
    let mut folded = crate::monitor::fold::Folded::default();
    let bucket = c.monitor.bucket_of(now);
    for report in reports {
        let device = &report.device;
        if !known.contains(device) {
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
                    "INSERT INTO telemetry (device, stream, seq, model, version, role, window_end, predictions, errors, agreed, stats, received_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
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
                .bind(serde_json::to_string(&VersionStats {
                    records: vec![],
                    sample: vec![],
                    sample_ids: vec![],
                    ..v.clone()
                })
                .expect("stats serialise"))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                store_records(&mut tx, device, v, now).await?;
                if !v.sample.is_empty() {
                    sqlx::query(
                        "INSERT INTO samples (model, version, device, received_at, rows_json, ids_json) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&v.model)
                    .bind(&v.version)
                    .bind(device)
                    .bind(now)
                    .bind(serde_json::to_string(&v.sample).expect("numbers serialise"))
                    .bind(serde_json::to_string(&v.sample_ids).expect("text serialises"))
                    .execute(&mut *tx)
                    .await?;
                }
                folded.add(device, v, bucket);
            }
        }
        acks.entry(device.clone()).or_default().push(report.seq);
    }
    folded.write(&mut tx).await?;
    tx.commit().await?;
    Ok(acks)
}

fn send_acks(c: &Coordinator, acks: BTreeMap<String, Vec<u64>>) {
    let Some(bus) = c.bus.get() else { return };
    for (device, seqs) in acks {
        let payload = crate::bus::seal_ack(c, &device, seqs);
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

/// Rows per INSERT of prediction records (9 parameters each: well under
/// SQLite's and PostgreSQL's limits on bound parameters).
const RECORDS_PER_INSERT: usize = 50;

/// Stores a version's prediction records, one row each; an id already
/// stored (a replay, a forged copy) is left as it was.
async fn store_records(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    device: &str,
    v: &VersionStats,
    now: i64,
) -> sqlx::Result<()> {
    // `$n` placeholders written out: sqlx's `Any` QueryBuilder writes `?`,
    // which PostgreSQL does not take.
    const COLUMNS: usize = 9;
    for chunk in v.records.chunks(RECORDS_PER_INSERT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|r| {
                let marks: Vec<String> = (1..=COLUMNS)
                    .map(|k| format!("${}", r * COLUMNS + k))
                    .collect();
                format!("({})", marks.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO predictions (id, device, model, version, at_ms, received_at, class, probabilities, value)
             VALUES {} ON CONFLICT DO NOTHING",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.id.clone())
                .bind(device.to_string())
                .bind(v.model.clone())
                .bind(v.version.clone())
                .bind(r.at_ms)
                .bind(now)
                .bind(r.class.clone())
                .bind(
                    (!r.probabilities.is_empty())
                        .then(|| serde_json::to_string(&r.probabilities).expect("numbers")),
                )
                .bind(r.value);
        }
        q.execute(&mut **tx).await?;
    }
    Ok(())
}

/// Deletes telemetry and de-duplication records received before
/// `cutoff_ms`; returns the rows deleted.
pub async fn prune(c: &Coordinator, cutoff_ms: i64) -> sqlx::Result<u64> {
    let mut tx = c.db.pool.begin().await?;
    let a = sqlx::query("DELETE FROM telemetry WHERE received_at < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM telemetry_reports WHERE received_at < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let c = sqlx::query("DELETE FROM predictions WHERE received_at < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query("DELETE FROM samples WHERE received_at < $1")
        .bind(cutoff_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(a + b + c)
}

/// Keeps `retention` of telemetry: prunes once a minute. Never returns.
pub async fn run_pruner(c: Arc<Coordinator>, retention: std::time::Duration) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    loop {
        tick.tick().await;
        let cutoff = crate::now_ms() - retention.as_millis() as i64;
        if let Err(e) = crate::monitor::fold::prune(&c, cutoff).await {
            tracing::error!("monitoring buckets pruning failed: {e}");
        }
        match prune(&c, cutoff).await {
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

/// Merges the reports for `model@version` in `role` received at or after
/// `since_ms`, from `devices` (all when `None`).
pub async fn aggregate(
    c: &Coordinator,
    model: &str,
    version: &str,
    role: &str,
    devices: Option<&[String]>,
    since_ms: i64,
) -> sqlx::Result<Aggregate> {
    let mut t = Tally::new(
        model,
        version,
        role,
        devices.map(<[String]>::to_vec),
        since_ms,
    );
    t.read(c).await?;
    Ok(t.aggregate())
}

/// A report's transaction commits within this of the receive time it
/// records (a 2000-report batch takes well under a second here; the rest is
/// room for a slow database), so a tally re-reads this much of the past to
/// catch rows that committed late, and skips those it has counted.
const LATE_COMMIT_MS: i64 = 120_000;

/// Running sums of one version's telemetry since a time, from some devices:
/// each [`read`](Tally::read) adds only the rows received since the last.
#[derive(Debug)]
pub struct Tally {
    model: String,
    version: String,
    role: String,
    devices: Option<Vec<String>>,
    since_ms: i64,
    stats: VersionStats,
    seen: std::collections::HashSet<String>,
    /// Rows counted that a later read may return again, with their receive time.
    recent: std::collections::HashMap<(String, String, i64), i64>,
    /// Latest receive time counted.
    high_water: i64,
    /// Rows fetched from the database, over all reads (to test incrementality).
    pub rows_read: u64,
}

impl Tally {
    pub fn new(
        model: &str,
        version: &str,
        role: &str,
        devices: Option<Vec<String>>,
        since_ms: i64,
    ) -> Tally {
        Tally {
            model: model.into(),
            version: version.into(),
            role: role.into(),
            devices,
            since_ms,
            stats: VersionStats {
                model: model.into(),
                version: version.into(),
                role: role.into(),
                ..Default::default()
            },
            seen: Default::default(),
            recent: Default::default(),
            high_water: since_ms,
            rows_read: 0,
        }
    }

    fn same_question(&self, other: &Tally) -> bool {
        (
            &self.model,
            &self.version,
            &self.role,
            &self.devices,
            self.since_ms,
        ) == (
            &other.model,
            &other.version,
            &other.role,
            &other.devices,
            other.since_ms,
        )
    }

    /// Adds the rows received since the last read.
    pub async fn read(&mut self, c: &Coordinator) -> sqlx::Result<()> {
        let from = self.since_ms.max(self.high_water - LATE_COMMIT_MS);
        let rows: Vec<(String, String, i64, i64, String)> = sqlx::query_as(
            "SELECT device, stream, seq, received_at, stats FROM telemetry
             WHERE model = $1 AND version = $2 AND role = $3 AND received_at >= $4",
        )
        .bind(&self.model)
        .bind(&self.version)
        .bind(&self.role)
        .bind(from)
        .fetch_all(&c.db.read)
        .await?;
        self.rows_read += rows.len() as u64;
        let wanted: Option<std::collections::HashSet<&str>> = self
            .devices
            .as_ref()
            .map(|d| d.iter().map(String::as_str).collect());
        for (device, stream, seq, received, json) in rows {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.contains(device.as_str()))
            {
                continue;
            }
            let key = (device, stream, seq);
            if self.recent.contains_key(&key) {
                continue;
            }
            if let Ok(s) = serde_json::from_str::<VersionStats>(&json) {
                self.stats.merge(&s);
                self.seen.insert(key.0.clone());
            }
            self.high_water = self.high_water.max(received);
            self.recent.insert(key, received);
        }
        let keep_from = self.high_water - LATE_COMMIT_MS;
        self.recent.retain(|_, at| *at >= keep_from);
        Ok(())
    }

    /// Counts, failure rate, latency quantiles, agreement so far.
    pub fn aggregate(&self) -> Aggregate {
        let stats = self.stats.clone();
        let n = stats.predictions;
        let summary = CandidateTelemetry {
            predictions: n,
            errors: stats.errors,
            failure_rate: (n > 0).then(|| stats.errors as f64 / n as f64),
            p50_ms: stats.latency.quantile_ms(0.5),
            p95_ms: stats.latency.quantile_ms(0.95),
            p99_ms: stats.latency.quantile_ms(0.99),
            agreement: (self.role == "shadow" && n > 0).then(|| stats.agreed as f64 / n as f64),
            devices: self.seen.len(),
        };
        Aggregate {
            model: self.model.clone(),
            version: self.version.clone(),
            role: self.role.clone(),
            summary,
            stats,
        }
    }
}

/// The rollout controller's tallies, one per running rollout.
#[derive(Default)]
pub struct Tallies(tokio::sync::Mutex<std::collections::HashMap<String, Tally>>);

impl Tallies {
    /// `question`'s answer, read incrementally when the last question under
    /// `key` was the same one (a new wave starts over).
    pub async fn read(
        &self,
        c: &Coordinator,
        key: &str,
        question: Tally,
    ) -> sqlx::Result<Aggregate> {
        let mut all = self.0.lock().await;
        if !all.get(key).is_some_and(|t| t.same_question(&question)) {
            all.insert(key.to_string(), question);
        }
        let t = all.get_mut(key).expect("inserted above");
        t.read(c).await?;
        Ok(t.aggregate())
    }

    /// Forgets every tally but those under `keys`.
    pub async fn keep_only(&self, keys: &[String]) {
        self.0.lock().await.retain(|k, _| keys.contains(k));
    }
}

/// Every (model, version, role) with telemetry since `since_ms`, aggregated,
/// plus per-device drop counters.
pub async fn summary(c: &Coordinator, since_ms: i64) -> sqlx::Result<serde_json::Value> {
    let keys: Vec<(String, String, String)> =
        sqlx::query_as("SELECT DISTINCT model, version, role FROM telemetry WHERE received_at >= $1 ORDER BY model, version, role").bind(since_ms).fetch_all(&c.db.read).await?;
    let mut versions = vec![];
    for (m, v, r) in keys {
        versions.push(aggregate(c, &m, &v, &r, None, since_ms).await?);
    }
    let (reports,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM telemetry_reports")
        .fetch_one(&c.db.read)
        .await?;
    let dropped: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT device, MAX(dropped_reports), MAX(dropped_predictions) FROM telemetry_reports GROUP BY device HAVING MAX(dropped_reports) > 0").fetch_all(&c.db.read).await?;
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
        let c = open_with_device(dir.path()).await;
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
        // Received ten seconds ago (its device clock says so too).
        let acks = store_at(&c, &[report("gw-1", 0, now - 10_000)], now - 10_000)
            .await
            .unwrap();
        assert_eq!(acks.get("gw-1"), Some(&vec![0]));
        let acks = store(
            &c,
            &[
                report("gw-1", 1, now),
                report("gw-1", 1, now),
                report("stranger", 0, now),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            acks.get("gw-1"),
            Some(&vec![1, 1]),
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
        // The same refusal from a device that is not enrolled: nothing is
        // acknowledged to it.
        poison.device = "stranger".into();
        let acks = store(
            &c,
            &[(
                "stranger".into(),
                serde_json::to_vec(&poison).unwrap().into(),
            )],
        )
        .await
        .unwrap();
        assert!(acks.is_empty(), "acknowledged to a stranger: {acks:?}");
        let a = aggregate(&c, "m", "1.0.0", "live", None, 0).await.unwrap();
        assert_eq!(a.summary.predictions, 30, "only the good report counts");
        assert_eq!(
            prune(&c, now - 5_000).await.unwrap(),
            2,
            "only the report received before goes (its row and its record)"
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

    async fn open_with_device(dir: &std::path::Path) -> Arc<Coordinator> {
        let c = crate::testing::open(dir).await;
        crate::testing::credential(&c, "gw-1").await;
        c
    }

    fn report_at(seq: u64, window_end: i64, predictions: u64) -> Incoming {
        let r = Report {
            device: "gw-1".into(),
            stream: "s".into(),
            seq,
            window_start_ms: window_end - 1000,
            window_end_ms: window_end,
            versions: vec![VersionStats {
                model: "m".into(),
                version: "1.0.0".into(),
                role: "live".into(),
                predictions,
                ..Default::default()
            }],
            dropped_reports: 0,
            dropped_predictions: 0,
        };
        ("gw-1".into(), serde_json::to_vec(&r).unwrap().into())
    }

    /// Issue 24.7: pruning and gates go by the coordinator's receive time. A
    /// device whose clock says 1970 is not pruned at once; one that runs a
    /// year ahead does not count in a gate that starts after it reported.
    #[tokio::test]
    async fn receive_time_not_device_clocks_decides_pruning_and_gates() {
        let dir = tempfile::tempdir().unwrap();
        let c = open_with_device(dir.path()).await;
        let now = crate::now_ms();
        let year = 365 * 24 * 3600 * 1000;
        store(&c, &[report_at(0, 0, 1), report_at(1, now + year, 10)])
            .await
            .unwrap();
        assert_eq!(
            prune(&c, now - 5_000).await.unwrap(),
            0,
            "received just now"
        );
        let later = crate::now_ms() + 1;
        let gate = aggregate(&c, "m", "1.0.0", "live", None, later)
            .await
            .unwrap();
        assert_eq!(
            gate.summary.predictions, 0,
            "the future-dated report is old news"
        );
        let all = aggregate(&c, "m", "1.0.0", "live", None, 0).await.unwrap();
        assert_eq!(all.summary.predictions, 11, "device times are kept as data");
        assert_eq!(prune(&c, crate::now_ms() + 1).await.unwrap(), 4);
    }

    /// A gate's tally reads only what arrived since its last read (plus the
    /// late-commit margin), and always agrees with a full aggregate.
    #[tokio::test]
    async fn tallies_read_incrementally_and_agree_with_a_full_read() {
        let dir = tempfile::tempdir().unwrap();
        let c = open_with_device(dir.path()).await;
        let now = crate::now_ms();
        let since = now - 3_600_000;
        store_at(&c, &[report_at(0, 0, 1), report_at(1, 0, 2)], now - 600_000)
            .await
            .unwrap();
        store_at(&c, &[report_at(2, 0, 4)], now).await.unwrap();
        let question = || Tally::new("m", "1.0.0", "live", Some(vec!["gw-1".into()]), since);
        let tallies = Tallies::default();
        let a = tallies.read(&c, "ro-1", question()).await.unwrap();
        assert_eq!((a.summary.predictions, a.summary.devices), (7, 1));
        store_at(&c, &[report_at(3, 0, 8)], now + 1_000)
            .await
            .unwrap();
        // A late commit: received (stamped) before the last read's newest row.
        store_at(&c, &[report_at(4, 0, 16)], now - 1_000)
            .await
            .unwrap();
        let a = tallies.read(&c, "ro-1", question()).await.unwrap();
        let full = aggregate(&c, "m", "1.0.0", "live", Some(&["gw-1".into()]), since)
            .await
            .unwrap();
        assert_eq!(a.summary.predictions, 31);
        assert_eq!(a.summary, full.summary);
        let rows_read = tallies.0.lock().await["ro-1"].rows_read;
        assert_eq!(rows_read, 3 + 3, "the second read skipped the two old rows");
        // Another wave (another start) is a new question.
        let b = tallies
            .read(
                &c,
                "ro-1",
                Tally::new("m", "1.0.0", "live", None, now + 500),
            )
            .await
            .unwrap();
        assert_eq!(b.summary.predictions, 8);
    }
}
