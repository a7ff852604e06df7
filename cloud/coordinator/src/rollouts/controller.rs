//! The rollout controller: twice a second it reads every running rollout,
//! asks [`machine`](super::machine) what to do, and does it: publishes
//! desired states, moves the wave along, rolls back or commits.
//!
//! Ending is crash-safe: the intent (`aborting`, `finishing`) is recorded in
//! one statement first, then each device's end state is published and the
//! device marked settled; a publish error leaves the rest for the next tick,
//! and a restarted coordinator resumes ending rollouts like running ones.
//! The final state (`aborted`, `succeeded`) and its event come once, when
//! every device is settled.

use std::collections::BTreeMap;

use wasmops_api::{RolloutState, Strategy, WavePhase};
use wasmops_protocol::device::{ArtifactRef, Desired, Mode};

use super::machine::{self, Decision, Measured, Snapshot, TargetState, WaveDevice};
use super::{Rollout, TargetRow, load, targets};
use crate::bus::publish_desired;
use crate::error::CoordinatorError;
use crate::{Coordinator, events, registry};

/// Advances every running rollout twice a second. Never returns.
pub async fn run_controller(c: std::sync::Arc<Coordinator>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        if c.bus.get().is_none() {
            continue;
        }
        let _one_writer = c.rollout_lock.lock().await;
        let ids: Vec<(String,)> = match sqlx::query_as(
            "SELECT id FROM rollouts WHERE state IN ($1, $2, $3) ORDER BY created_at",
        )
        .bind(RolloutState::Running.as_str())
        .bind(RolloutState::Aborting.as_str())
        .bind(RolloutState::Finishing.as_str())
        .fetch_all(&c.db.pool)
        .await
        {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!("rollout controller: {e}");
                continue;
            }
        };
        let running: Vec<String> = ids.iter().map(|(id,)| id.clone()).collect();
        c.tallies.keep_only(&running).await;
        for (id,) in ids {
            let result = match load(&c, &id).await {
                Ok(r) if r.state == RolloutState::Running => step(&c, &r).await,
                Ok(r) => settle(&c, &r).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                tracing::error!("rollout {id}: {e}");
            }
        }
    }
}

async fn set_phase(
    c: &Coordinator,
    id: &str,
    wave: i64,
    phase: WavePhase,
    started: Option<i64>,
    ready: Option<i64>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE rollouts SET current_wave = $1, wave_phase = $2, wave_started_at = $3, wave_ready_at = $4, updated_at = $5 WHERE id = $6")
        .bind(wave)
        .bind(phase.as_str())
        .bind(started)
        .bind(ready)
        .bind(crate::now_ms())
        .bind(id)
        .execute(&c.db.pool)
        .await?;
    Ok(())
}

