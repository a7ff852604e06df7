//! Rollouts: a model version over a label selector, as a state machine kept
//! in the database and advanced by one controller loop, so a restarted
//! coordinator carries on where it stopped.
//!
//! - **canary**: waves (cumulative percentages of the targets). Each wave's
//!   devices install the candidate provisionally (the rollback floor stays);
//!   when all report it active, the wave bakes, then its analysis gate reads
//!   live telemetry of the candidate (failure rate, latency quantile, a
//!   minimum number of predictions). A failed install, a timeout or a failing
//!   gate aborts: every started device goes back to the version it ran before.
//! - **blue-green**: every target stages the candidate beside the live model;
//!   when all are staged they switch together; the gate runs; rollback is a
//!   switch back to the kept slot.
//! - **shadow**: every target runs the candidate beside the live model on the
//!   same inputs for a while; only agreement and latency are gated and
//!   reported; the application's answers never come from the candidate.
//!
//! Success commits the rollback floor on the devices (canary, blue-green) or
//! removes the shadow. Pause, resume, approve (between waves when asked for)
//! and abort are API calls.
//!
//! Layout: [`machine`] decides (pure, unit-tested gates), [`controller`]
//! carries decisions out (database, MQTT, events); this module creates,
//! stores, steers and shows rollouts.

pub mod controller;
pub mod machine;

use std::collections::BTreeMap;

use sqlx::Row;
use wasmops_api::{
    FailedDevice, RolloutAction, RolloutRequest, RolloutState, RolloutSummary, RolloutView,
    Strategy, WavePhase, WaveView,
};
use wasmops_protocol::device::{ArtifactRef, Desired, InstallState, Mode};

use crate::auth::Principal;
use crate::error::CoordinatorError;
use crate::{Coordinator, audit, devices, events, registry};
use machine::TargetState;

pub use controller::run_controller;

/// A rollout as stored (one row of `rollouts`).
pub(crate) struct Rollout {
    pub id: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub spec: RolloutRequest,
    pub state: RolloutState,
    pub reason: Option<String>,
    pub current_wave: i64,
    pub phase: WavePhase,
    pub wave_started_at: Option<i64>,
    pub wave_ready_at: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The spec's probe sample as the artifact devices fetch: hashed when a
    /// desired state is first built, not on every load (a controller tick).
    probe: std::sync::OnceLock<Option<ArtifactRef>>,
}

const SELECT: &str = "SELECT id, model, version, sha256, size_bytes, spec, state, reason, current_wave, wave_phase, wave_started_at, wave_ready_at, created_by, created_at, updated_at FROM rollouts";

impl Rollout {
    fn from_row(r: &sqlx::any::AnyRow) -> Result<Rollout, CoordinatorError> {
        let id: String = r.try_get("id")?;
        let corrupt =
            |what: &str| CoordinatorError::Internal(format!("rollout {id} has a corrupt {what}"));
        let spec: RolloutRequest = serde_json::from_str(&r.try_get::<String, _>("spec")?)
            .map_err(|e| corrupt(&format!("spec ({e})")))?;
        let state = RolloutState::parse(&r.try_get::<String, _>("state")?)
            .ok_or_else(|| corrupt("state"))?;
        let phase = WavePhase::parse(&r.try_get::<String, _>("wave_phase")?)
            .ok_or_else(|| corrupt("phase"))?;
        Ok(Rollout {
            probe: Default::default(),
            model: r.try_get("model")?,
            version: r.try_get("version")?,
            sha256: r.try_get("sha256")?,
            size_bytes: r.try_get("size_bytes")?,
            spec,
            state,
            reason: r.try_get("reason")?,
            current_wave: r.try_get("current_wave")?,
            phase,
            wave_started_at: r.try_get("wave_started_at")?,
            wave_ready_at: r.try_get("wave_ready_at")?,
            created_by: r.try_get("created_by")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
            id,
        })
    }

    pub fn waves(&self) -> usize {
        if self.spec.strategy == Strategy::Canary {
            self.spec.waves.len()
        } else {
            1
        }
    }

    /// Whose telemetry the gates read: the live model's, or the shadow's.
    pub fn role(&self) -> &'static str {
        if self.spec.strategy == Strategy::Shadow {
            "shadow"
        } else {
            "live"
        }
    }

    /// The probe sample's artifact (stored when the rollout was created).
    pub fn probe(&self) -> Option<ArtifactRef> {
        self.probe
            .get_or_init(|| {
                let p = self.spec.probe.as_ref()?;
                match crate::artifacts::probe_artifact(p) {
                    Ok((r, _)) => Some(r),
                    Err(e) => {
                        tracing::error!("rollout {}: its probe sample is unusable: {e}", self.id);
                        None
                    }
                }
            })
            .clone()
    }

    pub fn desired(&self, mode: Mode, provisional: bool) -> Desired {
        Desired {
            deployment: self.id.clone(),
            model: self.model.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            size_bytes: self.size_bytes as u64,
            probe: None,
            probe_artifact: self.probe(),
            mode,
            provisional,
        }
    }
}

