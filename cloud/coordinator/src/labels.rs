//! Delayed labels: outcomes an application posts, possibly days later, for
//! predictions devices made (`POST /v1/labels`). Each label names a
//! prediction id a device reported in its telemetry (`predictions` table);
//! a classifier's outcome is a class, a regressor's a number. A batch is
//! stored whole or not at all, and a refusal names the ids at fault.

use std::collections::BTreeMap;

use sqlx::Row;
use wasmops_api::{Label, MAX_LABELS, Outcome};
use wasmops_protocol::telemetry::is_prediction_id;

use crate::{Coordinator, CoordinatorError};

/// Ids looked up per query.
pub(crate) const IDS_PER_QUERY: usize = 200;

/// How an outcome is stored: a class name, or a number's decimal text. An
/// integer posted for a classifier is that class (`1` and `"1"` alike).
fn outcome_text(o: &Outcome) -> String {
    match o {
        Outcome::Class(c) => c.clone(),
        Outcome::Number(x) => format!("{}", x + 0.0),
    }
}

/// Checks and stores `labels`; returns how many were stored.
pub async fn store(c: &Coordinator, labels: &[Label]) -> Result<u64, CoordinatorError> {
    if labels.is_empty() {
        return Err(CoordinatorError::BadRequest("no labels".into()));
    }
    if labels.len() > MAX_LABELS {
        return Err(CoordinatorError::BadRequest(format!(
            "{} labels; at most {MAX_LABELS} a request",
            labels.len()
        )));
    }
    let malformed: Vec<&str> = labels
        .iter()
        .filter(|l| !is_prediction_id(&l.prediction_id))
        .map(|l| l.prediction_id.as_str())
        .collect();
    if !malformed.is_empty() {
        return Err(CoordinatorError::BadRequest(format!(
            "not a prediction id (1-64 of [A-Za-z0-9_-]): {}",
            few(&malformed)
        )));
    }
    // What each prediction was: a class, or a value.
    let mut known: BTreeMap<String, bool> = BTreeMap::new();
    let ids: Vec<&str> = labels.iter().map(|l| l.prediction_id.as_str()).collect();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT id, class FROM predictions WHERE id IN ({})",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&c.db.read).await? {
            let id: String = row.try_get("id")?;
            let class: Option<String> = row.try_get("class")?;
            known.insert(id, class.is_some());
        }
    }
    let unknown: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| !known.contains_key(*id))
        .collect();
    if !unknown.is_empty() {
        return Err(CoordinatorError::NotFound(format!(
            "no prediction with id {} (ids come from the agent's POST /v1/predict, and reach the coordinator with the device's next telemetry report); nothing stored",
            few(&unknown)
        )));
    }
    let mistyped: Vec<String> = labels
        .iter()
        .filter_map(|l| {
            let classifier = known[&l.prediction_id];
            match (&l.outcome, classifier) {
                (Outcome::Number(x), _) if !x.is_finite() => {
                    Some(format!("{} (not finite)", l.prediction_id))
                }
                (Outcome::Class(_), false) => {
                    Some(format!("{} (a regressor's: a number)", l.prediction_id))
                }
                (Outcome::Number(x), true) if x.fract() != 0.0 => Some(format!(
                    "{} (a classifier's: a class, not {x})",
                    l.prediction_id
                )),
                (Outcome::Class(s), true) if s.is_empty() || s.len() > 128 => {
                    Some(format!("{} (a class of 1-128 bytes)", l.prediction_id))
                }
                _ => None,
            }
        })
        .collect();
    if !mistyped.is_empty() {
        let names: Vec<&str> = mistyped.iter().map(String::as_str).collect();
        return Err(CoordinatorError::BadRequest(format!(
            "outcomes of the wrong type for {}; nothing stored",
            few(&names)
        )));
    }
    let now = crate::now_ms();
    let mut tx = c.db.pool.begin().await?;
    for l in labels {
        sqlx::query(
            "INSERT INTO labels (prediction_id, outcome, received_at) VALUES ($1, $2, $3)
             ON CONFLICT (prediction_id) DO UPDATE SET outcome = excluded.outcome, received_at = excluded.received_at",
        )
        .bind(&l.prediction_id)
        .bind(outcome_text(&l.outcome))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(labels.len() as u64)
}

/// Up to five of `ids`, and how many more.
fn few(ids: &[&str]) -> String {
    let mut s = ids
        .iter()
        .take(5)
        .map(|i| format!("`{}`", i.escape_debug()))
        .collect::<Vec<_>>()
        .join(", ");
    if ids.len() > 5 {
        s.push_str(&format!(" and {} more", ids.len() - 5));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_outcomes_are_class_ids() {
        assert_eq!(outcome_text(&Outcome::Number(1.0)), "1");
        assert_eq!(outcome_text(&Outcome::Number(-0.0)), "0");
        assert_eq!(outcome_text(&Outcome::Number(2.5)), "2.5");
        assert_eq!(outcome_text(&Outcome::Class("setosa".into())), "setosa");
        assert_eq!(
            few(&["a", "b", "c", "d", "e", "f", "g"]),
            "`a`, `b`, `c`, `d`, `e` and 2 more"
        );
    }
}
