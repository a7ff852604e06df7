//! One database layer for both backends: SQLite (zero-setup default) and
//! PostgreSQL, through sqlx's `Any` driver. Queries use `$1` placeholders and
//! only types both backends share (BIGINT, TEXT, DOUBLE PRECISION).

use sqlx::AnyPool;
use sqlx::any::{AnyPoolOptions, install_default_drivers};

#[derive(Clone)]
pub struct Db {
    /// Writes, and reads that must see them in the same breath.
    pub pool: AnyPool,
    /// Reads that scan (monitoring, gates, datasets, listings). On SQLite a
    /// pool of read-only connections beside the one writer: in WAL mode they
    /// read a committed snapshot without waiting for the writer, so a watcher
    /// scanning a window does not hold up telemetry ingest (the 1,000-device
    /// loop bench saw connection waits over 2 s with one shared connection).
    /// On PostgreSQL the same pool as `pool`.
    pub read: AnyPool,
    pub backend: Backend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Schema, oldest first. `{serial}` is the backend's auto-increment key.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS models (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS model_versions (
        name TEXT NOT NULL, version TEXT NOT NULL, sequence BIGINT NOT NULL, sha256 TEXT NOT NULL,
        size_bytes BIGINT NOT NULL, signer TEXT NOT NULL, delegation TEXT, claims TEXT NOT NULL,
        dataset_id TEXT, dataset_sha256 TEXT, training_run TEXT, code_commit TEXT,
        registered_at BIGINT NOT NULL, registered_by TEXT NOT NULL,
        PRIMARY KEY (name, version))",
    "CREATE UNIQUE INDEX IF NOT EXISTS model_versions_sequence ON model_versions (name, sequence)",
    "CREATE TABLE IF NOT EXISTS aliases (name TEXT NOT NULL, alias TEXT NOT NULL, version TEXT NOT NULL,
        updated_at BIGINT NOT NULL, PRIMARY KEY (name, alias))",
    "CREATE TABLE IF NOT EXISTS tags (name TEXT NOT NULL, version TEXT NOT NULL, tag_key TEXT NOT NULL,
        tag_value TEXT NOT NULL, PRIMARY KEY (name, version, tag_key))",
    "CREATE TABLE IF NOT EXISTS datasets (id TEXT NOT NULL, sha256 TEXT NOT NULL, first_seen BIGINT NOT NULL,
        PRIMARY KEY (id, sha256))",
    "CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, dataset_id TEXT, dataset_sha256 TEXT,
        code_commit TEXT, metrics TEXT NOT NULL, first_seen BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tokens (hash TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL,
        created_at BIGINT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS audit (id {serial}, at BIGINT NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL, target TEXT NOT NULL, detail TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS devices (id TEXT PRIMARY KEY, state TEXT NOT NULL, labels TEXT NOT NULL,
        last_seen BIGINT NOT NULL, first_seen BIGINT NOT NULL, active_model TEXT, active_version TEXT,
        last_status TEXT)",
    "CREATE TABLE IF NOT EXISTS deployments (id TEXT NOT NULL, device TEXT NOT NULL, model TEXT NOT NULL,
        version TEXT NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL, error TEXT, created_by TEXT NOT NULL,
        updated_at BIGINT NOT NULL, PRIMARY KEY (id, device))",
    "CREATE TABLE IF NOT EXISTS telemetry_reports (device TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL,
        received_at BIGINT NOT NULL, window_start BIGINT NOT NULL, window_end BIGINT NOT NULL,
        dropped_reports BIGINT NOT NULL, dropped_predictions BIGINT NOT NULL, PRIMARY KEY (device, stream, seq))",
    "CREATE TABLE IF NOT EXISTS telemetry (device TEXT NOT NULL, stream TEXT NOT NULL, seq BIGINT NOT NULL,
        model TEXT NOT NULL, version TEXT NOT NULL, role TEXT NOT NULL, window_end BIGINT NOT NULL,
        predictions BIGINT NOT NULL, errors BIGINT NOT NULL, agreed BIGINT NOT NULL, stats TEXT NOT NULL,
        PRIMARY KEY (device, stream, seq, model, version, role))",
    "CREATE INDEX IF NOT EXISTS telemetry_by_version ON telemetry (model, version, role, window_end)",
    // Live predictions an outcome can be attached to (issue 21): the first
    // device to report an id owns it; a replayed or forged copy changes nothing.
    "CREATE TABLE IF NOT EXISTS predictions (id TEXT PRIMARY KEY, device TEXT NOT NULL, model TEXT NOT NULL,
        version TEXT NOT NULL, at_ms BIGINT NOT NULL, received_at BIGINT NOT NULL, class TEXT,
        probabilities TEXT, value DOUBLE PRECISION)",
    "CREATE INDEX IF NOT EXISTS predictions_by_version ON predictions (model, version, received_at)",
    "CREATE INDEX IF NOT EXISTS predictions_arrival ON predictions (received_at)",
    // Outcomes posted for predictions, possibly long after (delayed labels).
    "CREATE TABLE IF NOT EXISTS labels (prediction_id TEXT PRIMARY KEY, outcome TEXT NOT NULL,
        received_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rollouts (id TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT NOT NULL,
        sha256 TEXT NOT NULL, size_bytes BIGINT NOT NULL, strategy TEXT NOT NULL, spec TEXT NOT NULL,
        state TEXT NOT NULL, reason TEXT, current_wave BIGINT NOT NULL, wave_phase TEXT NOT NULL,
        wave_started_at BIGINT, wave_ready_at BIGINT, created_by TEXT NOT NULL, created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rollout_devices (rollout TEXT NOT NULL, device TEXT NOT NULL, wave BIGINT NOT NULL,
        state TEXT NOT NULL, error TEXT, previous_model TEXT, previous_version TEXT, updated_at BIGINT NOT NULL,
        PRIMARY KEY (rollout, device))",
    "CREATE TABLE IF NOT EXISTS enrolments (hash TEXT PRIMARY KEY, pattern TEXT NOT NULL, created_by TEXT NOT NULL,
        created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, revoked BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS desired (device TEXT PRIMARY KEY, payload TEXT NOT NULL, updated_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS groups (selector TEXT PRIMARY KEY, payload TEXT NOT NULL, updated_at BIGINT NOT NULL)",
    // Monitoring (issue 21): telemetry folded per time bucket, per device and
    // for the fleet (device `*`), and per-model drift settings.
    "CREATE TABLE IF NOT EXISTS monitor_counts (model TEXT NOT NULL, version TEXT NOT NULL, device TEXT NOT NULL,
        bucket BIGINT NOT NULL, stats TEXT NOT NULL, PRIMARY KEY (model, version, device, bucket))",
    "CREATE INDEX IF NOT EXISTS monitor_counts_by_bucket ON monitor_counts (bucket)",
    // Opt-in raw input rows (a device's window sample), one row per report and version.
    "CREATE TABLE IF NOT EXISTS samples (model TEXT NOT NULL, version TEXT NOT NULL, device TEXT NOT NULL,
        received_at BIGINT NOT NULL, rows_json TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS samples_by_version ON samples (model, version, received_at)",
    "CREATE TABLE IF NOT EXISTS monitor_settings (model TEXT PRIMARY KEY, payload TEXT NOT NULL, updated_at BIGINT NOT NULL)",
    // Datasets (issue 22): immutable versions, the file in the artifact store
    // under its sha256; `summary` and `provenance` are JSON.
    "CREATE TABLE IF NOT EXISTS dataset_versions (name TEXT NOT NULL, version BIGINT NOT NULL, sha256 TEXT NOT NULL,
        size_bytes BIGINT NOT NULL, format TEXT NOT NULL, row_count BIGINT NOT NULL, label TEXT NOT NULL,
        summary TEXT NOT NULL, provenance TEXT NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL,
        PRIMARY KEY (name, version))",
    "CREATE UNIQUE INDEX IF NOT EXISTS dataset_versions_content ON dataset_versions (name, sha256)",
    // The closed loop (issue 22): per model settings and trigger state, and
    // each passed candidate's way to its alias.
    "CREATE TABLE IF NOT EXISTS loops (model TEXT PRIMARY KEY, payload TEXT NOT NULL, created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL, last_trigger_at BIGINT, last_trigger TEXT, labels_at BIGINT,
        pending_at BIGINT, pending_why TEXT)",
    "CREATE TABLE IF NOT EXISTS promotions (run TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT NOT NULL,
        state TEXT NOT NULL, rollout TEXT, reason TEXT, updated_at BIGINT NOT NULL)",
];

