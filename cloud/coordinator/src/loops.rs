//! The closed loop per model: triggers start runs, passed candidates are
//! released.
//!
//! Settings ([`set`], `PUT /v1/models/{name}/loop`) say what trains the model
//! and on which data, which triggers start a run — monitoring events
//! (`DataDriftDetected`, `PerformanceDegraded`, `PredictionDriftDetected`;
//! never `DataQualityAlert` alone: a broken sensor is fixed, not learnt), N new
//! outcomes, a schedule — with a cool-down, what the gate demands, and how a
//! passed candidate is released.
//!
//! [`run`] is the loop's task: it listens to the coordinator's own events
//! and checks the counting triggers every few seconds ([`trigger`] queues a
//! run through [`runs::create`], which allows one unfinished run per model).
//! A run that succeeds with a candidate gets a promotion record ([`promote`]):
//! with `approval = "manual"` it waits (`ApprovalRequired`) for [`approve`];
//! then the candidate is rolled out as the loop's rollout plan says (canary
//! waves with their gates), and when that succeeds the alias moves
//! (`ModelPromoted`). Every step is a row's state, so a restarted
//! coordinator goes on where it stopped.

use std::time::Duration;

use wasmops_api::{
    LOOP_EVENTS, LoopSettings, LoopView, Promotion, RolloutRequest, RolloutState, RunKind,
    RunRequest, RunStatus, Trainer,
};

use crate::auth::{Principal, Role};
use crate::{Coordinator, CoordinatorError, audit, datasets, events, registry, rollouts, runs};

/// Who the loop acts as in the audit log and on runs and rollouts.
fn principal() -> Principal {
    Principal {
        name: "loop".into(),
        role: Role::Admin,
    }
}

fn bad(m: impl Into<String>) -> CoordinatorError {
    CoordinatorError::BadRequest(m.into())
}

/// `30m`, `24h`, `7d`, `90s` → milliseconds.
pub fn duration_ms(what: &str, s: &str) -> Result<i64, CoordinatorError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| {
        bad(format!(
            "{what}: `{s}` is not a duration like 30m, 24h or 7d"
        ))
    })?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad(format!("{what}: unknown unit in `{s}` (s, m, h or d)"))),
    };
    n.checked_mul(unit_ms)
        .filter(|ms| *ms > 0 && *ms <= 366 * 86_400_000)
        .ok_or_else(|| bad(format!("{what}: `{s}` is out of range")))
}

/// The trainer a loop names.
pub fn trainer_of(settings: &LoopSettings) -> Result<Trainer, CoordinatorError> {
    let t = settings.trainer.trim();
    Ok(match t.strip_prefix("builtin:") {
        Some(algorithm) => Trainer::Builtin {
            algorithm: algorithm.to_string(),
            params: settings.params.clone(),
        },
        None => Trainer::Command {
            command: t.to_string(),
            workdir: None,
        },
    })
}

/// Checks every field (a bad file is refused whole, naming the field).
fn check(model: &str, s: &LoopSettings) -> Result<(), CoordinatorError> {
    for event in &s.triggers.on {
        if event == "DataQualityAlert" {
            return Err(bad(
                "triggers.on: DataQualityAlert cannot start a run (a broken sensor is fixed, not learnt)",
            ));
        }
        if !LOOP_EVENTS.contains(&event.as_str()) {
            return Err(bad(format!(
                "triggers.on: unknown trigger `{event}` (one of {})",
                LOOP_EVENTS.join(", ")
            )));
        }
    }
    if s.triggers.new_labels == Some(0) {
        return Err(bad("triggers.new_labels must be at least 1"));
    }
    if let Some(x) = &s.triggers.schedule {
        duration_ms("triggers.schedule", x)?;
    }
    if let Some(x) = &s.triggers.cooldown {
        duration_ms("triggers.cooldown", x)?;
    }
    if let Some(x) = &s.time_limit {
        duration_ms("time_limit", x)?;
    }
    match (&s.dataset, &s.from_production) {
        (None, None) => return Err(bad("a loop needs its data: dataset or [from_production]")),
        (Some(_), Some(_)) => return Err(bad("dataset and [from_production] exclude each other")),
        (_, Some(p)) => {
            duration_ms("from_production.since", &p.since)?;
            if let Some(f) = &p.fresh {
                duration_ms("from_production.fresh", f)?;
            }
        }
        _ => {}
    }
    if !["auto", "manual"].contains(&s.release.approval.as_str()) {
        return Err(bad(format!(
            "release.approval `{}`: auto or manual",
            s.release.approval
        )));
    }
    rollout_plan(model, "0.0.0", s)?;
    Ok(())
}