pub(crate) async fn load(c: &Coordinator, id: &str) -> Result<Rollout, CoordinatorError> {
    let row = sqlx::query(&format!("{SELECT} WHERE id = $1"))
        .bind(id)
        .fetch_optional(&c.db.pool)
        .await?;
    Rollout::from_row(&row.ok_or_else(|| CoordinatorError::NotFound(format!("no rollout `{id}`")))?)
}

/// One target of a rollout, as stored in `rollout_devices`.
pub(crate) struct TargetRow {
    pub device: String,
    pub wave: i64,
    pub state: TargetState,
    pub error: Option<String>,
    pub previous_model: Option<String>,
    pub previous_version: Option<String>,
    /// Its presence is `offline`.
    pub offline: bool,
    /// Its part of the rollout's end (rollback or commit) is done.
    pub settled: bool,
}

/// device, wave, state, error, previous model, previous version, presence, settled at.
type TargetRecord = (
    String,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

pub(crate) async fn targets(c: &Coordinator, id: &str) -> Result<Vec<TargetRow>, CoordinatorError> {
    let rows: Vec<TargetRecord> = sqlx::query_as(
        "SELECT r.device, r.wave, r.state, r.error, r.previous_model, r.previous_version, d.state, r.settled_at FROM rollout_devices r LEFT JOIN devices d ON d.id = r.device
         WHERE r.rollout = $1 ORDER BY r.wave, r.device",
    )
    .bind(id)
    .fetch_all(&c.db.pool)
    .await?;
    rows.into_iter()
        .map(
            |(device, wave, state, error, previous_model, previous_version, presence, settled)| {
                let state = TargetState::parse(&state).ok_or_else(|| {
                    CoordinatorError::Internal(format!(
                        "rollout {id}: device {device} has an unknown state `{state}`"
                    ))
                })?;
                Ok(TargetRow {
                    device,
                    wave,
                    state,
                    error,
                    previous_model,
                    previous_version,
                    offline: presence.as_deref() == Some("offline"),
                    settled: settled.is_some(),
                })
            },
        )
        .collect()
}

pub(crate) async fn set_state(
    c: &Coordinator,
    id: &str,
    state: RolloutState,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE rollouts SET state = $1, reason = COALESCE($2, reason), updated_at = $3 WHERE id = $4").bind(state.as_str()).bind(reason).bind(crate::now_ms()).bind(id).execute(&c.db.pool).await?;
    Ok(())
}

/// Wave `i` of `n` targets for cumulative percentages `waves`: index range.
fn wave_bounds(waves: &[u32], n: usize, i: usize) -> std::ops::Range<usize> {
    let end = |p: u32| ((p as usize * n).div_ceil(100)).min(n);
    let start = if i == 0 { 0 } else { end(waves[i - 1]) };
    start..end(waves[i]).max(start)
}

/// Checks a request and fills in what it leaves implicit (the last wave at 100 %).
fn normalise(req: &mut RolloutRequest) -> Result<(), CoordinatorError> {
    let bad = |m: String| Err(CoordinatorError::BadRequest(m));
    if req.strategy == Strategy::Canary {
        if req.waves.is_empty()
            || req.waves.iter().any(|p| *p == 0 || *p > 100)
            || req.waves.windows(2).any(|w| w[0] >= w[1])
        {
            return bad(format!(
                "waves must be increasing percentages in 1..=100, got {:?}",
                req.waves
            ));
        }
        if *req.waves.last().expect("non-empty") != 100 {
            req.waves.push(100);
        }
    } else {
        req.waves = vec![100];
    }
    let g = &req.gates;
    let fraction = |x: f64| (0.0..=1.0).contains(&x);
    if !fraction(g.max_failure_rate)
        || !fraction(g.latency_quantile)
        || g.min_agreement.is_some_and(|a| !fraction(a))
        || g.max_prediction_drift.is_some_and(|d| !fraction(d))
    {
        return bad(
            "failure rate, latency quantile, agreement and prediction drift are fractions in 0..=1"
                .into(),
        );
    }
    if g.max_latency_ms
        .is_some_and(|ms| !(ms.is_finite() && ms >= 0.0))
    {
        return bad("max_latency_ms must be a finite, non-negative number".into());
    }
    Ok(())
}

pub async fn create(
    c: &Coordinator,
    who: &Principal,
    mut req: RolloutRequest,
) -> Result<RolloutView, CoordinatorError> {
    normalise(&mut req)?;
    let v = registry::resolve(c, &req.model, &req.version).await?;
    crate::trust::check_deployable(c, &v.name, &v.version, &v.sha256).await?;
    // Stored before the rollout exists: every publish refers to it.
    crate::artifacts::store_probe(c, req.probe.as_ref()).await?;
    req.version = v.version.clone();
    let known = devices::list(c).await?;
    let targets = devices::select_targets(&known, &req.devices, &req.selector)?;
    devices::refuse_if_held(c, &targets).await?;
    let id = format!("ro-{}-{}", crate::now_ms(), crate::auth::random_hex(6)?);
    // A stable pseudo-random order, so wave 1 is not always the same devices.
    let mut ordered: Vec<(String, &wasmops_api::Device)> = targets
        .iter()
        .map(|d| {
            let dev = known
                .iter()
                .find(|k| &k.id == d)
                .expect("targets are known devices");
            (
                wasmops_trust::sha256_hex(format!("{id}/{d}").as_bytes()),
                dev,
            )
        })
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    if req.strategy == Strategy::Shadow
        && let Some((_, d)) = ordered.iter().find(|(_, d)| d.active_model.is_none())
    {
        return Err(CoordinatorError::BadRequest(format!(
            "device {} runs no model: a shadow needs a live model beside it",
            d.id
        )));
    }
    let now = crate::now_ms();
    let mut tx = c.db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO rollouts (id, model, version, sha256, size_bytes, strategy, spec, state, reason, current_wave, wave_phase, wave_started_at, wave_ready_at, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, 0, $9, NULL, NULL, $10, $11, $11)",
    )
    .bind(&id)
    .bind(&v.name)
    .bind(&v.version)
    .bind(&v.sha256)
    .bind(v.size_bytes)
    .bind(req.strategy.as_str())
    .bind(serde_json::to_string(&req).expect("spec serialises"))
    .bind(RolloutState::Running.as_str())
    .bind(WavePhase::Pending.as_str())
    .bind(&who.name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for w in 0..req.waves.len() {
        for (_, d) in &ordered[wave_bounds(&req.waves, ordered.len(), w)] {
            sqlx::query("INSERT INTO rollout_devices (rollout, device, wave, state, error, previous_model, previous_version, updated_at) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7)")
                .bind(&id)
                .bind(&d.id)
                .bind(w as i64)
                .bind(TargetState::Pending.as_str())
                .bind(d.active_model.clone())
                .bind(d.active_version.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
    }
    audit::record(&mut tx, &who.name, "rollout.create", &format!("{}@{}", v.name, v.version), serde_json::json!({"id": id, "strategy": req.strategy, "devices": targets.len(), "waves": req.waves})).await?;
    tx.commit().await?;
    events::emit(
        c,
        "RolloutStarted",
        id.clone(),
        serde_json::json!({"model": v.name, "version": v.version, "strategy": req.strategy, "devices": targets.len(), "waves": req.waves, "by": who.name}),
    );
    view(c, &id).await
}

/// Pause, resume, approve or abort, where the rollout's state allows it.
pub async fn act(
    c: &Coordinator,
    who: &Principal,
    id: &str,
    action: RolloutAction,
) -> Result<RolloutView, CoordinatorError> {
    let _one_writer = c.rollout_lock.lock().await;
    let r = load(c, id).await?;
    let next = match (action, r.state) {
        (RolloutAction::Pause, RolloutState::Running) => Some(RolloutState::Paused),
        (RolloutAction::Resume, RolloutState::Paused)
        | (RolloutAction::Approve, RolloutState::WaitingApproval) => Some(RolloutState::Running),
        (RolloutAction::Abort, s) if s.is_deciding() => None,
        _ => {
            return Err(CoordinatorError::Conflict(format!(
                "rollout {id} is {}: cannot {}",
                r.state.as_str(),
                action.as_str()
            )));
        }
    };
    match next {
        Some(state) => set_state(c, id, state, None).await?,
        None => controller::abort(c, &r, &format!("aborted by {}", who.name)).await?,
    }
    let mut tx = c.db.pool.begin().await?;
    audit::record(
        &mut tx,
        &who.name,
        &format!("rollout.{}", action.as_str()),
        id,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    view(c, id).await
}

/// A device's status report for rollout `id` (ignored once the rollout has ended).
/// Returns whether the device's row changed.
pub async fn record_status(
    c: &Coordinator,
    id: &str,
    device: &str,
    state: InstallState,
    version: Option<&str>,
    error: Option<&str>,
) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE rollout_devices SET state = $1, error = $2, updated_at = $3 WHERE rollout = $4 AND device = $5 AND state <> $1
         AND EXISTS (SELECT 1 FROM rollouts WHERE id = $4 AND version = $6 AND state IN ($7, $8, $9))",
        // Only while deciding: an ending rollout's rows record its end.
    )
    .bind(state.as_str())
    .bind(error)
    .bind(crate::now_ms())
    .bind(id)
    .bind(device)
    .bind(version.unwrap_or_default())
    .bind(RolloutState::Running.as_str())
    .bind(RolloutState::Paused.as_str())
    .bind(RolloutState::WaitingApproval.as_str())
    .execute(&c.db.pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

pub async fn list(c: &Coordinator) -> Result<Vec<RolloutSummary>, CoordinatorError> {
    let rows = sqlx::query(&format!("{SELECT} ORDER BY created_at DESC"))
        .fetch_all(&c.db.read)
        .await?;
    let mut out = vec![];
    for row in &rows {
        let r = Rollout::from_row(row)?;
        out.push(RolloutSummary {
            waves: r.waves() as u32,
            wave: r.current_wave as u32 + 1,
            id: r.id,
            model: r.model,
            version: r.version,
            strategy: r.spec.strategy,
            state: r.state,
            reason: r.reason,
            created_by: r.created_by,
            created_at_ms: r.created_at,
        });
    }
    Ok(out)
}

/// Everything about one rollout: state, each wave's devices, candidate telemetry.
pub async fn view(c: &Coordinator, id: &str) -> Result<RolloutView, CoordinatorError> {
    let r = load(c, id).await?;
    let all = targets(c, id).await?;
    let wave_detail = (0..r.waves())
        .map(|w| {
            let ds: Vec<&TargetRow> = all.iter().filter(|d| d.wave == w as i64).collect();
            let mut states: BTreeMap<String, usize> = BTreeMap::new();
            for d in &ds {
                *states.entry(d.state.as_str().to_string()).or_default() += 1;
            }
            WaveView {
                wave: w as u32 + 1,
                percent: r.spec.waves.get(w).copied(),
                devices: ds.len(),
                states,
            }
        })
        .collect();
    let t =
        crate::telemetry::aggregate(c, &r.model, &r.version, r.role(), None, r.created_at).await?;
    let failed = all
        .iter()
        .filter(|d| d.error.is_some() && d.state == TargetState::Reported(InstallState::Failed))
        .map(|d| FailedDevice {
            device: d.device.clone(),
            error: d.error.clone(),
        })
        .collect();
    let ready = all
        .iter()
        .filter(|d| {
            matches!(
                d.state,
                TargetState::Reported(InstallState::Active | InstallState::Shadow)
            )
        })
        .count();
    Ok(RolloutView {
        waves: r.waves() as u32,
        wave: r.current_wave as u32 + 1,
        targets: all.len(),
        ready,
        wave_detail,
        failed,
        telemetry: t.summary,
        id: r.id,
        model: r.model,
        version: r.version,
        sha256: r.sha256,
        strategy: r.spec.strategy,
        state: r.state,
        reason: r.reason,
        phase: r.phase,
        spec: r.spec,
        created_by: r.created_by,
        created_at_ms: r.created_at,
        updated_at_ms: r.updated_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waves_cover_every_target_once() {
        for n in [1, 2, 7, 50, 1000] {
            let waves = [10, 50, 100];
            let ranges: Vec<_> = (0..3).map(|i| wave_bounds(&waves, n, i)).collect();
            assert_eq!(ranges[0].start, 0);
            assert_eq!(ranges[2].end, n);
            assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
        }
        assert_eq!(wave_bounds(&[10, 50, 100], 50, 0), 0..5);
        assert_eq!(wave_bounds(&[10, 50, 100], 50, 1), 5..25);
    }

    #[test]
    fn requests_are_checked_and_completed() {
        let mut r = RolloutRequest {
            waves: vec![10, 50],
            ..RolloutRequest::new("m", "1")
        };
        normalise(&mut r).unwrap();
        assert_eq!(r.waves, vec![10, 50, 100], "the last wave takes everyone");
        for waves in [vec![], vec![0, 50], vec![50, 50], vec![60, 40], vec![101]] {
            assert!(
                normalise(&mut RolloutRequest {
                    waves,
                    ..RolloutRequest::new("m", "1")
                })
                .is_err()
            );
        }
        let mut shadow = RolloutRequest {
            strategy: Strategy::Shadow,
            waves: vec![5, 7],
            ..RolloutRequest::new("m", "1")
        };
        normalise(&mut shadow).unwrap();
        assert_eq!(shadow.waves, vec![100], "one wave unless canary");
        let mut bad = RolloutRequest::new("m", "1");
        bad.gates.max_failure_rate = 1.5;
        assert!(normalise(&mut bad).is_err());
        bad.gates.max_failure_rate = 0.0;
        bad.gates.max_latency_ms = Some(f64::NAN);
        assert!(normalise(&mut bad).is_err());
    }
}