/// Changes to existing tables, oldest first, each applied once in its own
/// transaction; `schema_version` records how many have run (neither backend
/// offers `ADD COLUMN IF NOT EXISTS` the other understands).
const CHANGES: &[&[&str]] = &[
    // 1 (issue 24.3): a rollout's end is carried out device by device; this
    // marks the devices done, so a restarted coordinator resumes the rest.
    &["ALTER TABLE rollout_devices ADD COLUMN settled_at BIGINT"],
    // 2 (issue 24.7): pruning and gates go by the coordinator's receive time;
    // a device's clock (window_end) is kept as data only.
    &[
        "ALTER TABLE telemetry ADD COLUMN received_at BIGINT",
        "UPDATE telemetry SET received_at = COALESCE((SELECT r.received_at FROM telemetry_reports r
            WHERE r.device = telemetry.device AND r.stream = telemetry.stream AND r.seq = telemetry.seq), window_end)",
        "CREATE INDEX IF NOT EXISTS telemetry_by_arrival ON telemetry (model, version, role, received_at)",
        "CREATE INDEX IF NOT EXISTS telemetry_arrival ON telemetry (received_at)",
    ],
    // 3 (issue 22): sampled rows keep their prediction ids, so posted
    // outcomes turn production rows into a labelled dataset.
    &["ALTER TABLE samples ADD COLUMN ids_json TEXT"],
    // 4 (issue 22): runs are real records (queued → running → final) as well
    // as lineage named in claims.
    &[
        "ALTER TABLE runs ADD COLUMN model TEXT",
        "ALTER TABLE runs ADD COLUMN status TEXT",
        "ALTER TABLE runs ADD COLUMN detail TEXT",
        "ALTER TABLE runs ADD COLUMN worker TEXT",
        "ALTER TABLE runs ADD COLUMN lease_until BIGINT",
        "ALTER TABLE runs ADD COLUMN started_at BIGINT",
        "ALTER TABLE runs ADD COLUMN finished_at BIGINT",
        "ALTER TABLE runs ADD COLUMN logs TEXT",
        "CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, first_seen)",
    ],
    // 5 (issue 22): the `new_labels` trigger counts outcomes by arrival, and
    // listings page runs per model newest first.
    &[
        "CREATE INDEX IF NOT EXISTS labels_arrival ON labels (received_at)",
        "CREATE INDEX IF NOT EXISTS runs_by_model ON runs (model, first_seen)",
    ],
    // 6 (issue 23): API tokens expire; an enrolment token is used a counted
    // number of times per device id, and replaces a live credential only if
    // an operator said so when making it.
    &[
        "ALTER TABLE tokens ADD COLUMN expires_at BIGINT",
        "ALTER TABLE enrolments ADD COLUMN uses_per_device BIGINT",
        "ALTER TABLE enrolments ADD COLUMN reenrol BIGINT",
        "CREATE TABLE IF NOT EXISTS enrolment_uses (enrolment TEXT NOT NULL, device TEXT NOT NULL,
            uses BIGINT NOT NULL, last_at BIGINT NOT NULL, PRIMARY KEY (enrolment, device))",
    ],
    // 7 (issue 23): desired states travel signed, with a counter that only
    // grows per device; `payload` stays the plain desired state (`null` once
    // withdrawn) for the coordinator's own reads. Rows from before have no
    // envelope and are signed when next published.
    &[
        "ALTER TABLE desired ADD COLUMN counter BIGINT",
        "ALTER TABLE desired ADD COLUMN envelope TEXT",
    ],
];