/// The loop's rollout plan for `version`, if it has one.
fn rollout_plan(
    model: &str,
    version: &str,
    s: &LoopSettings,
) -> Result<Option<RolloutRequest>, CoordinatorError> {
    let Some(plan) = &s.release.rollout else {
        return Ok(None);
    };
    let serde_json::Value::Object(mut fields) = plan.clone() else {
        return Err(bad("release.rollout must be a table"));
    };
    if fields.contains_key("model") || fields.contains_key("version") {
        return Err(bad(
            "release.rollout names no model or version: the candidate is rolled out",
        ));
    }
    fields.insert("model".into(), model.into());
    fields.insert("version".into(), version.into());
    serde_json::from_value(serde_json::Value::Object(fields))
        .map(Some)
        .map_err(|e| bad(format!("release.rollout: {e}")))
}

/// Stores `settings` for `model` (checked first).
pub async fn set(
    c: &Coordinator,
    who: &Principal,
    model: &str,
    settings: LoopSettings,
) -> Result<LoopView, CoordinatorError> {
    wasmops_protocol::device::check_name("model", model).map_err(|e| bad(e.to_string()))?;
    check(model, &settings)?;
    // The run request these settings make must be one runs accept.
    if let Trainer::Builtin { algorithm, .. } = trainer_of(&settings)?
        && !runs::BUILTIN_TRAINERS.contains(&algorithm.as_str())
    {
        return Err(bad(format!(
            "trainer: unknown built-in `{algorithm}` (builtin:{})",
            runs::BUILTIN_TRAINERS.join(", builtin:")
        )));
    }
    if let Trainer::Command { command, .. } = trainer_of(&settings)?
        && !command.contains("{out}")
    {
        return Err(bad(
            "trainer: a command must say where to write the model: {out}",
        ));
    }
    let payload = serde_json::to_string(&settings).expect("settings serialise");
    let now = crate::now_ms();
    let mut tx = c.db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO loops (model, payload, created_at, updated_at, labels_at) VALUES ($1, $2, $3, $3, $3)
         ON CONFLICT (model) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
    )
    .bind(model)
    .bind(&payload)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &who.name,
        "loop.set",
        model,
        serde_json::to_value(&settings).expect("json"),
    )
    .await?;
    tx.commit().await?;
    view(c, model).await
}

async fn settings_of(
    c: &Coordinator,
    model: &str,
) -> Result<Option<LoopSettings>, CoordinatorError> {
    let row: Option<(String,)> = sqlx::query_as("SELECT payload FROM loops WHERE model = $1")
        .bind(model)
        .fetch_optional(&c.db.pool)
        .await?;
    row.map(|(p,)| {
        serde_json::from_str(&p)
            .map_err(|e| CoordinatorError::Internal(format!("loop of {model}: {e}")))
    })
    .transpose()
}

pub async fn view(c: &Coordinator, model: &str) -> Result<LoopView, CoordinatorError> {
    let row: Option<(String, Option<i64>, Option<String>)> =
        sqlx::query_as("SELECT payload, last_trigger_at, last_trigger FROM loops WHERE model = $1")
            .bind(model)
            .fetch_optional(&c.db.pool)
            .await?;
    let Some((payload, last_trigger_ms, last_trigger)) = row else {
        return Err(CoordinatorError::NotFound(format!(
            "model {model} has no loop"
        )));
    };
    let settings = serde_json::from_str(&payload)
        .map_err(|e| CoordinatorError::Internal(format!("loop of {model}: {e}")))?;
    let rows: Vec<PromotionRow> = sqlx::query_as(&format!(
        "SELECT {PROMOTION} FROM promotions WHERE model = $1 ORDER BY updated_at"
    ))
    .bind(model)
    .fetch_all(&c.db.pool)
    .await?;
    Ok(LoopView {
        model: model.into(),
        settings,
        last_trigger_ms,
        last_trigger,
        promotions: rows.into_iter().map(promotion).collect(),
    })
}

