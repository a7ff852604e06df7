//! The model registry: models, immutable content-addressed versions, aliases,
//! tags, and the lineage (datasets, runs) read from each version's signed claims.

use std::collections::BTreeMap;

use sqlx::Row;
use wasmops_trust::Claims;

use wasmops_api::{ModelSummary, Registered, Version};

use crate::auth::Principal;
use crate::error::CoordinatorError;
use crate::{Coordinator, audit};

const VERSION_COLUMNS: &str = "name, version, sequence, sha256, size_bytes, signer, delegation, claims, registered_at, registered_by";

/// Verifies, stores and records a signed component; `full_sha` is the SHA-256
/// of all of `wasm` (computed as the upload arrived). Artifacts are addressed by
/// it: what a device can check after download.
pub async fn register(
    c: &Coordinator,
    who: &Principal,
    wasm: bytes::Bytes,
    full_sha: String,
) -> Result<Registered, CoordinatorError> {
    // Nothing is stored or believed before the trust policy accepts it. The
    // check is CPU work (hashing, Ed25519, parsing): off the async workers, so
    // uploads never stall HTTP, MQTT keep-alives or the rollout controller.
    let accepted = {
        let (trust, wasm) = (c.trust.clone(), wasm.clone());
        tokio::task::spawn_blocking(move || trust.check(&wasm))
            .await
            .map_err(|e| CoordinatorError::Internal(format!("verification task: {e}")))??
    };
    let claims: Claims = accepted
        .claims
        .clone()
        .ok_or(wasmops_trust::TrustError::NoClaims)?;

    if let Some(existing) = find_version(c, &claims.name, &claims.version).await? {
        if existing.sha256 == full_sha {
            return Ok(Registered {
                created: false,
                version: existing,
            });
        }
        return Err(CoordinatorError::Conflict(format!(
            "{} {} is already registered with different content (sha256 {}); versions are immutable: bump the version",
            claims.name, claims.version, existing.sha256
        )));
    }
    let same_seq: Option<(String,)> =
        sqlx::query_as("SELECT version FROM model_versions WHERE name = $1 AND sequence = $2")
            .bind(&claims.name)
            .bind(claims.sequence as i64)
            .fetch_optional(&c.db.pool)
            .await?;
    if let Some((v,)) = same_seq {
        return Err(CoordinatorError::Conflict(format!(
            "{} sequence {} is already used by version {v}",
            claims.name, claims.sequence
        )));
    }
    // Content first: a row never points at missing bytes.
    c.artifacts.put(&full_sha, wasm.clone()).await?;

    let now = crate::now_ms();
    let claims_json = serde_json::to_string(&claims).expect("claims serialise");
    let l = &claims.lineage;
    let mut tx = c.db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO models (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(&claims.name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO model_versions (name, version, sequence, sha256, size_bytes, signer, delegation, claims, dataset_id, dataset_sha256, training_run, code_commit, registered_at, registered_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&claims.name)
    .bind(&claims.version)
    .bind(claims.sequence as i64)
    .bind(&full_sha)
    .bind(wasm.len() as i64)
    .bind(&accepted.verified.key_id)
    .bind(accepted.delegation.clone())
    .bind(&claims_json)
    .bind(l.dataset_id.clone())
    .bind(l.dataset_sha256.clone())
    .bind(l.training_run.clone())
    .bind(l.code_commit.clone())
    .bind(now)
    .bind(&who.name)
    .execute(&mut *tx)
    .await?;
    if let (Some(id), Some(hash)) = (&l.dataset_id, &l.dataset_sha256) {
        sqlx::query("INSERT INTO datasets (id, sha256, first_seen) VALUES ($1, $2, $3) ON CONFLICT (id, sha256) DO NOTHING")
            .bind(id)
            .bind(hash)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(run) = &l.training_run {
        sqlx::query("INSERT INTO runs (id, dataset_id, dataset_sha256, code_commit, metrics, first_seen) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING")
            .bind(run)
            .bind(l.dataset_id.clone())
            .bind(l.dataset_sha256.clone())
            .bind(l.code_commit.clone())
            .bind(serde_json::to_string(&claims.metrics).expect("metrics serialise"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    audit::record(
        &mut tx,
        &who.name,
        "model.register",
        &format!("{}@{}", claims.name, claims.version),
        serde_json::json!({"sha256": full_sha, "sequence": claims.sequence, "signer": accepted.verified.key_id}),
    )
    .await?;
    tx.commit().await?;
    let version = find_version(c, &claims.name, &claims.version)
        .await?
        .ok_or_else(|| CoordinatorError::NotFound("just registered".into()))?;
    crate::events::emit(
        c,
        "ModelRegistered",
        format!("{}@{}", version.name, version.version),
        serde_json::json!({"sha256": version.sha256, "sequence": version.sequence, "by": who.name}),
    );
    Ok(Registered {
        created: true,
        version,
    })
}

fn version_from_row(row: &sqlx::any::AnyRow) -> Result<Version, sqlx::Error> {
    let claims: String = row.try_get("claims")?;
    Ok(Version {
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        sequence: row.try_get("sequence")?,
        sha256: row.try_get("sha256")?,
        size_bytes: row.try_get("size_bytes")?,
        signer: row.try_get("signer")?,
        delegation: row.try_get("delegation")?,
        claims: serde_json::from_str(&claims).unwrap_or(serde_json::Value::Null),
        registered_at_ms: row.try_get("registered_at")?,
        registered_by: row.try_get("registered_by")?,
        aliases: vec![],
        tags: Default::default(),
    })
}

async fn decorate(c: &Coordinator, mut v: Version) -> Result<Version, CoordinatorError> {
    let aliases: Vec<(String,)> =
        sqlx::query_as("SELECT alias FROM aliases WHERE name = $1 AND version = $2 ORDER BY alias")
            .bind(&v.name)
            .bind(&v.version)
            .fetch_all(&c.db.pool)
            .await?;
    v.aliases = aliases.into_iter().map(|(a,)| a).collect();
    let tags: Vec<(String, String)> =
        sqlx::query_as("SELECT tag_key, tag_value FROM tags WHERE name = $1 AND version = $2")
            .bind(&v.name)
            .bind(&v.version)
            .fetch_all(&c.db.pool)
            .await?;
    v.tags = tags.into_iter().collect();
    Ok(v)
}

pub async fn find_version(
    c: &Coordinator,
    name: &str,
    version: &str,
) -> Result<Option<Version>, CoordinatorError> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions WHERE name = $1 AND version = $2"
    ))
    .bind(name)
    .bind(version)
    .fetch_optional(&c.db.pool)
    .await?;
    match row {
        Some(r) => Ok(Some(decorate(c, version_from_row(&r)?).await?)),
        None => Ok(None),
    }
}

/// A version by number or by alias (`champion`).
pub async fn resolve(
    c: &Coordinator,
    name: &str,
    version_or_alias: &str,
) -> Result<Version, CoordinatorError> {
    if let Some(v) = find_version(c, name, version_or_alias).await? {
        return Ok(v);
    }
    let aliased: Option<(String,)> =
        sqlx::query_as("SELECT version FROM aliases WHERE name = $1 AND alias = $2")
            .bind(name)
            .bind(version_or_alias)
            .fetch_optional(&c.db.pool)
            .await?;
    match aliased {
        Some((v,)) => find_version(c, name, &v)
            .await?
            .ok_or_else(|| CoordinatorError::NotFound(format!("{name} {v}"))),
        None => Err(CoordinatorError::NotFound(format!(
            "model `{name}` has no version or alias `{version_or_alias}`"
        ))),
    }
}

pub async fn versions(c: &Coordinator, name: &str) -> Result<Vec<Version>, CoordinatorError> {
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM model_versions WHERE name = $1 ORDER BY sequence DESC"
    ))
    .bind(name)
    .fetch_all(&c.db.pool)
    .await?;
    if rows.is_empty() {
        return Err(CoordinatorError::NotFound(format!("no model `{name}`")));
    }
    let mut out = vec![];
    for r in rows {
        out.push(decorate(c, version_from_row(&r)?).await?);
    }
    Ok(out)
}

pub async fn list(c: &Coordinator) -> Result<Vec<ModelSummary>, CoordinatorError> {
    // Three queries whatever the number of models.
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT m.name, COUNT(v.version) FROM models m LEFT JOIN model_versions v ON v.name = m.name GROUP BY m.name ORDER BY m.name").fetch_all(&c.db.pool).await?;
    let latest: Vec<(String, String)> = sqlx::query_as(
        "SELECT v.name, v.version FROM model_versions v JOIN (SELECT name, MAX(sequence) AS top FROM model_versions GROUP BY name) t ON t.name = v.name AND t.top = v.sequence",
    )
    .fetch_all(&c.db.pool)
    .await?;
    let latest: BTreeMap<String, String> = latest.into_iter().collect();
    let mut aliases: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (name, alias, version) in
        sqlx::query_as::<_, (String, String, String)>("SELECT name, alias, version FROM aliases")
            .fetch_all(&c.db.pool)
            .await?
    {
        aliases.entry(name).or_default().insert(alias, version);
    }
    Ok(rows
        .into_iter()
        .map(|(name, n)| ModelSummary {
            latest_version: latest.get(&name).cloned(),
            aliases: aliases.remove(&name).unwrap_or_default(),
            versions: n,
            name,
        })
        .collect())
}

fn valid_label(what: &str, s: &str) -> Result<(), CoordinatorError> {
    if s.is_empty()
        || s.len() > 64
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(CoordinatorError::BadRequest(format!(
            "{what} `{s}` must be 1-64 characters of [A-Za-z0-9-_.]"
        )));
    }
    Ok(())
}