/// SQLite reading connections (two cores here; readers mostly wait on I/O).
const READERS: u32 = 4;

impl Db {
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!(
                "unsupported database URL `{url}`: use sqlite://FILE or postgres://USER@HOST/DB"
            );
        };
        let open = |e: sqlx::Error| anyhow::anyhow!("cannot open database {}: {e}", redact(url));
        if backend == Backend::Postgres {
            let pool = AnyPoolOptions::new()
                .max_connections(8)
                .connect(url)
                .await
                .map_err(open)?;
            let db = Db {
                read: pool.clone(),
                pool,
                backend,
            };
            db.migrate().await?;
            return Ok(db);
        }
        // SQLite allows one writer: one writing connection avoids "database is
        // locked". WAL lets readers go on beside it; `synchronous = NORMAL`
        // syncs at checkpoints instead of every commit (1.65 ms a commit in
        // rollback-journal mode on this machine's disk, 0.03 ms so): a killed
        // process loses nothing committed, a power cut may undo the last
        // moments' commits, acknowledged telemetry included (PostgreSQL where
        // that matters).
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in [
                        "PRAGMA journal_mode = WAL",
                        "PRAGMA synchronous = NORMAL",
                        "PRAGMA busy_timeout = 5000",
                    ] {
                        sqlx::query(pragma).fetch_all(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(open)?;
        let mut db = Db {
            read: pool.clone(),
            pool,
            backend,
        };
        db.migrate().await?;
        // Readers open after the writer made (and migrated) the file.
        db.read = AnyPoolOptions::new()
            .max_connections(READERS)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    for pragma in ["PRAGMA query_only = ON", "PRAGMA busy_timeout = 5000"] {
                        sqlx::query(pragma).fetch_all(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .map_err(open)?;
        Ok(db)
    }

    async fn migrate(&self) -> anyhow::Result<()> {
        let serial = match self.backend {
            Backend::Sqlite => "INTEGER PRIMARY KEY AUTOINCREMENT",
            Backend::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        for m in MIGRATIONS {
            sqlx::query(&m.replace("{serial}", serial))
                .execute(&self.pool)
                .await
                .map_err(|e| anyhow::anyhow!("migration failed: {e}\n{m}"))?;
        }
        let (done,): (Option<i64>,) = sqlx::query_as("SELECT MAX(version) FROM schema_version")
            .fetch_one(&self.pool)
            .await?;
        for (i, change) in CHANGES.iter().enumerate().skip(done.unwrap_or(0) as usize) {
            let mut tx = self.pool.begin().await?;
            for m in *change {
                sqlx::query(m)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| anyhow::anyhow!("schema change {} failed: {e}\n{m}", i + 1))?;
            }
            sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
                .bind(i as i64 + 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Whether `e` is a refused duplicate key (either backend).
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made before the versioned changes is brought up to date
    /// once (telemetry gets its receive time from the report records), and
    /// opening it again changes nothing.
    #[tokio::test]
    async fn changes_apply_once_to_an_old_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("old.db").display());
        install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap();
        for m in MIGRATIONS {
            sqlx::query(&m.replace("{serial}", "INTEGER PRIMARY KEY AUTOINCREMENT"))
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO telemetry_reports VALUES ('d', 's', 1, 5000, 0, 100, 0, 0)")
            .execute(&pool)
            .await
            .unwrap();
        for seq in [1, 2] {
            sqlx::query(
                "INSERT INTO telemetry VALUES ('d', 's', $1, 'm', '1', 'live', 100, 1, 0, 0, '{}')",
            )
            .bind(seq)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
        for _ in 0..2 {
            let db = Db::connect(&url).await.unwrap();
            let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM schema_version")
                .fetch_one(&db.pool)
                .await
                .unwrap();
            assert_eq!(n as usize, CHANGES.len());
            let received: Vec<(i64, i64)> =
                sqlx::query_as("SELECT seq, received_at FROM telemetry ORDER BY seq")
                    .fetch_all(&db.pool)
                    .await
                    .unwrap();
            // With a report record: its receive time; without: the window end.
            assert_eq!(received, [(1, 5000), (2, 100)]);
            sqlx::query("SELECT settled_at FROM rollout_devices")
                .fetch_all(&db.pool)
                .await
                .unwrap();
            db.read.close().await;
            db.pool.close().await;
        }
    }
}
