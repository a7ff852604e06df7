//! Datasets: immutable, content-addressed versions of training and holdout
//! data. A push (`POST /v1/datasets/{name}`) parses the file (CSV or the
//! inputs JSON, [`wasmops_drift::table`]), refuses it with the line and column
//! at fault or a missing label column, summarises it (columns, rows, label
//! balance), stores the bytes in the artifact store under their sha256 and
//! records version `n + 1` of the name — or answers the version that already
//! holds these bytes. Production rows (devices' opt-in samples) joined with
//! the outcomes posted for them become versions too ([`from_production`]),
//! with their provenance.

use std::collections::{BTreeMap, BTreeSet};

use wasmops_api::{
    Dataset, DatasetColumn, DatasetFormat, DatasetPush, DatasetVersion, DatasetVersions,
    FromProduction, LabelSummary, MAX_LISTED_CLASSES, Provenance,
};
use wasmops_drift::table::{Table, Values};

use crate::auth::Principal;
use crate::{Coordinator, CoordinatorError, audit};

/// A numeric label with at most this many distinct integer values is a class
/// label (iris coded 0/1/2); anything else is a numeric target.
const MAX_INTEGER_CLASSES: usize = 100;

/// Checks a dataset name as model names are checked.
pub fn check_name(name: &str) -> Result<(), CoordinatorError> {
    wasmops_protocol::device::check_name("dataset name", name)
        .map_err(|e| CoordinatorError::BadRequest(e.to_string()))
}

/// The format of `bytes`: as told, else JSON when it starts with `{`.
fn sniff(bytes: &[u8], told: Option<DatasetFormat>) -> DatasetFormat {
    told.unwrap_or(
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            DatasetFormat::Json
        } else {
            DatasetFormat::Csv
        },
    )
}

/// Parses a dataset file; errors name the line (or row) and column.
pub fn parse(bytes: &[u8], format: DatasetFormat) -> Result<Table, String> {
    match format {
        DatasetFormat::Csv => Table::from_csv(bytes, None),
        DatasetFormat::Json => Table::from_json(bytes, None),
    }
}

/// Columns and the label's balance of a parsed dataset; refuses one without
/// rows, without the label column, or whose labels are all missing.
pub fn summarise(table: &Table, label: &str) -> Result<(Vec<DatasetColumn>, LabelSummary), String> {
    if table.rows == 0 {
        return Err("the dataset has no rows".into());
    }
    let Some(column) = table.column(label) else {
        let names: Vec<&str> = table.columns.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "the dataset has no label column `{label}` (its columns: {})",
            names.join(", ")
        ));
    };
    if column.values.missing() == table.rows {
        return Err(format!("the label column `{label}` has no values"));
    }
    if table.columns.len() < 2 {
        return Err("the dataset has no feature columns besides its label".into());
    }
    let columns = table
        .columns
        .iter()
        .map(|c| DatasetColumn {
            name: c.name.clone(),
            kind: c.values.kind().name().into(),
            missing: c.values.missing() as u64,
        })
        .collect();
    Ok((columns, label_summary(&column.values)))
}

/// Class counts (text labels, or a few distinct integers), else min/max/mean.
pub fn label_summary(values: &Values) -> LabelSummary {
    let classes: Option<Vec<String>> = match values {
        Values::Categorical(v) => Some(v.iter().flatten().cloned().collect()),
        Values::Numeric(v) => {
            let present: Vec<f64> = v.iter().flatten().copied().collect();
            let distinct: BTreeSet<i64> = present.iter().map(|x| *x as i64).collect();
            let integers = present.iter().all(|x| x.fract() == 0.0 && x.abs() < 1e15);
            if integers && distinct.len() <= MAX_INTEGER_CLASSES {
                Some(present.iter().map(|x| format!("{}", *x as i64)).collect())
            } else {
                let n = present.len().max(1) as f64;
                return LabelSummary::Values {
                    min: present.iter().copied().fold(f64::INFINITY, f64::min),
                    max: present.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    mean: present.iter().sum::<f64>() / n,
                };
            }
        }
    };
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for c in classes.unwrap_or_default() {
        *counts.entry(c).or_default() += 1;
    }
    if counts.len() > MAX_LISTED_CLASSES {
        let mut sorted: Vec<(String, u64)> = counts.into_iter().collect();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let rest: u64 = sorted[MAX_LISTED_CLASSES..].iter().map(|(_, n)| n).sum();
        counts = sorted.into_iter().take(MAX_LISTED_CLASSES).collect();
        counts.insert("…".into(), rest);
    }
    LabelSummary::Classes { counts }
}

