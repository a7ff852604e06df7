//! Runs: the coordinator schedules them, workers execute them.
//!
//! `POST /v1/runs` ([`create`]) checks the request (the datasets exist, the
//! trainer is one wasmops has or a command, at most one unfinished run per
//! model) and queues it. A worker ([`claim`]) takes the oldest queued run and
//! holds it by heartbeats ([`progress`], which also append its log lines);
//! [`finish`] records its metrics, candidate and status. A worker that stops
//! reporting for [`RUN_LEASE_MS`] has lost its run: [`expire`] fails it, so a
//! run is never left half-done by a crash of either side. Each step is one
//! conditional statement, so two workers never hold one run.
//!
//! Runs only named in a registered version's claims (trained elsewhere) are
//! `external` records of the same table.

use wasmops_api::{
    MAX_RUN_LOG_BYTES, RUN_LEASE_MS, Run, RunDataset, RunKind, RunProgress, RunRequest, RunResult,
    RunStatus, Trainer,
};

use crate::auth::Principal;
use crate::{Coordinator, CoordinatorError, audit, datasets, events};

/// How the worker inside the coordinator's process names itself.
pub const IN_PROCESS_WORKER: &str = "in-process";

/// The built-in trainers a run may name.
pub const BUILTIN_TRAINERS: &[&str] = &["logistic", "linear"];

/// Longest trainer command.
const MAX_COMMAND: usize = 4096;

/// Longest trainer time limit (a day) and the default (ten minutes).
const MAX_TIME_LIMIT_S: u64 = 86_400;
const DEFAULT_TIME_LIMIT_S: u64 = 600;

/// What a run row's `detail` holds besides its columns.
#[derive(serde::Serialize, serde::Deserialize)]
struct Detail {
    model: String,
    kind: RunKind,
    trainer: Trainer,
    #[serde(default)]
    trigger: Option<String>,
    #[serde(default)]
    datasets: Vec<RunDataset>,
    #[serde(default)]
    params: serde_json::Value,
    #[serde(default)]
    candidate: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    gate: wasmops_api::Gate,
    #[serde(default)]
    validation: Option<wasmops_api::Validation>,
}

fn bad(message: impl Into<String>) -> CoordinatorError {
    CoordinatorError::BadRequest(message.into())
}

