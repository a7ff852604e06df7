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

use std::collections::BTreeMap;

use rumqttc::QoS;
use serde::{Deserialize, Serialize};
use wasmops_devices::agent::{Desired, Mode};
use wasmops_devices::topics;

use crate::auth::Principal;
use crate::registry::{self, RegistryError};
use crate::{Coordinator, audit, events};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Canary,
    BlueGreen,
    Shadow,
}

impl Strategy {
    fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
            Strategy::Shadow => "shadow",
        }
    }
}

/// When a wave passes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gates {
    /// Errors / predictions of the candidate, at most.
    pub max_failure_rate: f64,
    /// Latency at `latency_quantile` of the candidate, at most (ms).
    pub max_latency_ms: Option<f64>,
    pub latency_quantile: f64,
    /// Predictions needed before a gate decides.
    pub min_predictions: u64,
    /// Time the wave runs on the candidate before the gate decides (shadow: how long it shadows).
    pub bake_s: u64,
    /// Time a wave may take to install and gather `min_predictions`.
    pub timeout_s: u64,
    /// Shadow: share of predictions that must match the live model.
    pub min_agreement: Option<f64>,
}

impl Default for Gates {
    fn default() -> Self {
        Gates { max_failure_rate: 0.01, max_latency_ms: None, latency_quantile: 0.95, min_predictions: 10, bake_s: 10, timeout_s: 300, min_agreement: None }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutRequest {
    pub model: String,
    /// A version or an alias.
    pub version: String,
    #[serde(default)]
    pub selector: BTreeMap<String, String>,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default = "default_strategy")]
    pub strategy: Strategy,
    /// Cumulative percentages of the targets per wave (canary), e.g. [10, 50, 100].
    #[serde(default = "default_waves")]
    pub waves: Vec<u32>,
    #[serde(default)]
    pub gates: Gates,
    /// Sample for the devices' health probe: `{"inputs":[…]}`.
    #[serde(default)]
    pub probe: Option<serde_json::Value>,
    /// Wait for `approve` after each wave but the last.
    #[serde(default)]
    pub manual_approval: bool,
    /// Devices per wave that may be offline without holding the wave up; they
    /// get the retained desired state (and any rollback) when they return.
    #[serde(default)]
    pub max_unavailable: u32,
}

fn default_strategy() -> Strategy {
    Strategy::Canary
}

fn default_waves() -> Vec<u32> {
    vec![10, 50, 100]
}

/// A rollout as stored (one row of `rollouts`).
type Row = (String, String, String, String, i64, String, String, String, Option<String>, i64, String, Option<i64>, Option<i64>, String, i64, i64);

struct Rollout {
    id: String,
    model: String,
    version: String,
    sha256: String,
    size_bytes: i64,
    spec: RolloutRequest,
    state: String,
    reason: Option<String>,
    current_wave: i64,
    phase: String,
    wave_started_at: Option<i64>,
    wave_ready_at: Option<i64>,
    created_by: String,
    created_at: i64,
    updated_at: i64,
}

const SELECT: &str = "SELECT id, model, version, sha256, size_bytes, strategy, spec, state, reason, current_wave, wave_phase, wave_started_at, wave_ready_at, created_by, created_at, updated_at FROM rollouts";

impl Rollout {
    fn from_row(r: Row) -> Result<Rollout, RegistryError> {
        let spec: RolloutRequest = serde_json::from_str(&r.6).map_err(|e| RegistryError::BadRequest(format!("rollout {} has a corrupt spec: {e}", r.0)))?;
        Ok(Rollout {
            id: r.0,
            model: r.1,
            version: r.2,
            sha256: r.3,
            size_bytes: r.4,
            spec,
            state: r.7,
            reason: r.8,
            current_wave: r.9,
            phase: r.10,
            wave_started_at: r.11,
            wave_ready_at: r.12,
            created_by: r.13,
            created_at: r.14,
            updated_at: r.15,
        })
    }

    fn terminal(&self) -> bool {
        matches!(self.state.as_str(), "succeeded" | "aborted")
    }

    fn waves(&self) -> usize {
        if self.spec.strategy == Strategy::Canary { self.spec.waves.len() } else { 1 }
    }