/// run, model, version, state, rollout, reason, updated at.
type PromotionRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    i64,
);

const PROMOTION: &str = "run, model, version, state, rollout, reason, updated_at";

fn promotion(
    (run, model, version, state, rollout, reason, updated_at_ms): PromotionRow,
) -> Promotion {
    Promotion {
        run,
        model,
        version,
        state,
        rollout,
        reason,
        updated_at_ms,
    }
}

/// Queues a run of `model`'s loop because of `why`. `Ok(None)`: not now
/// (cool-down, a run already unfinished, not enough production rows).
pub async fn trigger(
    c: &Coordinator,
    model: &str,
    why: &str,
    automatic: bool,
) -> Result<Option<String>, CoordinatorError> {
    let Some(s) = settings_of(c, model).await? else {
        return Err(CoordinatorError::NotFound(format!(
            "model {model} has no loop"
        )));
    };
    let now = crate::now_ms();
    if automatic {
        let (last,): (Option<i64>,) =
            sqlx::query_as("SELECT last_trigger_at FROM loops WHERE model = $1")
                .bind(model)
                .fetch_one(&c.db.pool)
                .await?;
        let cooldown = duration_ms("cooldown", s.triggers.cooldown.as_deref().unwrap_or("1h"))?;
        if last.is_some_and(|t| now - t < cooldown) {
            tracing::info!("loop of {model}: {why} ignored (cool-down)");
            return Ok(None);
        }
    }
    if automatic && let Some(fresh) = s.from_production.as_ref().and_then(|p| p.fresh.as_deref()) {
        // Train on what arrives after the trigger, not on a mix of before and
        // after: the run starts once `fresh` has passed (`counting_triggers`).
        let wait = duration_ms("from_production.fresh", fresh)?;
        let held = sqlx::query(
            "UPDATE loops SET pending_at = $1, pending_why = $2, last_trigger_at = $1, last_trigger = $2
             WHERE model = $3 AND pending_at IS NULL",
        )
        .bind(now)
        .bind(why)
        .bind(model)
        .execute(&c.db.pool)
        .await?;
        if held.rows_affected() == 1 {
            tracing::info!(
                "loop of {model}: {why}; collecting fresh production rows for {} s",
                wait / 1000
            );
        }
        return Ok(None);
    }
    let since = match &s.from_production {
        Some(p) => now - duration_ms("since", &p.since)?,
        None => now,
    };
    start_run(c, &s, model, why, since, automatic).await
}