/// Stores `bytes` as the next version of `name` (see the module docs).
pub async fn push(
    c: &Coordinator,
    who: &Principal,
    name: &str,
    push: DatasetPush,
    bytes: bytes::Bytes,
) -> Result<DatasetVersion, CoordinatorError> {
    check_name(name)?;
    let format = sniff(&bytes, push.format);
    let label = push.label.clone();
    let parsed = {
        let bytes = bytes.clone();
        tokio::task::spawn_blocking(move || {
            let table = parse(&bytes, format)?;
            summarise(&table, &label).map(|s| (table.rows, s))
        })
        .await
        .map_err(|e| CoordinatorError::Internal(format!("dataset parser: {e}")))?
    };
    let (rows, (columns, labels)) =
        parsed.map_err(|e| CoordinatorError::BadRequest(format!("the dataset: {e}")))?;
    let provenance = Provenance::Upload {
        file: push
            .file
            .map(|f| f.chars().filter(|c| !c.is_control()).take(200).collect()),
    };
    store(
        c,
        who,
        name,
        format,
        bytes,
        Stored {
            rows: rows as u64,
            label: push.label,
            columns,
            labels,
            provenance,
        },
    )
    .await
}

/// What a version records besides its bytes.
struct Stored {
    rows: u64,
    label: String,
    columns: Vec<DatasetColumn>,
    labels: LabelSummary,
    provenance: Provenance,
}

