//! Folding telemetry into per-bucket counts as it is stored: the writer
//! gathers a batch's version stats by (model, version, device, bucket) and by
//! (model, version, fleet, bucket), then merges each into its row. One
//! writer task does this, so read-merge-write needs no lock.

use std::collections::BTreeMap;

use wasmops_protocol::telemetry::VersionStats;

/// The device column of a fleet row (no device id can be `*`).
pub const FLEET: &str = "*";

/// (model, version, device or [`FLEET`], bucket start).
pub type Key = (String, String, String, i64);

/// A batch's counts, gathered before they are written.
#[derive(Debug, Default)]
pub struct Folded(BTreeMap<Key, VersionStats>);

impl Folded {
    /// Adds `v` (one version of one report from `device`) to `bucket`'s
    /// device row and fleet row.
    pub fn add(&mut self, device: &str, v: &VersionStats, bucket: i64) {
        for d in [device, FLEET] {
            self.0
                .entry((v.model.clone(), v.version.clone(), d.to_string(), bucket))
                .or_insert_with(|| empty(&v.model, &v.version))
                .merge(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Merges every gathered row into the table.
    pub async fn write(self, tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> sqlx::Result<()> {
        for ((model, version, device, bucket), stats) in self.0 {
            let old: Option<(String,)> = sqlx::query_as(
                "SELECT stats FROM monitor_counts WHERE model = $1 AND version = $2 AND device = $3 AND bucket = $4",
            )
            .bind(&model)
            .bind(&version)
            .bind(&device)
            .bind(bucket)
            .fetch_optional(&mut **tx)
            .await?;
            let mut merged = old
                .and_then(|(s,)| serde_json::from_str::<VersionStats>(&s).ok())
                .unwrap_or_else(|| empty(&model, &version));
            merged.merge(&stats);
            sqlx::query(
                "INSERT INTO monitor_counts (model, version, device, bucket, stats) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (model, version, device, bucket) DO UPDATE SET stats = excluded.stats",
            )
            .bind(&model)
            .bind(&version)
            .bind(&device)
            .bind(bucket)
            .bind(serde_json::to_string(&merged).expect("stats serialise"))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// Deletes the buckets that ended before `cutoff_ms` (the telemetry
/// retention); returns how many rows went.
pub async fn prune(c: &crate::Coordinator, cutoff_ms: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query("DELETE FROM monitor_counts WHERE bucket <= $1")
        .bind(cutoff_ms.saturating_sub(c.monitor.bucket_ms()))
        .execute(&c.db.pool)
        .await?
        .rows_affected())
}

/// Stats for `model@version` with nothing counted yet.
pub fn empty(model: &str, version: &str) -> VersionStats {
    VersionStats {
        model: model.into(),
        version: version.into(),
        ..VersionStats::default()
    }
}
