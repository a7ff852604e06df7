//! The audit log: who changed what, when. Written in the same transaction as
//! the change it records.

use sqlx::{Any, Transaction};
use wasmops_api::AuditEntry;

pub async fn record(
    tx: &mut Transaction<'_, Any>,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(crate::now_ms())
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn list(db: &crate::db::Db, limit: i64) -> sqlx::Result<Vec<AuditEntry>> {
    let rows: Vec<(i64, i64, String, String, String, String)> = sqlx::query_as(
        "SELECT id, at, actor, action, target, detail FROM audit ORDER BY id DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, at_ms, actor, action, target, detail)| AuditEntry {
            id,
            at_ms,
            actor,
            action,
            target,
            detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail)),
        })
        .collect())
}
