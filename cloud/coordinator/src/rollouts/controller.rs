//! The rollout controller: twice a second it reads every running rollout,
//! asks [`machine`](super::machine) what to do, and does it: publishes
//! desired states, moves the wave along, rolls back or commits.

use std::collections::BTreeMap;

use wasmops_api::{RolloutState, Strategy, WavePhase};
use wasmops_protocol::device::{Desired, Mode};

use super::machine::{self, Decision, Measured, Snapshot, TargetState, WaveDevice};
use super::{Rollout, TargetRow, load, set_state, targets};
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
        let ids: Vec<(String,)> =
            match sqlx::query_as("SELECT id FROM rollouts WHERE state = $1 ORDER BY created_at")
                .bind(RolloutState::Running.as_str())
                .fetch_all(&c.db.pool)
                .await
            {
                Ok(ids) => ids,
                Err(e) => {
                    tracing::error!("rollout controller: {e}");
                    continue;
                }
            };
        for (id,) in ids {
            let result = match load(&c, &id).await {
                Ok(r) => step(&c, &r).await,
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
        let t = crate::telemetry::aggregate(
            c,
            &r.model,
            &r.version,
            r.role(),
            Some(&on_candidate),
            r.wave_started_at.unwrap_or(r.created_at),
        )
        .await?;
        decision = machine::judge(
            &snapshot,
            &Measured {
                predictions: t.summary.predictions,
                errors: t.summary.errors,
                latency: t.stats.latency.clone(),
                agreement: t.summary.agreement,
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
            if let Decision::NextWave { wait_for_approval } = decision {
                set_phase(c, &r.id, r.current_wave + 1, WavePhase::Pending, None, None).await?;
                if wait_for_approval {
                    set_state(c, &r.id, RolloutState::WaitingApproval, None).await?;
                }
            } else {
                finish(c, r, &all).await?;
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
    probe: Option<serde_json::Value>,
    resolved: BTreeMap<(String, String), Desired>,
}

impl PreviousVersions {
    fn new(deployment: String, probe: Option<serde_json::Value>) -> Self {
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
                probe: self.probe.clone(),
                mode: Mode::Active,
                provisional: false,
            };
            self.resolved.insert(key.clone(), desired);
        }
        Ok(self.resolved.get(&key).cloned())
    }
}

/// Sends every started device back to what it ran before, and ends the rollout.
pub(crate) async fn abort(
    c: &Coordinator,
    r: &Rollout,
    reason: &str,
) -> Result<(), CoordinatorError> {
    tracing::warn!("rollout {} aborted: {reason}", r.id);
    // Terminal first: status reports from now on no longer move the rows.
    set_state(c, &r.id, RolloutState::Aborted, Some(reason)).await?;
    // The rollout's sample is the application's request: probe the way back with it too.
    let mut previous = PreviousVersions::new(format!("{}/rollback", r.id), r.spec.probe.clone());
    let mut rolled_back = vec![];
    for d in targets(c, &r.id).await? {
        if d.wave > r.current_wave || d.state == TargetState::Pending {
            continue; // never asked to install
        }
        // Nothing ran before: withdraw the desired state (the device keeps what it has).
        let desired = previous.get(c, &d).await?;
        publish_desired(c, &d.device, desired.as_ref()).await?;
        rolled_back.push(d.device);
    }
    sqlx::query(
        "UPDATE rollout_devices SET state = $1, updated_at = $2 WHERE rollout = $3 AND state <> $4",
    )
    .bind(TargetState::RolledBack.as_str())
    .bind(crate::now_ms())
    .bind(&r.id)
    .bind(TargetState::Pending.as_str())
    .execute(&c.db.pool)
    .await?;
    events::emit(
        c,
        "RolloutAborted",
        r.id.clone(),
        serde_json::json!({"model": r.model, "version": r.version, "reason": reason, "wave": r.current_wave, "rolled_back": rolled_back}),
    );
    Ok(())
}

/// Success: commit the floor on every device (or remove the shadow).
async fn finish(c: &Coordinator, r: &Rollout, all: &[TargetRow]) -> Result<(), CoordinatorError> {
    set_state(c, &r.id, RolloutState::Succeeded, None).await?;
    if r.spec.strategy == Strategy::Shadow {
        let mut previous = PreviousVersions::new(format!("{}/end", r.id), None);
        for d in all {
            if let Some(desired) = previous.get(c, d).await? {
                publish_desired(c, &d.device, Some(&desired)).await?;
            }
        }
    } else {
        let commit = r.desired(Mode::Active, false);
        for d in all {
            publish_desired(c, &d.device, Some(&commit)).await?;
        }
    }
    events::emit(
        c,
        "RolloutSucceeded",
        r.id.clone(),
        serde_json::json!({"model": r.model, "version": r.version, "strategy": r.spec.strategy, "devices": all.len()}),
    );
    Ok(())
}