/// Queues the run (the production dataset from `since` first, when the loop
/// trains on production rows).
async fn start_run(
    c: &Coordinator,
    s: &LoopSettings,
    model: &str,
    why: &str,
    since: i64,
    automatic: bool,
) -> Result<Option<String>, CoordinatorError> {
    let now = crate::now_ms();
    let dataset = match (&s.dataset, &s.from_production) {
        (Some(d), _) => d.clone(),
        (None, Some(p)) => {
            let name = format!("{model}-production");
            let req = wasmops_api::FromProduction {
                model: model.into(),
                version: None,
                since_ms: Some(since),
                until_ms: Some(now),
                label: None,
                min_rows: Some(p.min_rows),
            };
            match datasets::from_production(c, &principal(), &name, req).await {
                Ok(v) => format!("{}@{}", v.name, v.version),
                Err(CoordinatorError::BadRequest(e)) => {
                    tracing::info!("loop of {model}: {why}, but no run: {e}");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
        (None, None) => return Err(bad("the loop names no data")),
    };
    let req = RunRequest {
        model: model.into(),
        kind: RunKind::Train,
        trainer: trainer_of(s)?,
        dataset,
        holdout: s.holdout.clone(),
        holdout_share: s.holdout_share,
        trigger: Some(why.chars().take(200).collect()),
        time_limit_s: s
            .time_limit
            .as_deref()
            .map(|t| duration_ms("time_limit", t).map(|ms| (ms / 1000).max(1) as u64))
            .transpose()?,
        gate: s.gate.clone(),
    };
    let run = match runs::create(c, &principal(), req).await {
        Ok(r) => r,
        Err(CoordinatorError::Conflict(e)) if automatic => {
            tracing::info!("loop of {model}: {why} ignored: {e}");
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    sqlx::query("UPDATE loops SET last_trigger_at = $1, last_trigger = $2 WHERE model = $3")
        .bind(now)
        .bind(why)
        .bind(model)
        .execute(&c.db.pool)
        .await?;
    tracing::info!("loop of {model}: run {} queued ({why})", run.id);
    Ok(Some(run.id))
}

/// A monitoring event held for a moment: the data-quality alerts of the
/// same look come after its drift events.
struct Held {
    model: String,
    kind: &'static str,
    columns: Vec<String>,
    at: std::time::Instant,
}

/// How long a data-quality alert explains drift in its columns.
const QUALITY_EXPLAINS: Duration = Duration::from_secs(600);

/// The loop's task: triggers, then promotions, until the process ends.
/// Drift in columns with a data-quality alert starts no run: a broken sensor
/// is fixed, not learnt.
pub async fn run(c: std::sync::Arc<Coordinator>) {
    let mut events = c.internal_events.subscribe();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut held: Vec<Held> = vec![];
    let mut alerted: std::collections::HashMap<(String, String), std::time::Instant> =
        Default::default();
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => {
                    let Some(model) = e.detail["model"].as_str() else { continue };
                    let columns: Vec<String> = e.detail["columns"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    if e.kind == "DataQualityAlert" {
                        for col in columns {
                            alerted.insert((model.to_string(), col), std::time::Instant::now());
                        }
                    } else if let Some(kind) = LOOP_EVENTS.iter().copied().find(|k| *k == e.kind) {
                        held.push(Held { model: model.to_string(), kind, columns, at: std::time::Instant::now() });
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("the loop missed {n} events");
                }
                Err(_) => return,
            },
            _ = tick.tick() => {
                alerted.retain(|_, at| at.elapsed() < QUALITY_EXPLAINS);
                let (ready, wait): (Vec<Held>, Vec<Held>) = held
                    .drain(..)
                    .partition(|h| h.at.elapsed() >= Duration::from_millis(1500));
                held = wait;
                for h in ready {
                    let explained = h.kind == "DataDriftDetected"
                        && !h.columns.is_empty()
                        && h.columns.iter().all(|col| alerted.contains_key(&(h.model.clone(), col.clone())));
                    if explained {
                        tracing::info!(
                            "loop of {}: drift in {:?} comes with a data-quality alert there: no run",
                            h.model, h.columns
                        );
                        continue;
                    }
                    on_event(&c, &h.model, h.kind).await;
                }
                if let Err(e) = counting_triggers(&c).await {
                    tracing::warn!("loop triggers: {e}");
                }
                if let Err(e) = promote(&c).await {
                    tracing::warn!("loop promotions: {e}");
                }
            }
        }
    }
}

async fn on_event(c: &Coordinator, model: &str, kind: &str) {
    match settings_of(c, model).await {
        Ok(Some(s)) if s.triggers.on.iter().any(|k| k == kind) => {
            if let Err(e) = trigger(c, model, kind, true).await {
                tracing::warn!("loop of {model}: {kind}: {e}");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("loop of {model}: {e}"),
    }
}

/// The schedule and new-outcome triggers.
async fn counting_triggers(c: &Coordinator) -> Result<(), CoordinatorError> {
    // model, payload, created at, last trigger at, labels counted from,
    // pending since, pending why.
    type LoopRow = (
        String,
        String,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
    );
    let loops: Vec<LoopRow> = sqlx::query_as(
        "SELECT model, payload, created_at, last_trigger_at, labels_at, pending_at, pending_why FROM loops",
    )
    .fetch_all(&c.db.pool)
    .await?;
    let now = crate::now_ms();
    for (model, payload, created, last, labels_at, pending_at, pending_why) in loops {
        let Ok(s) = serde_json::from_str::<LoopSettings>(&payload) else {
            continue;
        };
        if let Some(at) = pending_at {
            let fresh = s
                .from_production
                .as_ref()
                .and_then(|p| p.fresh.as_deref())
                .map(|f| duration_ms("fresh", f))
                .transpose()?
                .unwrap_or(0);
            if now - at >= fresh {
                sqlx::query(
                    "UPDATE loops SET pending_at = NULL, pending_why = NULL WHERE model = $1",
                )
                .bind(&model)
                .execute(&c.db.pool)
                .await?;
                let why = pending_why.unwrap_or_else(|| "trigger".into());
                start_run(c, &s, &model, &why, at, true).await?;
            }
            continue;
        }
        if let Some(every) = &s.triggers.schedule
            && let Ok(every) = duration_ms("schedule", every)
            && now - last.unwrap_or(created) >= every
        {
            trigger(c, &model, "schedule", true).await?;
            continue;
        }
        if let Some(n) = s.triggers.new_labels {
            let since = labels_at.unwrap_or(0);
            let (count,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM labels l JOIN predictions p ON p.id = l.prediction_id
                 WHERE p.model = $1 AND l.received_at > $2",
            )
            .bind(&model)
            .bind(since)
            .fetch_one(&c.db.pool)
            .await?;
            if count as u64 >= n
                && trigger(c, &model, &format!("{count} new labels"), true)
                    .await?
                    .is_some()
            {
                sqlx::query("UPDATE loops SET labels_at = $1 WHERE model = $2")
                    .bind(now)
                    .bind(&model)
                    .execute(&c.db.pool)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Moves every passed candidate of a model with a loop one step on.
pub async fn promote(c: &Coordinator) -> Result<(), CoordinatorError> {
    // New: succeeded runs with a candidate, queued since the model has a
    // loop, not yet seen.
    let fresh: Vec<(String, String)> = sqlx::query_as(
        "SELECT r.id, r.model FROM runs r JOIN loops l ON l.model = r.model
         WHERE r.status = 'succeeded' AND r.first_seen >= l.created_at
         AND NOT EXISTS (SELECT 1 FROM promotions p WHERE p.run = r.id)",
    )
    .fetch_all(&c.db.pool)
    .await?;
    for (id, model) in fresh {
        let run = runs::get(c, &id).await?;
        let (Some(version), Some(s)) = (run.candidate.clone(), settings_of(c, &model).await?)
        else {
            continue;
        };
        let manual = s.release.approval == "manual";
        let state = if manual {
            "awaiting_approval"
        } else {
            "approved"
        };
        let inserted = sqlx::query(
            "INSERT INTO promotions (run, model, version, state, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (run) DO NOTHING",
        )
        .bind(&id)
        .bind(&model)
        .bind(&version)
        .bind(state)
        .bind(crate::now_ms())
        .execute(&c.db.pool)
        .await?;
        if manual && inserted.rows_affected() == 1 {
            events::emit(
                c,
                "ApprovalRequired",
                format!("{model}@{version}"),
                serde_json::json!({"model": model, "version": version, "run": id, "validation": run.validation}),
            );
        }
    }
    let pending: Vec<(String, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT run, model, version, state, rollout FROM promotions WHERE state IN ('approved', 'rolling_out')",
    )
    .fetch_all(&c.db.pool)
    .await?;
    for (id, model, version, state, rollout) in pending {
        if let Err(e) = step(c, &id, &model, &version, &state, rollout.as_deref()).await {
            tracing::warn!("promotion of {model} {version} (run {id}): {e}");
            if !e.is_server_fault() {
                settle(c, &id, "failed", Some(&e.to_string())).await?;
            }
        }
    }
    Ok(())
}

async fn step(
    c: &Coordinator,
    id: &str,
    model: &str,
    version: &str,
    state: &str,
    rollout: Option<&str>,
) -> Result<(), CoordinatorError> {
    let Some(s) = settings_of(c, model).await? else {
        return settle(c, id, "failed", Some("the model's loop was removed")).await;
    };
    match (state, rollout) {
        ("approved", _) => match rollout_plan(model, version, &s)? {
            None => finish(c, id, model, version, &s.release.alias).await,
            Some(plan) => {
                let r = rollouts::create(c, &principal(), plan).await?;
                sqlx::query("UPDATE promotions SET state = 'rolling_out', rollout = $1, updated_at = $2 WHERE run = $3 AND state = 'approved'")
                    .bind(&r.id)
                    .bind(crate::now_ms())
                    .bind(id)
                    .execute(&c.db.pool)
                    .await?;
                tracing::info!("loop: {model} {version} rolling out ({})", r.id);
                Ok(())
            }
        },
        ("rolling_out", Some(r)) => {
            let v = rollouts::view(c, r).await?;
            match v.state {
                RolloutState::Succeeded => finish(c, id, model, version, &s.release.alias).await,
                RolloutState::Aborted => {
                    let why = format!("rollout {r} aborted: {}", v.reason.unwrap_or_default());
                    settle(c, id, "failed", Some(&why)).await
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

async fn finish(
    c: &Coordinator,
    id: &str,
    model: &str,
    version: &str,
    alias: &str,
) -> Result<(), CoordinatorError> {
    let previous = registry::resolve(c, model, alias)
        .await
        .ok()
        .map(|v| v.version);
    registry::set_alias(c, &principal(), model, alias, version).await?;
    settle(c, id, "promoted", None).await?;
    events::emit(
        c,
        "ModelPromoted",
        format!("{model}@{version}"),
        serde_json::json!({"model": model, "version": version, "alias": alias, "previous": previous, "run": id}),
    );
    Ok(())
}

async fn settle(
    c: &Coordinator,
    id: &str,
    state: &str,
    reason: Option<&str>,
) -> Result<(), CoordinatorError> {
    sqlx::query("UPDATE promotions SET state = $1, reason = $2, updated_at = $3 WHERE run = $4")
        .bind(state)
        .bind(reason)
        .bind(crate::now_ms())
        .bind(id)
        .execute(&c.db.pool)
        .await?;
    Ok(())
}

/// A person lets a candidate waiting for approval go on.
pub async fn approve(
    c: &Coordinator,
    who: &Principal,
    run: &str,
) -> Result<Promotion, CoordinatorError> {
    let done = sqlx::query(
        "UPDATE promotions SET state = 'approved', updated_at = $1 WHERE run = $2 AND state = 'awaiting_approval'",
    )
    .bind(crate::now_ms())
    .bind(run)
    .execute(&c.db.pool)
    .await?;
    let row: Option<PromotionRow> = sqlx::query_as(&format!(
        "SELECT {PROMOTION} FROM promotions WHERE run = $1"
    ))
    .bind(run)
    .fetch_optional(&c.db.pool)
    .await?;
    let Some(row) = row else {
        let status = runs::get(c, run).await?.status;
        return Err(CoordinatorError::Conflict(format!(
            "run {run} has no candidate waiting for approval (it is {})",
            if status == RunStatus::Succeeded {
                "succeeded, for a model without a loop"
            } else {
                status.as_str()
            }
        )));
    };
    if done.rows_affected() == 0 {
        return Err(CoordinatorError::Conflict(format!(
            "run {run}'s candidate is {}, not awaiting approval",
            row.3
        )));
    }
    let mut tx = c.db.pool.begin().await?;
    audit::record(
        &mut tx,
        &who.name,
        "loop.approve",
        run,
        serde_json::json!({"model": row.1, "version": row.2}),
    )
    .await?;
    tx.commit().await?;
    Ok(promotion(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> LoopSettings {
        toml::from_str(toml_text).unwrap()
    }

    #[tokio::test]
    async fn loop_files_are_checked_and_triggers_respect_the_cool_down() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        let who = principal();
        for (text, says) in [
            (
                "trainer = \"builtin:logistic\"\ndataset = \"d\"\n[triggers]\non = [\"DataQualityAlert\"]",
                "a broken sensor is fixed, not learnt",
            ),
            (
                "trainer = \"builtin:logistic\"\ndataset = \"d\"\n[triggers]\non = [\"Sunrise\"]",
                "unknown trigger `Sunrise`",
            ),
            ("trainer = \"builtin:logistic\"", "a loop needs its data"),
            (
                "trainer = \"builtin:svm\"\ndataset = \"d\"",
                "unknown built-in `svm`",
            ),
            ("trainer = \"python t.py\"\ndataset = \"d\"", "{out}"),
            (
                "trainer = \"builtin:logistic\"\ndataset = \"d\"\n[triggers]\ncooldown = \"5y\"",
                "unknown unit",
            ),
            (
                "trainer = \"builtin:logistic\"\ndataset = \"d\"\n[release]\napproval = \"maybe\"",
                "auto or manual",
            ),
            (
                "trainer = \"builtin:logistic\"\ndataset = \"d\"\n[release]\nrollout = { waves = \"all\" }",
                "release.rollout",
            ),
        ] {
            let e = set(&c, &who, "m", settings(text)).await.unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        let unknown: Result<LoopSettings, _> =
            toml::from_str("trainer = \"builtin:logistic\"\nretrain_on = 1");
        assert!(unknown.unwrap_err().to_string().contains("retrain_on"));

        // A dataset, a loop; the first automatic trigger queues a run, the
        // next is inside the cool-down (and a run is unfinished anyway).
        let csv = bytes::Bytes::from_static(b"a,y\n1,0\n2,1\n3,0\n4,1\n");
        let push = wasmops_api::DatasetPush {
            label: "y".into(),
            format: None,
            file: None,
        };
        datasets::push(&c, &who, "d", push, csv).await.unwrap();
        let text = "trainer = \"builtin:logistic\"\ndataset = \"d\"\n[triggers]\non = [\"DataDriftDetected\"]\ncooldown = \"1h\"";
        let v = set(&c, &who, "m", settings(text)).await.unwrap();
        assert_eq!(v.settings.release.approval, "manual");
        let first = trigger(&c, "m", "DataDriftDetected", true).await.unwrap();
        assert!(first.is_some());
        assert_eq!(
            trigger(&c, "m", "DataDriftDetected", true).await.unwrap(),
            None
        );
        let run = runs::get(&c, &first.unwrap()).await.unwrap();
        assert_eq!(run.trigger.as_deref(), Some("DataDriftDetected"));
        assert_eq!(run.datasets[0].name, "d");
        // By hand: no cool-down, but still one run at a time.
        let e = trigger(&c, "m", "manual", false).await.unwrap_err();
        assert!(e.to_string().contains("one run at a time"), "{e}");
        assert_eq!(
            view(&c, "m").await.unwrap().last_trigger.as_deref(),
            Some("DataDriftDetected")
        );
    }

    #[tokio::test]
    async fn schedules_and_new_outcomes_start_runs() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        let who = principal();
        let csv = bytes::Bytes::from_static(b"a,y\n1,0\n2,1\n3,0\n4,1\n");
        let push = wasmops_api::DatasetPush {
            label: "y".into(),
            format: None,
            file: None,
        };
        datasets::push(&c, &who, "d", push, csv).await.unwrap();
        let base = "trainer = \"builtin:logistic\"\ndataset = \"d\"\n[triggers]\n";
        set(
            &c,
            &who,
            "every",
            settings(&format!("{base}schedule = \"1s\"")),
        )
        .await
        .unwrap();
        set(
            &c,
            &who,
            "counted",
            settings(&format!("{base}new_labels = 2")),
        )
        .await
        .unwrap();
        let runs_of = async |model: &str| {
            runs::list(
                &c,
                Some(model),
                runs::Page {
                    limit: 1000,
                    before_ms: None,
                },
            )
            .await
            .unwrap()
        };
        // Nothing is due yet.
        counting_triggers(&c).await.unwrap();
        assert!(runs_of("every").await.is_empty() && runs_of("counted").await.is_empty());
        // A second later the schedule is; two outcomes for the other model's predictions arrive.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let now = crate::now_ms();
        for id in ["p1", "p2"] {
            sqlx::query("INSERT INTO predictions (id, device, model, version, at_ms, received_at, class) VALUES ($1, 'dev', 'counted', '1.0.0', $2, $2, '1')")
                .bind(id)
                .bind(now)
                .execute(&c.db.pool)
                .await
                .unwrap();
            sqlx::query(
                "INSERT INTO labels (prediction_id, outcome, received_at) VALUES ($1, '1', $2)",
            )
            .bind(id)
            .bind(now)
            .execute(&c.db.pool)
            .await
            .unwrap();
        }
        counting_triggers(&c).await.unwrap();
        let every = runs_of("every").await;
        assert_eq!(every.len(), 1);
        assert_eq!(every[0].trigger.as_deref(), Some("schedule"));
        let counted = runs_of("counted").await;
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].trigger.as_deref(), Some("2 new labels"));
        // Counted from the last run on: the same outcomes start nothing again.
        sqlx::query("UPDATE runs SET status = 'failed'")
            .execute(&c.db.pool)
            .await
            .unwrap();
        counting_triggers(&c).await.unwrap();
        assert_eq!(runs_of("counted").await.len(), 1);
    }
}