async fn store(
    c: &Coordinator,
    who: &Principal,
    name: &str,
    format: DatasetFormat,
    bytes: bytes::Bytes,
    s: Stored,
) -> Result<DatasetVersion, CoordinatorError> {
    let sha256 = wasmops_trust::sha256_hex(&bytes);
    if let Some(mut existing) = find_by_content(c, name, &sha256).await? {
        existing.created = false;
        return Ok(existing);
    }
    let size = bytes.len() as u64;
    // Bytes first: a version row never points at a missing file.
    c.artifacts
        .put_in(crate::artifacts::Space::Datasets, &sha256, bytes)
        .await
        .map_err(CoordinatorError::Store)?;
    let summary = serde_json::json!({"columns": s.columns, "labels": s.labels});
    let now = crate::now_ms();
    let mut tx = c.db.pool.begin().await?;
    let (latest,): (Option<i64>,) =
        sqlx::query_as("SELECT MAX(version) FROM dataset_versions WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    let version = latest.unwrap_or(0) + 1;
    let inserted = sqlx::query(
        "INSERT INTO dataset_versions (name, version, sha256, size_bytes, format, row_count, label, summary, provenance, created_at, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(name)
    .bind(version)
    .bind(&sha256)
    .bind(size as i64)
    .bind(format.as_str())
    .bind(s.rows as i64)
    .bind(&s.label)
    .bind(summary.to_string())
    .bind(serde_json::to_string(&s.provenance).expect("provenance serialises"))
    .bind(now)
    .bind(&who.name)
    .execute(&mut *tx)
    .await;
    if let Err(e) = inserted {
        drop(tx);
        // A concurrent push of the same bytes (or the same next number) won.
        if let Some(mut existing) = find_by_content(c, name, &sha256).await? {
            existing.created = false;
            return Ok(existing);
        }
        return Err(if crate::db::is_unique_violation(&e) {
            CoordinatorError::Conflict(format!(
                "another version of dataset {name} was pushed at the same time; push again"
            ))
        } else {
            e.into()
        });
    }
    audit::record(
        &mut tx,
        &who.name,
        "dataset.push",
        &format!("{name}@{version}"),
        serde_json::json!({"sha256": sha256, "rows": s.rows, "label": s.label, "provenance": s.provenance}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        "dataset {name} version {version}: {} rows, sha256 {sha256}",
        s.rows
    );
    version_of(c, name, version as u32).await
}

/// id (name), version, sha256, size, format, rows, label, summary, provenance, created at, created by.
type VersionRow = (
    String,
    i64,
    String,
    i64,
    String,
    i64,
    String,
    String,
    String,
    i64,
    String,
);

const COLUMNS: &str = "name, version, sha256, size_bytes, format, row_count, label, summary, provenance, created_at, created_by";

/// Model versions trained on each dataset file (by sha256), oldest first, as
/// `name@version`; `only` narrows it to one dataset's files. One query for a
/// whole listing.
async fn users(
    c: &Coordinator,
    only: Option<&str>,
) -> Result<BTreeMap<String, Vec<(Option<String>, String)>>, CoordinatorError> {
    let rows: Vec<(Option<String>, String, String, String)> = sqlx::query_as(
        "SELECT dataset_id, dataset_sha256, name, version FROM model_versions
         WHERE dataset_sha256 IS NOT NULL
           AND ($1 IS NULL OR dataset_sha256 IN (SELECT sha256 FROM dataset_versions WHERE name = $1))
         ORDER BY registered_at",
    )
    .bind(only)
    .fetch_all(&c.db.read)
    .await?;
    let mut out: BTreeMap<String, Vec<(Option<String>, String)>> = BTreeMap::new();
    for (id, sha256, name, version) in rows {
        out.entry(sha256)
            .or_default()
            .push((id, format!("{name}@{version}")));
    }
    Ok(out)
}

/// A stored version's users: every model version trained on its bytes.
fn used_by(users: &BTreeMap<String, Vec<(Option<String>, String)>>, sha256: &str) -> Vec<String> {
    users
        .get(sha256)
        .map(|u| u.iter().map(|(_, v)| v.clone()).collect())
        .unwrap_or_default()
}

async fn decode(c: &Coordinator, row: VersionRow) -> Result<DatasetVersion, CoordinatorError> {
    let users = users(c, Some(&row.0)).await?;
    decode_with(row, &users)
}

fn decode_with(
    row: VersionRow,
    users: &BTreeMap<String, Vec<(Option<String>, String)>>,
) -> Result<DatasetVersion, CoordinatorError> {
    let (name, version, sha256, size, format, rows, label, summary, provenance, at, by) = row;
    let summary: serde_json::Value = serde_json::from_str(&summary).map_err(|e| {
        CoordinatorError::Internal(format!("dataset {name}@{version} summary: {e}"))
    })?;
    let columns = serde_json::from_value(summary["columns"].clone()).map_err(|e| {
        CoordinatorError::Internal(format!("dataset {name}@{version} columns: {e}"))
    })?;
    let labels = serde_json::from_value(summary["labels"].clone())
        .map_err(|e| CoordinatorError::Internal(format!("dataset {name}@{version} labels: {e}")))?;
    let provenance = serde_json::from_str(&provenance).map_err(|e| {
        CoordinatorError::Internal(format!("dataset {name}@{version} provenance: {e}"))
    })?;
    let used = used_by(users, &sha256);
    Ok(DatasetVersion {
        name,
        version: version as u32,
        sha256,
        size_bytes: size as u64,
        format: DatasetFormat::parse(&format).unwrap_or(DatasetFormat::Csv),
        rows: rows as u64,
        label,
        columns,
        labels,
        provenance,
        created_at_ms: at,
        created_by: by,
        used_by: used,
        created: true,
    })
}

async fn find_by_content(
    c: &Coordinator,
    name: &str,
    sha256: &str,
) -> Result<Option<DatasetVersion>, CoordinatorError> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND sha256 = $2"
    ))
    .bind(name)
    .bind(sha256)
    .fetch_optional(&c.db.read)
    .await?;
    match row {
        Some(r) => Ok(Some(decode(c, r).await?)),
        None => Ok(None),
    }
}