/// Checks `req` and queues it; answers the queued run.
pub async fn create(
    c: &Coordinator,
    who: &Principal,
    req: RunRequest,
) -> Result<Run, CoordinatorError> {
    wasmops_protocol::device::check_name("model", &req.model).map_err(|e| bad(e.to_string()))?;
    match &req.trainer {
        Trainer::Builtin { algorithm, params } => {
            if !BUILTIN_TRAINERS.contains(&algorithm.as_str()) {
                return Err(bad(format!(
                    "unknown built-in trainer `{algorithm}`: one of {}",
                    BUILTIN_TRAINERS.join(", ")
                )));
            }
            if !(params.is_null() || params.is_object()) {
                return Err(bad("trainer params must be a JSON object"));
            }
        }
        Trainer::Command { command, workdir } => {
            if command.trim().is_empty()
                || command.len() > MAX_COMMAND
                || command.contains(['\0', '\n', '\r'])
            {
                return Err(bad(format!(
                    "a trainer command is one line of 1-{MAX_COMMAND} characters"
                )));
            }
            if !command.contains("{out}") {
                return Err(bad(
                    "a trainer command must say where to write the model: {out}",
                ));
            }
            if workdir.as_ref().is_some_and(|w| w.contains('\0')) {
                return Err(bad("a trainer workdir may not hold NUL"));
            }
        }
    }
    let share = req.holdout_share.unwrap_or(0.2);
    if !(share > 0.0 && share <= 0.9) {
        return Err(bad("holdout_share must be in (0, 0.9]"));
    }
    let limit = req.time_limit_s.unwrap_or(DEFAULT_TIME_LIMIT_S);
    if limit == 0 || limit > MAX_TIME_LIMIT_S {
        return Err(bad(format!("time_limit_s must be 1-{MAX_TIME_LIMIT_S}")));
    }
    let g = &req.gate;
    let within = |x: f64, most: f64| x.is_finite() && (0.0..=most).contains(&x);
    if !within(g.margin, 1e6)
        || !within(g.max_difference, f64::MAX)
        || g.max_latency_p95_ms
            .is_some_and(|x| !(x.is_finite() && x > 0.0))
        || g.max_size_mb.is_some_and(|x| !(x.is_finite() && x > 0.0))
    {
        return Err(bad("gate: margin, max_difference ≥ 0; budgets > 0"));
    }
    if let Some(m) = &g.metric
        && !["accuracy", "auc", "log_loss", "mae", "rmse"].contains(&m.as_str())
    {
        return Err(bad(format!(
            "gate metric `{m}`: one of accuracy, auc, log_loss, mae, rmse"
        )));
    }
    if let Some(t) = &req.trigger
        && (t.is_empty() || t.len() > 200 || t.chars().any(char::is_control))
    {
        return Err(bad("a trigger is 1-200 printable characters"));
    }
    let train = datasets::resolve(c, &req.dataset).await?;
    let mut used = vec![RunDataset {
        role: "train".into(),
        name: train.name.clone(),
        version: train.version,
        sha256: train.sha256.clone(),
    }];
    if let Some(h) = &req.holdout {
        let holdout = datasets::resolve(c, h).await?;
        if holdout.label != train.label {
            return Err(bad(format!(
                "the holdout's label column is `{}`, the training data's `{}`",
                holdout.label, train.label
            )));
        }
        used.push(RunDataset {
            role: "holdout".into(),
            name: holdout.name,
            version: holdout.version,
            sha256: holdout.sha256,
        });
    }
    let id = format!("run-{}", crate::auth::random_hex(6)?);
    let detail = Detail {
        model: req.model.clone(),
        kind: req.kind,
        trainer: req.trainer,
        trigger: req.trigger.clone(),
        datasets: used,
        params: serde_json::json!({
            "holdout_share": share,
            "time_limit_s": limit,
            "label": train.label,
        }),
        candidate: None,
        error: None,
        gate: req.gate,
        validation: None,
    };
    let now = crate::now_ms();
    let mut tx = c.db.pool.begin().await?;
    // At most one unfinished run per model.
    let busy: Option<(String,)> = sqlx::query_as(
        "SELECT id FROM runs WHERE model = $1 AND status IN ('queued', 'running') LIMIT 1",
    )
    .bind(&req.model)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some((other,)) = busy {
        return Err(CoordinatorError::Conflict(format!(
            "run {other} of model {} is not finished yet: one run at a time per model",
            req.model
        )));
    }
    sqlx::query(
        "INSERT INTO runs (id, dataset_id, dataset_sha256, code_commit, metrics, first_seen, status, detail, logs, model)
         VALUES ($1, $2, $3, NULL, '{}', $4, 'queued', $5, '', $6)",
    )
    .bind(&id)
    .bind(&train.name)
    .bind(&train.sha256)
    .bind(now)
    .bind(serde_json::to_string(&detail).expect("detail serialises"))
    .bind(&req.model)
    .execute(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        &who.name,
        "run.create",
        &id,
        serde_json::json!({"model": req.model, "dataset": format!("{}@{}", train.name, train.version), "trigger": req.trigger}),
    )
    .await?;
    tx.commit().await?;
    tracing::info!("run {id} of {} queued", req.model);
    get(c, &id).await
}

/// id, dataset id, dataset sha256, code commit, metrics, first seen, status,
/// detail, worker, started, finished.
type RunRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

const COLUMNS: &str = "id, dataset_id, dataset_sha256, code_commit, metrics, first_seen, status, detail, worker, started_at, finished_at";