    fn desired(&self, mode: Mode, provisional: bool) -> Desired {
        Desired {
            deployment: self.id.clone(),
            model: self.model.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            size_bytes: self.size_bytes as u64,
            probe: self.spec.probe.clone(),
            mode,
            provisional,
        }
    }
}

async fn load(c: &Coordinator, id: &str) -> Result<Rollout, RegistryError> {
    let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE id = $1")).bind(id).fetch_optional(&c.db.pool).await?;
    Rollout::from_row(row.ok_or_else(|| RegistryError::NotFound(format!("no rollout `{id}`")))?)
}

/// Wave `i` of `n` targets for cumulative percentages `waves`: index range.
fn wave_bounds(waves: &[u32], n: usize, i: usize) -> std::ops::Range<usize> {
    let end = |p: u32| ((p as usize * n).div_ceil(100)).min(n);
    let start = if i == 0 { 0 } else { end(waves[i - 1]) };
    start..end(waves[i]).max(start)
}

pub async fn create(c: &Coordinator, who: &Principal, mut req: RolloutRequest) -> Result<serde_json::Value, RegistryError> {
    let bad = |m: String| Err(RegistryError::BadRequest(m));
    if req.strategy == Strategy::Canary {
        if req.waves.is_empty() || req.waves.iter().any(|p| *p == 0 || *p > 100) || req.waves.windows(2).any(|w| w[0] >= w[1]) {
            return bad(format!("waves must be increasing percentages in 1..=100, got {:?}", req.waves));
        }
        if *req.waves.last().expect("non-empty") != 100 {
            req.waves.push(100);
        }
    } else {
        req.waves = vec![100];
    }
    let g = &req.gates;
    if !(0.0..=1.0).contains(&g.max_failure_rate) || !(0.0..=1.0).contains(&g.latency_quantile) || g.min_agreement.is_some_and(|a| !(0.0..=1.0).contains(&a)) {
        return bad("failure rate, latency quantile and agreement are fractions in 0..=1".into());
    }
    let v = registry::resolve(c, &req.model, &req.version).await?;
    req.version = v.version.clone();
    let known = crate::mqtt::devices(c).await?;
    let targets = crate::deployments::select_targets(&known, &req.devices, &req.selector)?;
    let mut id_raw = [0u8; 6];
    getrandom::fill(&mut id_raw).map_err(|e| RegistryError::BadRequest(format!("no randomness: {e}")))?;
    let id = format!("ro-{}-{}", crate::now_ms(), hex::encode(id_raw));
    // A stable pseudo-random order, so wave 1 is not always the same devices.
    let mut ordered: Vec<(String, &crate::mqtt::Device)> = targets
        .iter()
        .map(|d| {
            use sha2::Digest;
            let dev = known.iter().find(|k| &k.id == d).expect("targets are known devices");
            (hex::encode(sha2::Sha256::digest(format!("{id}/{d}"))), dev)
        })
        .collect();
    ordered.sort_by(|a, b| a.0.cmp(&b.0));
    if req.strategy == Strategy::Shadow {
        if let Some((_, d)) = ordered.iter().find(|(_, d)| d.active_model.is_none()) {
            return bad(format!("device {} runs no model: a shadow needs a live model beside it", d.id));
        }
    }
    let now = crate::now_ms();
    let mut tx = c.db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO rollouts (id, model, version, sha256, size_bytes, strategy, spec, state, reason, current_wave, wave_phase, wave_started_at, wave_ready_at, created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', NULL, 0, 'pending', NULL, NULL, $8, $9, $9)",
    )
    .bind(&id)
    .bind(&v.name)
    .bind(&v.version)
    .bind(&v.sha256)
    .bind(v.size_bytes)
    .bind(req.strategy.as_str())
    .bind(serde_json::to_string(&req).expect("spec serialises"))
    .bind(&who.name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for w in 0..req.waves.len() {
        for (_, d) in &ordered[wave_bounds(&req.waves, ordered.len(), w)] {
            sqlx::query("INSERT INTO rollout_devices (rollout, device, wave, state, error, previous_model, previous_version, updated_at) VALUES ($1, $2, $3, 'pending', NULL, $4, $5, $6)")
                .bind(&id)
                .bind(&d.id)
                .bind(w as i64)
                .bind(d.active_model.clone())
                .bind(d.active_version.clone())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
    }
    audit::record(&mut tx, &who.name, "rollout.create", &format!("{}@{}", v.name, v.version), serde_json::json!({"id": id, "strategy": req.strategy, "devices": targets.len(), "waves": req.waves})).await?;
    tx.commit().await?;
    events::emit(c, "RolloutStarted", id.clone(), serde_json::json!({"model": v.name, "version": v.version, "strategy": req.strategy, "devices": targets.len(), "waves": req.waves, "by": who.name}));
    view(c, &id).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Pause,
    Resume,
    Approve,
    Abort,
}

pub async fn act(c: &Coordinator, who: &Principal, id: &str, action: Action) -> Result<serde_json::Value, RegistryError> {
    let _one_writer = c.rollout_lock.lock().await;
    let r = load(c, id).await?;
    let conflict = |m: &str| Err(RegistryError::Conflict(format!("rollout {id} is {}: cannot {m}", r.state)));
    match action {
        Action::Pause if r.state == "running" => set_state(c, id, "paused", None).await?,
        Action::Resume if r.state == "paused" => set_state(c, id, "running", None).await?,
        Action::Approve if r.state == "waiting-approval" => set_state(c, id, "running", None).await?,
        Action::Abort if !r.terminal() => abort(c, &r, &format!("aborted by {}", who.name)).await?,
        Action::Pause => return conflict("pause"),
        Action::Resume => return conflict("resume"),
        Action::Approve => return conflict("approve"),
        Action::Abort => return conflict("abort"),
    }
    let mut tx = c.db.pool.begin().await?;
    audit::record(&mut tx, &who.name, &format!("rollout.{action:?}").to_lowercase(), id, serde_json::json!({})).await?;
    tx.commit().await?;
    view(c, id).await
}

async fn set_state(c: &Coordinator, id: &str, state: &str, reason: Option<&str>) -> sqlx::Result<()> {
    sqlx::query("UPDATE rollouts SET state = $1, reason = COALESCE($2, reason), updated_at = $3 WHERE id = $4").bind(state).bind(reason).bind(crate::now_ms()).bind(id).execute(&c.db.pool).await?;
    Ok(())
}

async fn set_phase(c: &Coordinator, id: &str, wave: i64, phase: &str, started: Option<i64>, ready: Option<i64>) -> sqlx::Result<()> {
    sqlx::query("UPDATE rollouts SET current_wave = $1, wave_phase = $2, wave_started_at = $3, wave_ready_at = $4, updated_at = $5 WHERE id = $6")
        .bind(wave)
        .bind(phase)
        .bind(started)
        .bind(ready)
        .bind(crate::now_ms())
        .bind(id)
        .execute(&c.db.pool)
        .await?;
    Ok(())
}

/// (device, state, error, previous model, previous version) of the rollout's devices in waves `waves`.
type DeviceRow = (String, i64, String, Option<String>, Option<String>, Option<String>);

async fn devices(c: &Coordinator, id: &str) -> sqlx::Result<Vec<DeviceRow>> {
    sqlx::query_as("SELECT device, wave, state, error, previous_model, previous_version FROM rollout_devices WHERE rollout = $1 ORDER BY wave, device").bind(id).fetch_all(&c.db.pool).await
}

async fn publish(c: &Coordinator, device: &str, desired: Option<&Desired>) -> Result<(), RegistryError> {
    let bus = c.bus.get().ok_or_else(|| RegistryError::BadRequest("the MQTT connection is not up yet".into()))?;
    let payload = desired.map(|d| serde_json::to_vec(d).expect("desired serialises")).unwrap_or_default();
    bus.publish(topics::desired(device), QoS::AtLeastOnce, true, payload).await.map_err(|e| RegistryError::BadRequest(format!("cannot publish to MQTT: {e}")))
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
        PreviousVersions { deployment, probe, resolved: BTreeMap::new() }
    }

    /// `None` when the device ran nothing before.
    async fn get(&mut self, c: &Coordinator, model: Option<String>, version: Option<String>) -> Result<Option<Desired>, RegistryError> {
        let (Some(model), Some(version)) = (model, version) else { return Ok(None) };
        let key = (model.clone(), version.clone());
        if !self.resolved.contains_key(&key) {
            let v = registry::resolve(c, &model, &version).await?;
            let d = Desired { deployment: self.deployment.clone(), model, version, sha256: v.sha256, size_bytes: v.size_bytes as u64, probe: self.probe.clone(), mode: Mode::Active, provisional: false };
            self.resolved.insert(key.clone(), d);
        }
        Ok(self.resolved.get(&key).cloned())
    }
}

/// Sends every started device back to what it ran before, and ends the rollout.
async fn abort(c: &Coordinator, r: &Rollout, reason: &str) -> Result<(), RegistryError> {
    tracing::warn!("rollout {} aborted: {reason}", r.id);
    // Terminal first: status reports from now on no longer move the rows.
    set_state(c, &r.id, "aborted", Some(reason)).await?;
    // The rollout's sample is the application's request: probe the way back with it too.
    let mut previous = PreviousVersions::new(format!("{}/rollback", r.id), r.spec.probe.clone());
    let mut rolled_back = vec![];
    for (device, wave, state, _, pm, pv) in devices(c, &r.id).await? {
        if wave > r.current_wave || state == "pending" {
            continue; // never asked to install
        }
        // Nothing ran before: withdraw the desired state (the device keeps what it has).
        let desired = previous.get(c, pm, pv).await?;
        publish(c, &device, desired.as_ref()).await?;
        rolled_back.push(device);
    }
    sqlx::query("UPDATE rollout_devices SET state = 'rolled-back', updated_at = $1 WHERE rollout = $2 AND state <> 'pending'").bind(crate::now_ms()).bind(&r.id).execute(&c.db.pool).await?;
    events::emit(c, "RolloutAborted", r.id.clone(), serde_json::json!({"model": r.model, "version": r.version, "reason": reason, "wave": r.current_wave, "rolled_back": rolled_back}));
    Ok(())
}

/// Advances one running rollout by at most one step.
async fn step(c: &Coordinator, r: &Rollout) -> Result<(), RegistryError> {
    let now = crate::now_ms();
    let all = devices(c, &r.id).await?;
    let wave: Vec<&DeviceRow> = all.iter().filter(|d| d.1 == r.current_wave).collect();
    let (mode, provisional) = match (r.spec.strategy, r.phase.as_str()) {
        (Strategy::Shadow, _) => (Mode::Shadow, true),
        (Strategy::BlueGreen, "pending" | "staging") => (Mode::Staged, true),
        _ => (Mode::Active, true),
    };
    let ready_state = match mode {
        Mode::Shadow => "shadow",
        Mode::Staged => "staged",
        Mode::Active => "active",
    };
    match r.phase.as_str() {
        "pending" => {
            let desired = r.desired(mode, provisional);
            for d in &wave {
                publish(c, &d.0, Some(&desired)).await?;
            }
            sqlx::query("UPDATE rollout_devices SET state = 'installing', updated_at = $1 WHERE rollout = $2 AND wave = $3 AND state = 'pending'")
                .bind(now)
                .bind(&r.id)
                .bind(r.current_wave)
                .execute(&c.db.pool)
                .await?;
            let phase = if mode == Mode::Staged { "staging" } else { "installing" };
            set_phase(c, &r.id, r.current_wave, phase, Some(now), None).await?;
        }
        "installing" | "staging" | "switching" => {
            if let Some(failed) = wave.iter().find(|d| d.2 == "failed") {
                return abort(c, r, &format!("health check failed on {}: {}", failed.0, failed.3.clone().unwrap_or_default())).await;
            }
            let ready = wave.iter().filter(|d| d.2 == ready_state).count();
            let started = r.wave_started_at.unwrap_or(now);
            if ready < wave.len() && !only_offline_missing(c, &wave, ready_state, r.spec.max_unavailable).await? {
                if now - started > r.spec.gates.timeout_s as i64 * 1000 {
                    return abort(c, r, &format!("timed out: {ready} of {} devices in wave {} are {ready_state}", wave.len(), r.current_wave + 1)).await;
                }
                return Ok(());
            }
            if r.phase == "staging" {
                // Blue-green: everyone is staged; switch them all.
                let desired = r.desired(Mode::Active, true);
                for d in &wave {
                    publish(c, &d.0, Some(&desired)).await?;
                }
                set_phase(c, &r.id, r.current_wave, "switching", Some(now), None).await?;
            } else {
                set_phase(c, &r.id, r.current_wave, "baking", r.wave_started_at, Some(now)).await?;
            }
        }
        "baking" => {
            if let Some(failed) = wave.iter().find(|d| d.2 == "failed") {
                return abort(c, r, &format!("health check failed on {}: {}", failed.0, failed.3.clone().unwrap_or_default())).await;
            }
            let ready_at = r.wave_ready_at.unwrap_or(now);
            if now - ready_at < r.spec.gates.bake_s as i64 * 1000 {
                return Ok(());
            }
            let on_candidate: Vec<String> = all.iter().filter(|d| d.1 <= r.current_wave).map(|d| d.0.clone()).collect();
            let role = if r.spec.strategy == Strategy::Shadow { "shadow" } else { "live" };
            let t = crate::telemetry::aggregate(c, &r.model, &r.version, role, Some(&on_candidate), r.wave_started_at.unwrap_or(r.created_at)).await?;
            let g = &r.spec.gates;
            if t.predictions < g.min_predictions {
                if now - r.wave_started_at.unwrap_or(now) > g.timeout_s as i64 * 1000 {
                    return abort(c, r, &format!("gate: only {} predictions on the candidate, {} needed", t.predictions, g.min_predictions)).await;
                }
                return Ok(());
            }
            if let Some(rate) = t.failure_rate.filter(|f| *f > g.max_failure_rate) {
                return abort(c, r, &format!("gate: failure rate {rate:.4} > {} ({} errors in {} predictions)", g.max_failure_rate, t.errors, t.predictions)).await;
            }
            if let Some(max) = g.max_latency_ms {
                let q = t.stats.latency.quantile_ms(g.latency_quantile).unwrap_or(0.0);
                if q > max {
                    return abort(c, r, &format!("gate: p{} latency {q} ms > {max} ms", (g.latency_quantile * 100.0).round())).await;
                }
            }
            if let (Some(min), Some(a)) = (g.min_agreement, t.agreement) {
                if a < min {
                    return abort(c, r, &format!("gate: shadow agreement {a:.4} < {min}")).await;
                }
            }
            events::emit(
                c,
                "WaveCompleted",
                r.id.clone(),
                serde_json::json!({"model": r.model, "version": r.version, "wave": r.current_wave + 1, "of": r.waves(), "devices": on_candidate.len(), "predictions": t.predictions, "failure_rate": t.failure_rate, "p95_ms": t.p95_ms, "agreement": t.agreement}),
            );
            if (r.current_wave as usize) + 1 < r.waves() {
                set_phase(c, &r.id, r.current_wave + 1, "pending", None, None).await?;
                if r.spec.manual_approval {
                    set_state(c, &r.id, "waiting-approval", None).await?;
                }
            } else {
                finish(c, r, &all).await?;
            }
        }
        other => return Err(RegistryError::BadRequest(format!("rollout {} is in an unknown phase `{other}`", r.id))),
    }
    Ok(())
}

/// Whether every device of the wave that is not `ready_state` yet is offline,
/// and there are at most `budget` of them.
async fn only_offline_missing(c: &Coordinator, wave: &[&DeviceRow], ready_state: &str, budget: u32) -> sqlx::Result<bool> {
    let missing: Vec<&str> = wave.iter().filter(|d| d.2 != ready_state).map(|d| d.0.as_str()).collect();
    if missing.len() > budget as usize {
        return Ok(false);
    }
    // At most `budget` lookups, whatever the fleet's size.
    for id in missing {
        let state: Option<(String,)> = sqlx::query_as("SELECT state FROM devices WHERE id = $1").bind(id).fetch_optional(&c.db.pool).await?;
        if state.is_none_or(|(s,)| s != "offline") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Success: commit the floor on every device (or remove the shadow).
async fn finish(c: &Coordinator, r: &Rollout, all: &[DeviceRow]) -> Result<(), RegistryError> {
    set_state(c, &r.id, "succeeded", None).await?;
    if r.spec.strategy == Strategy::Shadow {
        let mut previous = PreviousVersions::new(format!("{}/end", r.id), None);
        for (device, _, _, _, pm, pv) in all {
            if let Some(d) = previous.get(c, pm.clone(), pv.clone()).await? {
                publish(c, device, Some(&d)).await?;
            }
        }
    } else {
        let commit = r.desired(Mode::Active, false);
        for d in all {
            publish(c, &d.0, Some(&commit)).await?;
        }
    }
    events::emit(c, "RolloutSucceeded", r.id.clone(), serde_json::json!({"model": r.model, "version": r.version, "strategy": r.spec.strategy, "devices": all.len()}));
    Ok(())
}

/// A device's status report for rollout `id` (ignored once the rollout has ended).
/// Returns whether the device's row changed.
pub async fn record_status(c: &Coordinator, id: &str, device: &str, state: &str, version: Option<&str>, error: Option<&str>) -> sqlx::Result<bool> {
    let r = sqlx::query(
        "UPDATE rollout_devices SET state = $1, error = $2, updated_at = $3 WHERE rollout = $4 AND device = $5 AND state <> $1
         AND EXISTS (SELECT 1 FROM rollouts WHERE id = $4 AND version = $6 AND state IN ('running', 'paused', 'waiting-approval'))",
    )
    .bind(state)
    .bind(error)
    .bind(crate::now_ms())
    .bind(id)
    .bind(device)
    .bind(version.unwrap_or_default())
    .execute(&c.db.pool)
    .await?;
    Ok(r.rows_affected() > 0)
}

/// The controller: advances every running rollout twice a second. Never returns.
pub async fn run_controller(c: std::sync::Arc<Coordinator>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tick.tick().await;
        if c.bus.get().is_none() {
            continue;
        }
        let _one_writer = c.rollout_lock.lock().await;
        let ids: Vec<(String,)> = match sqlx::query_as("SELECT id FROM rollouts WHERE state = 'running' ORDER BY created_at").fetch_all(&c.db.pool).await {
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

pub async fn list(c: &Coordinator) -> Result<Vec<serde_json::Value>, RegistryError> {
    let rows: Vec<Row> = sqlx::query_as(&format!("{SELECT} ORDER BY created_at DESC")).fetch_all(&c.db.pool).await?;
    let mut out = vec![];
    for row in rows {
        let r = Rollout::from_row(row)?;
        out.push(serde_json::json!({"id": r.id, "model": r.model, "version": r.version, "strategy": r.spec.strategy, "state": r.state, "reason": r.reason, "wave": r.current_wave + 1, "waves": r.waves(), "created_by": r.created_by, "created_at_ms": r.created_at}));
    }
    Ok(out)
}

/// Everything about one rollout: state, each wave's devices, candidate telemetry.
pub async fn view(c: &Coordinator, id: &str) -> Result<serde_json::Value, RegistryError> {
    let r = load(c, id).await?;
    let all = devices(c, id).await?;
    let waves: Vec<serde_json::Value> = (0..r.waves())
        .map(|w| {
            let ds: Vec<&DeviceRow> = all.iter().filter(|d| d.1 == w as i64).collect();
            let mut states: BTreeMap<&str, usize> = BTreeMap::new();
            for d in &ds {
                *states.entry(d.2.as_str()).or_default() += 1;
            }
            serde_json::json!({"wave": w + 1, "percent": r.spec.waves.get(w), "devices": ds.len(), "states": states})
        })
        .collect();
    let role = if r.spec.strategy == Strategy::Shadow { "shadow" } else { "live" };
    let t = crate::telemetry::aggregate(c, &r.model, &r.version, role, None, r.created_at).await?;
    let failed: Vec<serde_json::Value> = all.iter().filter(|d| d.3.is_some() && d.2 == "failed").map(|d| serde_json::json!({"device": d.0, "error": d.3})).collect();
    Ok(serde_json::json!({
        "id": r.id, "model": r.model, "version": r.version, "sha256": r.sha256, "strategy": r.spec.strategy,
        "state": r.state, "reason": r.reason, "wave": r.current_wave + 1, "waves": r.waves(), "phase": r.phase,
        "targets": all.len(),
        "ready": all.iter().filter(|d| matches!(d.2.as_str(), "active" | "shadow")).count(),
        "wave_detail": waves, "failed": failed, "spec": r.spec,
        "telemetry": {"predictions": t.predictions, "errors": t.errors, "failure_rate": t.failure_rate, "p50_ms": t.p50_ms, "p95_ms": t.p95_ms, "p99_ms": t.p99_ms, "agreement": t.agreement, "devices": t.devices},
        "created_by": r.created_by, "created_at_ms": r.created_at, "updated_at_ms": r.updated_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::wave_bounds;

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
}