/// Version `version` of `name`.
pub async fn version_of(
    c: &Coordinator,
    name: &str,
    version: u32,
) -> Result<DatasetVersion, CoordinatorError> {
    let row: Option<VersionRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 AND version = $2"
    ))
    .bind(name)
    .bind(version as i64)
    .fetch_optional(&c.db.read)
    .await?;
    match row {
        Some(r) => decode(c, r).await,
        None => Err(CoordinatorError::NotFound(format!(
            "dataset {name} has no version {version}"
        ))),
    }
}

/// `name@version`, `name@latest` or `name` (the newest version).
pub async fn resolve(c: &Coordinator, reference: &str) -> Result<DatasetVersion, CoordinatorError> {
    let (name, version) = reference.split_once('@').unwrap_or((reference, "latest"));
    check_name(name)?;
    if version == "latest" {
        let (latest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(version) FROM dataset_versions WHERE name = $1")
                .bind(name)
                .fetch_one(&c.db.read)
                .await?;
        let latest =
            latest.ok_or_else(|| CoordinatorError::NotFound(format!("no dataset named {name}")))?;
        return version_of(c, name, latest as u32).await;
    }
    let number = version.parse::<u32>().map_err(|_| {
        CoordinatorError::BadRequest(format!(
            "`{reference}`: a dataset version is a number or `latest`"
        ))
    })?;
    version_of(c, name, number).await
}

/// Every version of `name`, oldest first.
pub async fn versions(c: &Coordinator, name: &str) -> Result<DatasetVersions, CoordinatorError> {
    check_name(name)?;
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dataset_versions WHERE name = $1 ORDER BY version"
    ))
    .bind(name)
    .fetch_all(&c.db.read)
    .await?;
    if rows.is_empty() {
        return Err(CoordinatorError::NotFound(format!(
            "no dataset named {name}"
        )));
    }
    let users = users(c, Some(name)).await?;
    let versions = rows
        .into_iter()
        .map(|r| decode_with(r, &users))
        .collect::<Result<_, _>>()?;
    Ok(DatasetVersions {
        name: name.into(),
        versions,
    })
}