fn decode(row: RunRow) -> Run {
    let (
        id,
        dataset_id,
        dataset_sha256,
        code_commit,
        metrics,
        first_seen_ms,
        status,
        detail,
        worker,
        started,
        finished,
    ) = row;
    let detail: Option<Detail> = detail.and_then(|d| serde_json::from_str(&d).ok());
    let status = status
        .as_deref()
        .and_then(RunStatus::parse)
        .unwrap_or(RunStatus::External);
    let d = detail.map(|d| {
        (
            Some(d.model),
            Some(d.kind),
            Some(d.trainer),
            d.trigger,
            d.datasets,
            d.params,
            d.candidate,
            d.error,
            d.gate,
            d.validation,
        )
    });
    let (model, kind, trainer, trigger, datasets, params, candidate, error, gate, validation) = d
        .unwrap_or((
            None,
            None,
            None,
            None,
            vec![],
            serde_json::Value::Null,
            None,
            None,
            wasmops_api::Gate::default(),
            None,
        ));
    Run {
        id,
        dataset_id,
        dataset_sha256,
        code_commit,
        metrics: serde_json::from_str(&metrics).unwrap_or_default(),
        first_seen_ms,
        status,
        model,
        kind,
        trainer,
        trigger,
        datasets,
        params,
        worker,
        candidate,
        error,
        gate,
        validation,
        started_at_ms: started,
        finished_at_ms: finished,
    }
}

pub async fn get(c: &Coordinator, id: &str) -> Result<Run, CoordinatorError> {
    let row: Option<RunRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM runs WHERE id = $1"))
        .bind(id)
        .fetch_optional(&c.db.pool)
        .await?;
    row.map(decode)
        .ok_or_else(|| CoordinatorError::NotFound(format!("no run `{id}`")))
}

/// Every run (of `model`), oldest first.
/// Which runs a listing answers: the newest `limit` queued before `before_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: usize,
    pub before_ms: Option<i64>,
}

/// The newest runs of a page (of `model`), oldest first.
pub async fn list(
    c: &Coordinator,
    model: Option<&str>,
    page: Page,
) -> Result<Vec<Run>, CoordinatorError> {
    if page.limit == 0 || page.limit > wasmops_api::MAX_RUNS_PAGE {
        return Err(CoordinatorError::BadRequest(format!(
            "limit {}: between 1 and {} runs a page",
            page.limit,
            wasmops_api::MAX_RUNS_PAGE
        )));
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM runs WHERE ($1 IS NULL OR model = $1) AND first_seen < $2
         ORDER BY first_seen DESC, id DESC LIMIT $3"
    );
    let mut rows: Vec<RunRow> = sqlx::query_as(&sql)
        .bind(model)
        .bind(page.before_ms.unwrap_or(i64::MAX))
        .bind(page.limit as i64)
        .fetch_all(&c.db.read)
        .await?;
    rows.reverse();
    Ok(rows.into_iter().map(decode).collect())
}

pub async fn logs(c: &Coordinator, id: &str) -> Result<String, CoordinatorError> {
    let row: Option<(Option<String>,)> = sqlx::query_as("SELECT logs FROM runs WHERE id = $1")
        .bind(id)
        .fetch_optional(&c.db.pool)
        .await?;
    row.map(|(l,)| l.unwrap_or_default())
        .ok_or_else(|| CoordinatorError::NotFound(format!("no run `{id}`")))
}

fn check_worker(worker: &str) -> Result<(), CoordinatorError> {
    wasmops_protocol::device::check_name("worker", worker).map_err(|e| bad(e.to_string()))
}

