//! How a model's drift is judged: a method and threshold for all its
//! columns and per column, the dataset-drift share, and the accuracy margin
//! (`PUT /v1/models/{name}/monitoring`). Unset: Evidently's defaults.

use wasmops_api::MonitorSettings;
use wasmops_drift::{Method, Rule, Rules};

use crate::{Coordinator, CoordinatorError};

/// Realised accuracy this far below the model's own expected accuracy is
/// `PerformanceDegraded` unless a model says otherwise: a calibrated model
/// sits within a few points of its expectation (iris: 0.97 realised, 0.84
/// expected), a changed concept falls tens of points below it.
pub const ACCURACY_MARGIN: f64 = 0.1;

/// A model's settings, resolved for judging.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub rules: Rules,
    pub drift_share: Option<f64>,
    pub accuracy_margin: f64,
}

fn method(name: &str, what: &str) -> Result<Method, CoordinatorError> {
    let m: Method = name
        .parse()
        .map_err(|e: String| CoordinatorError::BadRequest(format!("{what}: {e}")))?;
    if matches!(m, Method::Ks | Method::Z) {
        return Err(CoordinatorError::BadRequest(format!(
            "{what}: `{m}` needs raw samples; fleet counts are judged by wasserstein_norm, jensenshannon, psi or chisquare"
        )));
    }
    Ok(m)
}

fn threshold(x: Option<f64>, what: &str) -> Result<Option<f64>, CoordinatorError> {
    match x {
        Some(t) if !(t.is_finite() && t > 0.0) => Err(CoordinatorError::BadRequest(format!(
            "{what}: threshold {t} must be a positive number"
        ))),
        _ => Ok(x),
    }
}

/// Checks `s` and turns it into rules.
pub fn resolve(s: &MonitorSettings) -> Result<Resolved, CoordinatorError> {
    let mut rules = Rules {
        default: Rule {
            method: s
                .method
                .as_deref()
                .map(|m| method(m, "method"))
                .transpose()?,
            threshold: threshold(s.threshold, "threshold")?,
        },
        ..Rules::default()
    };
    if s.columns.len() > wasmops_profile::MAX_COLUMNS {
        return Err(CoordinatorError::BadRequest(format!(
            "{} column settings; at most {}",
            s.columns.len(),
            wasmops_profile::MAX_COLUMNS
        )));
    }
    for (name, c) in &s.columns {
        let what = format!("column `{name}`");
        rules.columns.insert(
            name.clone(),
            Rule {
                method: c.method.as_deref().map(|m| method(m, &what)).transpose()?,
                threshold: threshold(c.threshold, &what)?,
            },
        );
    }
    for (x, what) in [
        (s.drift_share, "drift_share"),
        (s.accuracy_margin, "accuracy_margin"),
    ] {
        if let Some(x) = x
            && !(x.is_finite() && (0.0..=1.0).contains(&x))
        {
            return Err(CoordinatorError::BadRequest(format!(
                "{what} {x} must lie in [0, 1]"
            )));
        }
    }
    Ok(Resolved {
        rules,
        drift_share: s.drift_share,
        accuracy_margin: s.accuracy_margin.unwrap_or(ACCURACY_MARGIN),
    })
}

/// The model's stored settings (the defaults when none were set).
pub async fn get(c: &Coordinator, model: &str) -> Result<MonitorSettings, CoordinatorError> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT payload FROM monitor_settings WHERE model = $1")
            .bind(model)
            .fetch_optional(&c.db.pool)
            .await?;
    Ok(row
        .and_then(|(p,)| serde_json::from_str(&p).ok())
        .unwrap_or_default())
}

/// The model's settings, resolved. Stored settings that no longer resolve
/// (a method renamed since) are logged and the defaults used.
pub async fn load(c: &Coordinator, model: &str) -> Result<Resolved, CoordinatorError> {
    Ok(resolve(&get(c, model).await?).unwrap_or_else(|e| {
        tracing::error!("stored monitoring settings of {model} are unusable: {e}");
        resolve(&MonitorSettings::default()).expect("the defaults resolve")
    }))
}

/// Checks and stores `s` for `model` (which must be registered).
pub async fn set(
    c: &Coordinator,
    model: &str,
    s: &MonitorSettings,
    actor: &str,
) -> Result<MonitorSettings, CoordinatorError> {
    resolve(s)?;
    let known: Option<(String,)> = sqlx::query_as("SELECT name FROM models WHERE name = $1")
        .bind(model)
        .fetch_optional(&c.db.pool)
        .await?;
    if known.is_none() {
        return Err(CoordinatorError::NotFound(format!("no model `{model}`")));
    }
    let payload = serde_json::to_string(s).expect("settings serialise");
    let mut tx = c.db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO monitor_settings (model, payload, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (model) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
    )
    .bind(model)
    .bind(&payload)
    .bind(crate::now_ms())
    .execute(&mut *tx)
    .await?;
    crate::audit::record(
        &mut tx,
        actor,
        "monitoring.set",
        model,
        serde_json::to_value(s).expect("settings serialise"),
    )
    .await?;
    tx.commit().await?;
    Ok(s.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_api::ColumnSetting;

    #[test]
    fn settings_are_checked_naming_what_is_wrong() {
        let mut s = MonitorSettings {
            method: Some("psi".into()),
            threshold: Some(0.2),
            ..MonitorSettings::default()
        };
        s.columns.insert(
            "age".into(),
            ColumnSetting {
                method: Some("wasserstein_norm".into()),
                threshold: None,
            },
        );
        let r = resolve(&s).unwrap();
        assert_eq!(
            r.rules.for_column("age").method,
            Some(Method::WassersteinNorm)
        );
        assert_eq!(r.rules.for_column("age").threshold, Some(0.2));
        assert_eq!(r.rules.for_column("income").method, Some(Method::Psi));
        assert_eq!(r.accuracy_margin, ACCURACY_MARGIN);
        let refused = |s: MonitorSettings| resolve(&s).unwrap_err().to_string();
        let mut ks = s.clone();
        ks.columns.get_mut("age").unwrap().method = Some("ks".into());
        assert!(refused(ks).contains("column `age`: `ks` needs raw samples"));
        let unknown = MonitorSettings {
            method: Some("kl".into()),
            ..MonitorSettings::default()
        };
        assert!(refused(unknown).contains("method"));
        let negative = MonitorSettings {
            threshold: Some(-1.0),
            ..MonitorSettings::default()
        };
        assert!(refused(negative).contains("positive"));
        let share = MonitorSettings {
            drift_share: Some(1.5),
            ..MonitorSettings::default()
        };
        assert!(refused(share).contains("drift_share 1.5"));
    }
}