/// Every stored version, and every dataset only named in claims.
pub async fn list(c: &Coordinator) -> Result<Vec<Dataset>, CoordinatorError> {
    let stored: Vec<(String, i64, String, i64, String, i64)> = sqlx::query_as(
        "SELECT name, version, sha256, row_count, label, created_at FROM dataset_versions ORDER BY created_at, name, version",
    )
    .fetch_all(&c.db.read)
    .await?;
    let claimed: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT id, sha256, first_seen FROM datasets ORDER BY first_seen")
            .fetch_all(&c.db.read)
            .await?;
    let users = users(c, None).await?;
    let mut out = vec![];
    let mut seen = BTreeSet::new();
    for (name, version, sha256, rows, label, at) in stored {
        seen.insert((name.clone(), sha256.clone()));
        out.push(Dataset {
            id: name,
            first_seen_ms: at,
            used_by: used_by(&users, &sha256),
            sha256,
            version: Some(version as u32),
            rows: Some(rows as u64),
            label: Some(label),
        });
    }
    for (id, sha256, first_seen_ms) in claimed {
        if seen.contains(&(id.clone(), sha256.clone())) {
            continue;
        }
        // Only named in claims: its users are the versions that named it.
        let named: Vec<String> = users
            .get(&sha256)
            .map(|u| {
                u.iter()
                    .filter(|(by, _)| by.as_deref() == Some(id.as_str()))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        out.push(Dataset {
            id,
            sha256,
            first_seen_ms,
            used_by: named,
            version: None,
            rows: None,
            label: None,
        });
    }
    Ok(out)
}

/// Largest production dataset built at once (rows).
pub const MAX_PRODUCTION_ROWS: usize = 1_000_000;

/// Sampled production rows of `req.model` with a posted outcome, as a CSV
/// dataset version of `name` (features named by the version's profile, the
/// outcome as the label column).
pub async fn from_production(
    c: &Coordinator,
    who: &Principal,
    name: &str,
    req: FromProduction,
) -> Result<DatasetVersion, CoordinatorError> {
    check_name(name)?;
    wasmops_protocol::device::check_name("model", &req.model)
        .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
    let until = req.until_ms.unwrap_or_else(crate::now_ms);
    let since = req.since_ms.unwrap_or(until - 24 * 3_600_000);
    if since > until {
        return Err(CoordinatorError::BadRequest(
            "since_ms is after until_ms".into(),
        ));
    }
    let label = req.label.clone().unwrap_or_else(|| "label".into());
    wasmops_protocol::device::check_name("label", &label)
        .map_err(|e| CoordinatorError::BadRequest(e.to_string()))?;
    let mut sql = String::from(
        "SELECT version, device, rows_json, ids_json FROM samples WHERE model = $1 AND received_at >= $2 AND received_at <= $3",
    );
    if req.version.is_some() {
        sql.push_str(" AND version = $4");
    }
    sql.push_str(" ORDER BY received_at");
    let mut q = sqlx::query_as::<_, (String, String, String, Option<String>)>(&sql)
        .bind(&req.model)
        .bind(since)
        .bind(until);
    if let Some(v) = &req.version {
        q = q.bind(v);
    }
    let stored = q.fetch_all(&c.db.read).await?;
    // Rows with their prediction ids, by version (widths must agree).
    let mut rows: Vec<(String, Vec<Option<f64>>)> = vec![];
    let mut versions = BTreeSet::new();
    let mut devices = BTreeSet::new();
    let mut sampled = 0u64;
    let mut width = None;
    for (version, device, rows_json, ids_json) in stored {
        let Ok(sample) = serde_json::from_str::<Vec<Vec<Option<f64>>>>(&rows_json) else {
            continue;
        };
        sampled += sample.len() as u64;
        let ids: Vec<String> = ids_json
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default();
        for (row, id) in sample.into_iter().zip(ids) {
            if id.is_empty() || *width.get_or_insert(row.len()) != row.len() {
                continue;
            }
            versions.insert(version.clone());
            devices.insert(device.clone());
            rows.push((id, row));
            if rows.len() >= MAX_PRODUCTION_ROWS {
                break;
            }
        }
    }
    // Their outcomes.
    let mut outcomes: BTreeMap<String, String> = BTreeMap::new();
    let ids: Vec<&str> = rows.iter().map(|(id, _)| id.as_str()).collect();
    for chunk in ids.chunks(crate::labels::IDS_PER_QUERY) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT prediction_id, outcome FROM labels WHERE prediction_id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, String)>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        outcomes.extend(q.fetch_all(&c.db.read).await?);
    }
    let labelled: Vec<(&Vec<Option<f64>>, &String)> = rows
        .iter()
        .filter_map(|(id, row)| outcomes.get(id).map(|o| (row, o)))
        .collect();
    let min_rows = req.min_rows.unwrap_or(1).max(1);
    if (labelled.len() as u64) < min_rows {
        return Err(CoordinatorError::BadRequest(format!(
            "{} sampled rows of {} between {since} and {until} have an outcome; at least {min_rows} wanted (devices sample rows only where agent.toml sets sample_rows, and outcomes arrive by POST /v1/labels)",
            labelled.len(),
            req.model
        )));
    }
    // Feature names: the newest contributing version's profile.
    let width = width.unwrap_or(0);
    let newest = versions.iter().next_back().cloned().unwrap_or_default();
    let mut names: Vec<String> = crate::monitor::report::profile_columns(c, &req.model, &newest)
        .await?
        .filter(|n| n.len() == width)
        .unwrap_or_else(|| (0..width).map(|j| format!("column_{j}")).collect());
    if names.contains(&label) {
        return Err(CoordinatorError::BadRequest(format!(
            "a feature is named `{label}`: choose another label column name"
        )));
    }
    names.push(label.clone());
    let mut csv = names.join(",");
    csv.push('\n');
    for (row, outcome) in &labelled {
        for x in row.iter() {
            if let Some(x) = x {
                csv.push_str(&format!("{x}"));
            }
            csv.push(',');
        }
        csv.push_str(&csv_cell(outcome));
        csv.push('\n');
    }
    let bytes = bytes::Bytes::from(csv);
    let table = parse(&bytes, DatasetFormat::Csv)
        .map_err(|e| CoordinatorError::Internal(format!("production dataset: {e}")))?;
    let (columns, labels) = summarise(&table, &label)
        .map_err(|e| CoordinatorError::BadRequest(format!("the production rows: {e}")))?;
    let provenance = Provenance::Production {
        model: req.model,
        versions: versions.into_iter().collect(),
        since_ms: since,
        until_ms: until,
        devices: devices.len() as u64,
        sampled_rows: sampled,
        labelled_rows: labelled.len() as u64,
    };
    store(
        c,
        who,
        name,
        DatasetFormat::Csv,
        bytes,
        Stored {
            rows: table.rows as u64,
            label,
            columns,
            labels,
            provenance,
        },
    )
    .await
}