/// Points `alias` at `version` (moving it if it pointed elsewhere).
pub async fn set_alias(
    c: &Coordinator,
    who: &Principal,
    name: &str,
    alias: &str,
    version: &str,
) -> Result<Version, CoordinatorError> {
    valid_label("alias", alias)?;
    if semver_like(alias) {
        return Err(CoordinatorError::BadRequest(format!(
            "alias `{alias}` looks like a version number"
        )));
    }
    let target = find_version(c, name, version).await?.ok_or_else(|| {
        CoordinatorError::NotFound(format!("model `{name}` has no version `{version}`"))
    })?;
    let previous: Option<(String,)> =
        sqlx::query_as("SELECT version FROM aliases WHERE name = $1 AND alias = $2")
            .bind(name)
            .bind(alias)
            .fetch_optional(&c.db.pool)
            .await?;
    let mut tx = c.db.pool.begin().await?;
    sqlx::query("DELETE FROM aliases WHERE name = $1 AND alias = $2")
        .bind(name)
        .bind(alias)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO aliases (name, alias, version, updated_at) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(alias)
        .bind(version)
        .bind(crate::now_ms())
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &who.name,
        "alias.set",
        &format!("{name}:{alias}"),
        serde_json::json!({"version": version, "previous": previous.map(|(v,)| v)}),
    )
    .await?;
    tx.commit().await?;
    decorate(c, target).await
}