/// Gives the oldest queued run to `worker` (after failing runs whose worker
/// went silent); `None` when nothing is queued.
pub async fn claim(c: &Coordinator, worker: &str) -> Result<Option<Run>, CoordinatorError> {
    check_worker(worker)?;
    expire(c).await?;
    for _ in 0..8 {
        let next: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM runs WHERE status = 'queued' ORDER BY first_seen, id LIMIT 1",
        )
        .fetch_optional(&c.db.pool)
        .await?;
        let Some((id,)) = next else { return Ok(None) };
        let now = crate::now_ms();
        let taken = sqlx::query(
            "UPDATE runs SET status = 'running', worker = $1, started_at = $2, lease_until = $3
             WHERE id = $4 AND status = 'queued'",
        )
        .bind(worker)
        .bind(now)
        .bind(now + RUN_LEASE_MS)
        .bind(&id)
        .execute(&c.db.pool)
        .await?;
        if taken.rows_affected() == 1 {
            let run = get(c, &id).await?;
            events::emit(
                c,
                "RunStarted",
                id.clone(),
                serde_json::json!({"model": run.model, "worker": worker, "trigger": run.trigger}),
            );
            return Ok(Some(run));
        }
        // Another worker took it first: look again.
    }
    Ok(None)
}

/// Renews `worker`'s lease on run `id` and appends `lines` to its log (the
/// oldest lines go first past [`MAX_RUN_LOG_BYTES`]). A run that is no longer
/// this worker's (cancelled, expired, another's) answers 409: stop working on it.
pub async fn progress(c: &Coordinator, id: &str, p: &RunProgress) -> Result<(), CoordinatorError> {
    check_worker(&p.worker)?;
    let mut tx = c.db.pool.begin().await?;
    let row: Option<(Option<String>, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT status, worker, logs FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let (status, holder, logs) =
        row.ok_or_else(|| CoordinatorError::NotFound(format!("no run `{id}`")))?;
    if status.as_deref() != Some("running") || holder.as_deref() != Some(p.worker.as_str()) {
        return Err(CoordinatorError::Conflict(format!(
            "run {id} is {} and not held by worker {}: stop",
            status.as_deref().unwrap_or("external"),
            p.worker
        )));
    }
    let mut logs = logs.unwrap_or_default();
    for line in &p.lines {
        let clean: String = line
            .chars()
            .map(|ch| {
                if ch.is_control() && ch != '\t' {
                    ' '
                } else {
                    ch
                }
            })
            .collect();
        logs.push_str(&clean);
        logs.push('\n');
    }
    if logs.len() > MAX_RUN_LOG_BYTES {
        let mut cut = logs.len() - MAX_RUN_LOG_BYTES * 3 / 4;
        while !logs.is_char_boundary(cut) {
            cut += 1;
        }
        logs = format!("[… earlier lines dropped …]\n{}", &logs[cut..]);
    }
    sqlx::query("UPDATE runs SET logs = $1, lease_until = $2 WHERE id = $3")
        .bind(&logs)
        .bind(crate::now_ms() + RUN_LEASE_MS)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Records the end of run `id` as its worker reports it.
pub async fn finish(c: &Coordinator, id: &str, r: RunResult) -> Result<Run, CoordinatorError> {
    check_worker(&r.worker)?;
    if !matches!(r.status, RunStatus::Succeeded | RunStatus::Failed) {
        return Err(bad("a run finishes as succeeded or failed"));
    }
    if !(r.metrics.is_null() || r.metrics.is_object()) {
        return Err(bad("metrics must be a JSON object"));
    }
    if serde_json::to_string(&r.metrics).map_or(0, |m| m.len()) > 64 * 1024 {
        return Err(bad("metrics over 64 KiB"));
    }
    let run = get(c, id).await?;
    if run.status != RunStatus::Running || run.worker.as_deref() != Some(r.worker.as_str()) {
        return Err(CoordinatorError::Conflict(format!(
            "run {id} is {} and not held by worker {}",
            run.status.as_str(),
            r.worker
        )));
    }
    let clip = |s: String| -> String {
        s.chars()
            .filter(|c| !c.is_control() || *c == '\n')
            .take(4000)
            .collect()
    };
    let error = r.error.map(clip);
    if r.status == RunStatus::Failed && error.is_none() {
        return Err(bad("a failed run says why: error"));
    }
    if let Some(v) = &r.validation
        && (v.checks.len() > 32 || serde_json::to_string(v).map_or(0, |j| j.len()) > 64 * 1024)
    {
        return Err(bad("validation: at most 32 checks, 64 KiB"));
    }
    let end = End {
        status: r.status,
        metrics: if r.metrics.is_null() {
            serde_json::json!({})
        } else {
            r.metrics
        },
        error,
        candidate: r.candidate.map(clip),
        code: r.code.map(clip),
        validation: r.validation,
    };
    settle(c, &run, end).await
}

/// Cancels a queued or running run (its worker's next heartbeat answers 409).
pub async fn cancel(c: &Coordinator, who: &Principal, id: &str) -> Result<Run, CoordinatorError> {
    let run = get(c, id).await?;
    if run.status.is_final() {
        return Err(CoordinatorError::Conflict(format!(
            "run {id} is already {}",
            run.status.as_str()
        )));
    }
    let mut tx = c.db.pool.begin().await?;
    audit::record(&mut tx, &who.name, "run.cancel", id, serde_json::json!({})).await?;
    tx.commit().await?;
    let end = End {
        status: RunStatus::Cancelled,
        ..End::failed(&run, format!("cancelled by {}", who.name))
    };
    settle(c, &run, end).await
}

/// Fails runs whose worker went silent, every few seconds (claims do it
/// too, but with no worker left nothing would claim).
pub async fn run_janitor(c: std::sync::Arc<Coordinator>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        if let Err(e) = expire(&c).await {
            tracing::warn!("run lease check failed: {e}");
        }
    }
}

/// Fails running runs whose worker has not reported within the lease.
pub async fn expire(c: &Coordinator) -> Result<usize, CoordinatorError> {
    let lost: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM runs WHERE status = 'running' AND lease_until < $1")
            .bind(crate::now_ms())
            .fetch_all(&c.db.pool)
            .await?;
    let mut n = 0;
    for (id,) in lost {
        let run = get(c, &id).await?;
        let why = format!(
            "worker {} stopped reporting (no heartbeat for {} s)",
            run.worker.as_deref().unwrap_or("?"),
            RUN_LEASE_MS / 1000
        );
        if lose(c, &run, why).await.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// At start-up: runs the previous process's in-process worker held are
/// over (that worker died with it), without waiting for their lease.
pub async fn recover(c: &Coordinator, worker: &str) -> Result<usize, CoordinatorError> {
    let held: Vec<(String,)> =
        sqlx::query_as("SELECT id FROM runs WHERE status = 'running' AND worker = $1")
            .bind(worker)
            .fetch_all(&c.db.pool)
            .await?;
    let mut n = 0;
    for (id,) in held {
        let run = get(c, &id).await?;
        let why = "the coordinator restarted during the run (its in-process worker with it)";
        if lose(c, &run, why.into()).await.is_ok() {
            n += 1;
        }
    }
    Ok(n)
}

/// Ends a run whose worker is gone: succeeded if its candidate was already
/// registered (the worker died before saying so: never half-registered),
/// else failed with `why`.
async fn lose(c: &Coordinator, run: &Run, why: String) -> Result<Run, CoordinatorError> {
    let registered: Option<(String,)> =
        sqlx::query_as("SELECT version FROM model_versions WHERE name = $1 AND training_run = $2")
            .bind(run.model.as_deref().unwrap_or_default())
            .bind(&run.id)
            .fetch_optional(&c.db.pool)
            .await?;
    match registered {
        Some((version,)) => {
            tracing::warn!("run {}: {why}, after registering {version}", run.id);
            let end = End {
                status: RunStatus::Succeeded,
                candidate: Some(version),
                error: None,
                ..End::failed(run, String::new())
            };
            settle(c, run, end).await
        }
        None => settle(c, run, End::failed(run, why)).await,
    }
}

/// How a run ends.
struct End {
    status: RunStatus,
    metrics: serde_json::Value,
    error: Option<String>,
    candidate: Option<String>,
    code: Option<String>,
    validation: Option<wasmops_api::Validation>,
}

impl End {
    fn failed(run: &Run, why: String) -> End {
        End {
            status: RunStatus::Failed,
            metrics: run.metrics.clone(),
            error: Some(why),
            candidate: None,
            code: None,
            validation: None,
        }
    }
}

/// Writes a final status once (a conditional update: the first end wins) and
/// tells the world.
async fn settle(c: &Coordinator, run: &Run, end: End) -> Result<Run, CoordinatorError> {
    let End {
        status,
        metrics,
        error,
        candidate,
        code,
        validation,
    } = end;
    let detail = Detail {
        model: run.model.clone().unwrap_or_default(),
        kind: run.kind.unwrap_or(RunKind::Train),
        trainer: run.trainer.clone().unwrap_or(Trainer::Builtin {
            algorithm: String::new(),
            params: serde_json::Value::Null,
        }),
        trigger: run.trigger.clone(),
        datasets: run.datasets.clone(),
        params: run.params.clone(),
        candidate: candidate.clone(),
        error: error.clone(),
        gate: run.gate.clone(),
        validation: validation.clone(),
    };
    let done = sqlx::query(
        "UPDATE runs SET status = $1, metrics = $2, detail = $3, code_commit = COALESCE($4, code_commit), finished_at = $5, lease_until = NULL
         WHERE id = $6 AND status IN ('queued', 'running')",
    )
    .bind(status.as_str())
    .bind(metrics.to_string())
    .bind(serde_json::to_string(&detail).expect("detail serialises"))
    .bind(code)
    .bind(crate::now_ms())
    .bind(&run.id)
    .execute(&c.db.pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(CoordinatorError::Conflict(format!(
            "run {} ended already",
            run.id
        )));
    }
    if let Some(v) = validation.as_ref().filter(|v| !v.passed) {
        let failed: Vec<&wasmops_api::Check> = v.checks.iter().filter(|c| !c.passed).collect();
        events::emit(
            c,
            "ValidationFailed",
            run.id.clone(),
            serde_json::json!({"model": run.model, "champion": v.champion, "failed": failed}),
        );
    }
    let kind = match status {
        RunStatus::Succeeded => "RunCompleted",
        _ => "RunFailed",
    };
    events::emit(
        c,
        kind,
        run.id.clone(),
        serde_json::json!({
            "model": run.model, "status": status.as_str(), "error": error,
            "candidate": candidate, "metrics": metrics,
        }),
    );
    tracing::info!("run {} {}", run.id, status.as_str());
    get(c, &run.id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Listings come a page at a time, newest page first, each oldest first;
    /// `before_ms` pages back, `model` filters, and a page size out of range
    /// is a client error.
    #[tokio::test]
    async fn runs_are_listed_a_page_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        for i in 1..=5i64 {
            sqlx::query("INSERT INTO runs (id, metrics, first_seen, model, status) VALUES ($1, '{}', $2, $3, 'queued')")
                .bind(format!("r{i}"))
                .bind(i * 1000)
                .bind(if i % 2 == 0 { "even" } else { "odd" })
                .execute(&c.db.pool)
                .await
                .unwrap();
        }
        let ids = |runs: Vec<Run>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let page = |limit, before_ms| Page { limit, before_ms };
        assert_eq!(
            ids(list(&c, None, page(2, None)).await.unwrap()),
            ["r4", "r5"]
        );
        assert_eq!(
            ids(list(&c, None, page(2, Some(4000))).await.unwrap()),
            ["r2", "r3"]
        );
        assert_eq!(
            ids(list(&c, Some("odd"), page(100, None)).await.unwrap()),
            ["r1", "r3", "r5"]
        );
        for limit in [0, wasmops_api::MAX_RUNS_PAGE + 1] {
            assert!(matches!(
                list(&c, None, page(limit, None)).await,
                Err(CoordinatorError::BadRequest(_))
            ));
        }
    }
}