/// A CSV cell: quoted when it holds a comma, a quote or a line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_balance_and_refusals() {
        let t = parse(b"a,b,y\n1,2,cat\n3,,dog\n5,6,cat\n", DatasetFormat::Csv).unwrap();
        let (cols, labels) = summarise(&t, "y").unwrap();
        assert_eq!(cols[1].missing, 1);
        assert_eq!(
            labels,
            LabelSummary::Classes {
                counts: [("cat".to_string(), 2), ("dog".to_string(), 1)].into()
            }
        );
        let err = summarise(&t, "species").unwrap_err();
        assert!(
            err.contains("no label column `species`") && err.contains("a, b, y"),
            "{err}"
        );
        // Integer codes are classes; other numbers a target.
        let t = parse(b"a,y\n1,0\n2,2\n3,2\n", DatasetFormat::Csv).unwrap();
        let (_, labels) = summarise(&t, "y").unwrap();
        assert_eq!(
            labels,
            LabelSummary::Classes {
                counts: [("0".to_string(), 1), ("2".to_string(), 2)].into()
            }
        );
        let t = parse(b"a,y\n1,0.5\n2,1.5\n", DatasetFormat::Csv).unwrap();
        assert_eq!(
            summarise(&t, "y").unwrap().1,
            LabelSummary::Values {
                min: 0.5,
                max: 1.5,
                mean: 1.0
            }
        );
        let e = parse(b"a,y\n1,0\n2\n", DatasetFormat::Csv).unwrap_err();
        assert!(e.contains("line 3"), "{e}");
        assert!(parse(b"a,y\n", DatasetFormat::Csv).is_err());
        assert!(summarise(&parse(b"a,y\n1,\n", DatasetFormat::Csv).unwrap(), "y").is_err());
        assert_eq!(sniff(b"  {\"columns\":{}}", None), DatasetFormat::Json);
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
    }
}