pub async fn delete_alias(
    c: &Coordinator,
    who: &Principal,
    name: &str,
    alias: &str,
) -> Result<(), CoordinatorError> {
    let mut tx = c.db.pool.begin().await?;
    let n = sqlx::query("DELETE FROM aliases WHERE name = $1 AND alias = $2")
        .bind(name)
        .bind(alias)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(CoordinatorError::NotFound(format!(
            "model `{name}` has no alias `{alias}`"
        )));
    }
    audit::record(
        &mut tx,
        &who.name,
        "alias.delete",
        &format!("{name}:{alias}"),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn set_tag(
    c: &Coordinator,
    who: &Principal,
    name: &str,
    version: &str,
    key: &str,
    value: &str,
) -> Result<Version, CoordinatorError> {
    valid_label("tag", key)?;
    let target = find_version(c, name, version).await?.ok_or_else(|| {
        CoordinatorError::NotFound(format!("model `{name}` has no version `{version}`"))
    })?;
    let mut tx = c.db.pool.begin().await?;
    sqlx::query("DELETE FROM tags WHERE name = $1 AND version = $2 AND tag_key = $3")
        .bind(name)
        .bind(version)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO tags (name, version, tag_key, tag_value) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(version)
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &who.name,
        "tag.set",
        &format!("{name}@{version}"),
        serde_json::json!({key: value}),
    )
    .await?;
    tx.commit().await?;
    decorate(c, target).await
}

fn semver_like(s: &str) -> bool {
    s.split('.').count() == 3
        && s.split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}