/// Advances one running rollout by at most one step.
async fn step(c: &Coordinator, r: &Rollout) -> Result<(), CoordinatorError> {
    let now = crate::now_ms();
    let all = targets(c, &r.id).await?;
    let wave: Vec<WaveDevice> = all
        .iter()
        .filter(|d| d.wave == r.current_wave)
        .map(|d| WaveDevice {
            id: d.device.clone(),
            state: d.state,
            error: d.error.clone(),
            offline: d.offline,
        })
        .collect();
    let snapshot = Snapshot {
        strategy: r.spec.strategy,
        gates: &r.spec.gates,
        manual_approval: r.spec.manual_approval,
        max_unavailable: r.spec.max_unavailable,
        max_failed: r.spec.max_failed,
        waves: r.waves(),
        current_wave: r.current_wave as usize,
        phase: r.phase,
        now_ms: now,
        wave_started_at: r.wave_started_at,
        wave_ready_at: r.wave_ready_at,
        wave: &wave,
    };
    let on_candidate: Vec<String> = all
        .iter()
        .filter(|d| d.wave <= r.current_wave)
        .map(|d| d.device.clone())
        .collect();
    let mut decision = machine::advance(&snapshot);
    let mut measured = None;
    if decision == Decision::Measure {
        let question = crate::telemetry::Tally::new(
            &r.model,
            &r.version,
            r.role(),
            Some(on_candidate.clone()),
            r.wave_started_at.unwrap_or(r.created_at),
        );
        let t = c.tallies.read(c, &r.id, question).await?;
        let prediction_drift = match r.spec.gates.max_prediction_drift {
            Some(_) => {
                prediction_drift(
                    c,
                    &r.model,
                    &r.version,
                    r.wave_started_at.unwrap_or(r.created_at),
                    now,
                )
                .await?
            }
            None => None,
        };
        decision = machine::judge(
            &snapshot,
            &Measured {
                predictions: t.summary.predictions,
                errors: t.summary.errors,
                latency: t.stats.latency.clone(),
                agreement: t.summary.agreement,
                prediction_drift,
            },
        );
        measured = Some(t);
    }
    match decision {
        Decision::Wait | Decision::Measure => {}
        Decision::Install { mode, phase } => {
            let desired = r.desired(mode, true);
            for d in &wave {
                publish_desired(c, &d.id, Some(&desired)).await?;
            }
            sqlx::query("UPDATE rollout_devices SET state = $1, updated_at = $2 WHERE rollout = $3 AND wave = $4 AND state = $5")
                .bind(TargetState::Installing.as_str())
                .bind(now)
                .bind(&r.id)
                .bind(r.current_wave)
                .bind(TargetState::Pending.as_str())
                .execute(&c.db.pool)
                .await?;
            set_phase(c, &r.id, r.current_wave, phase, Some(now), None).await?;
        }
        Decision::Switch => {
            let desired = r.desired(Mode::Active, true);
            for d in &wave {
                publish_desired(c, &d.id, Some(&desired)).await?;
            }
            set_phase(
                c,
                &r.id,
                r.current_wave,
                WavePhase::Switching,
                Some(now),
                None,
            )
            .await?;
        }
        Decision::Bake => {
            set_phase(
                c,
                &r.id,
                r.current_wave,
                WavePhase::Baking,
                r.wave_started_at,
                Some(now),
            )
            .await?
        }
        Decision::NextWave { .. } | Decision::Succeed => {
            let t = measured.expect("a gate decision follows a measurement");
            events::emit(
                c,
                "WaveCompleted",
                r.id.clone(),
                serde_json::json!({"model": r.model, "version": r.version, "wave": r.current_wave + 1, "of": r.waves(), "devices": on_candidate.len(), "predictions": t.summary.predictions, "failure_rate": t.summary.failure_rate, "p95_ms": t.summary.p95_ms, "agreement": t.summary.agreement}),
            );
            match decision {
                Decision::NextWave { wait_for_approval } => {
                    let state = if wait_for_approval {
                        RolloutState::WaitingApproval
                    } else {
                        RolloutState::Running
                    };
                    // One statement: a crash cannot leave the next wave
                    // started without the approval it waits for.
                    sqlx::query("UPDATE rollouts SET current_wave = $1, wave_phase = $2, wave_started_at = NULL, wave_ready_at = NULL, state = $3, updated_at = $4 WHERE id = $5")
                        .bind(r.current_wave + 1)
                        .bind(WavePhase::Pending.as_str())
                        .bind(state.as_str())
                        .bind(now)
                        .bind(&r.id)
                        .execute(&c.db.pool)
                        .await?;
                }
                _ => {
                    end(c, &r.id, RolloutState::Finishing, None).await?;
                    settle(c, &load(c, &r.id).await?).await?;
                }
            }
        }
        Decision::Abort(reason) => abort(c, r, &reason).await?,
    }
    Ok(())
}

/// Desired states that put devices back on the version they ran before a
/// rollout, resolved once per version.
struct PreviousVersions {
    deployment: String,
    probe: Option<ArtifactRef>,
    resolved: BTreeMap<(String, String), Desired>,
}

impl PreviousVersions {
    fn new(deployment: String, probe: Option<ArtifactRef>) -> Self {
        PreviousVersions {
            deployment,
            probe,
            resolved: BTreeMap::new(),
        }
    }

    /// `None` when the device ran nothing before.
    async fn get(
        &mut self,
        c: &Coordinator,
        d: &TargetRow,
    ) -> Result<Option<Desired>, CoordinatorError> {
        let (Some(model), Some(version)) = (d.previous_model.clone(), d.previous_version.clone())
        else {
            return Ok(None);
        };
        let key = (model.clone(), version.clone());
        if !self.resolved.contains_key(&key) {
            let v = registry::resolve(c, &model, &version).await?;
            let desired = Desired {
                deployment: self.deployment.clone(),
                model,
                version,
                sha256: v.sha256,
                size_bytes: v.size_bytes as u64,
                probe: None,
                probe_artifact: self.probe.clone(),
                mode: Mode::Active,
                provisional: false,
            };
            self.resolved.insert(key.clone(), desired);
        }
        Ok(self.resolved.get(&key).cloned())
    }
}

/// Records the intent to abort (only from a deciding state) and carries it
/// out: every started device goes back to what it ran before. Once the
/// intent is recorded the abort stands: what could not be done yet is left
/// to the controller's next tick (the rollout shows `aborting` meanwhile).
pub(crate) async fn abort(
    c: &Coordinator,
    r: &Rollout,
    reason: &str,
) -> Result<(), CoordinatorError> {
    tracing::warn!("rollout {} aborted: {reason}", r.id);
    end(c, &r.id, RolloutState::Aborting, Some(reason)).await?;
    if let Err(e) = settle(c, &load(c, &r.id).await?).await {
        tracing::warn!("rollout {}: abort continues on the next tick: {e}", r.id);
    }
    Ok(())
}

/// Moves a deciding rollout to `ending` (`aborting` or `finishing`) in one
/// statement; from then on device reports no longer move its rows.
async fn end(
    c: &Coordinator,
    id: &str,
    ending: RolloutState,
    reason: Option<&str>,
) -> Result<(), CoordinatorError> {
    let deciding: Vec<&str> = RolloutState::ALL
        .into_iter()
        .filter(|s| s.is_deciding())
        .map(RolloutState::as_str)
        .collect();
    let moved = sqlx::query("UPDATE rollouts SET state = $1, reason = COALESCE($2, reason), updated_at = $3 WHERE id = $4 AND state IN ($5, $6, $7)")
        .bind(ending.as_str())
        .bind(reason)
        .bind(crate::now_ms())
        .bind(id)
        .bind(deciding[0])
        .bind(deciding[1])
        .bind(deciding[2])
        .execute(&c.db.pool)
        .await?
        .rows_affected();
    if moved == 0 {
        return Err(CoordinatorError::Conflict(format!(
            "rollout {id} is no longer running: cannot make it {}",
            ending.as_str()
        )));
    }
    Ok(())
}

/// Carries out an ending rollout's end for every device not yet settled:
/// abort sends started devices back to their previous version (or withdraws
/// the desired state when they ran nothing); finishing commits the candidate
/// (or removes the shadow). A device is marked settled right after its
/// publish; the first error is returned after trying the others, and the
/// controller retries on its next tick. When all are settled the rollout
/// takes its final state and its event is emitted, once.
pub(crate) async fn settle(c: &Coordinator, r: &Rollout) -> Result<(), CoordinatorError> {
    let aborting = match r.state {
        RolloutState::Aborting => true,
        RolloutState::Finishing => false,
        _ => return Ok(()),
    };
    let all = targets(c, &r.id).await?;
    let mut previous = if aborting {
        // The rollout's sample is the application's request: probe the way back with it too.
        PreviousVersions::new(format!("{}/rollback", r.id), r.probe())
    } else {
        PreviousVersions::new(format!("{}/end", r.id), None)
    };
    let commit = r.desired(Mode::Active, false);
    let mut first_error = None;
    for d in all.iter().filter(|d| !d.settled) {
        if aborting && (d.wave > r.current_wave || d.state == TargetState::Pending) {
            continue; // never asked to install: nothing to undo
        }
        let outcome = async {
            // `None` from an abort withdraws the desired state (the device
            // ran nothing before and keeps what it has).
            let desired = match (aborting, r.spec.strategy) {
                (true, _) | (false, Strategy::Shadow) => previous.get(c, d).await?,
                (false, _) => Some(commit.clone()),
            };
            c.faults.hit("rollout-end").await?;
            if aborting || desired.is_some() {
                publish_desired(c, &d.device, desired.as_ref()).await?;
            }
            let state = if aborting {
                TargetState::RolledBack.as_str()
            } else {
                d.state.as_str()
            };
            sqlx::query("UPDATE rollout_devices SET state = $1, settled_at = $2, updated_at = $2 WHERE rollout = $3 AND device = $4")
                .bind(state)
                .bind(crate::now_ms())
                .bind(&r.id)
                .bind(&d.device)
                .execute(&c.db.pool)
                .await?;
            Ok::<(), CoordinatorError>(())
        }
        .await;
        if let Err(e) = outcome {
            tracing::warn!(
                "rollout {}: ending on {} failed (retried): {e}",
                r.id,
                d.device
            );
            first_error.get_or_insert(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let last = if aborting {
        RolloutState::Aborted
    } else {
        RolloutState::Succeeded
    };
    let ended =
        sqlx::query("UPDATE rollouts SET state = $1, updated_at = $2 WHERE id = $3 AND state = $4")
            .bind(last.as_str())
            .bind(crate::now_ms())
            .bind(&r.id)
            .bind(r.state.as_str())
            .execute(&c.db.pool)
            .await?
            .rows_affected();
    if ended == 1 {
        let settled = targets(c, &r.id).await?;
        if aborting {
            let rolled_back: Vec<&str> = settled
                .iter()
                .filter(|d| d.state == TargetState::RolledBack)
                .map(|d| d.device.as_str())
                .collect();
            events::emit(
                c,
                "RolloutAborted",
                r.id.clone(),
                serde_json::json!({"model": r.model, "version": r.version, "reason": r.reason, "wave": r.current_wave, "rolled_back": rolled_back}),
            );
        } else {
            if r.spec.strategy != Strategy::Shadow && r.spec.devices.is_empty() {
                // The selector's devices that join later converge to it.
                crate::groups::set(c, &r.spec.selector, &commit).await?;
            }
            events::emit(
                c,
                "RolloutSucceeded",
                r.id.clone(),
                serde_json::json!({"model": r.model, "version": r.version, "strategy": r.spec.strategy, "devices": settled.len()}),
            );
        }
    }
    Ok(())
}

/// The drift coefficient of `version`'s outputs since `since`: against the
/// previous version's in the same range, else against its training outputs
/// (the monitoring report's); `None` when nothing could be judged.
async fn prediction_drift(
    c: &Coordinator,
    model: &str,
    version: &str,
    since: i64,
    now: i64,
) -> Result<Option<(f64, String)>, CoordinatorError> {
    let q = crate::monitor::report::Query {
        model: model.into(),
        version: Some(version.into()),
        since_ms: since,
        until_ms: now.max(since + 1),
        selector: Default::default(),
    };
    let r = match crate::monitor::report::report(c, &q).await {
        Ok(r) => r,
        Err(CoordinatorError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(match r.prediction_drift_vs_previous {
        Some(p) => Some((p.drift.coefficient, format!("{model} {}", p.version))),
        None if !r.prediction_drift.columns.is_empty() => Some((
            r.prediction_drift.coefficient,
            format!("{model} {version}'s training outputs"),
        )),
        None => None,
    })
}
