//! The rollout state machine, pure: given what the controller read (the
//! rollout's phase and clocks, its current wave's devices, and when asked for,
//! the candidate's telemetry), it says what to do next. No database, broker or
//! clock: every gate is unit-tested here, and the controller
//! ([`super::controller`]) only carries decisions out.
//!
//! Per wave: `pending` → publish the candidate (`installing`; blue-green
//! `staging`) → every device ready, or only offline ones missing within
//! `max_unavailable` → (blue-green: `switching` → ready again) → `baking` for
//! `bake_s` → [`judge`] the candidate's telemetry → next wave (or wait for
//! approval), success after the last. More failed installs in a wave than
//! `max_failed` (default none), a timeout or a failing gate abort.

use wasmops_api::{Gates, Strategy, WavePhase};
use wasmops_protocol::device::{InstallState, Mode};
use wasmops_protocol::telemetry::Histogram;

/// A target device's state within a rollout (stored as text in `rollout_devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetState {
    /// Not asked to install yet.
    Pending,
    /// Asked; nothing reported yet.
    Installing,
    /// The install state the device last reported.
    Reported(InstallState),
    /// Sent back to its previous version by an abort.
    RolledBack,
}

impl TargetState {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Pending => "pending",
            TargetState::Installing => "installing",
            TargetState::Reported(s) => s.as_str(),
            TargetState::RolledBack => "rolled-back",
        }
    }

    pub fn parse(s: &str) -> Option<TargetState> {
        match s {
            "pending" => Some(TargetState::Pending),
            "installing" => Some(TargetState::Installing),
            "rolled-back" => Some(TargetState::RolledBack),
            _ => InstallState::parse(s).map(TargetState::Reported),
        }
    }
}

/// One device of the current wave, as the controller read it.
#[derive(Debug, Clone, PartialEq)]
pub struct WaveDevice {
    pub id: String,
    pub state: TargetState,
    pub error: Option<String>,
    /// Its presence is `offline` (a Last Will or a goodbye).
    pub offline: bool,
}

/// What the machine looks at for one step.
#[derive(Debug, Clone)]
pub struct Snapshot<'a> {
    pub strategy: Strategy,
    pub gates: &'a Gates,
    pub manual_approval: bool,
    pub max_unavailable: u32,
    /// Failed installs a wave tolerates.
    pub max_failed: u32,
    /// Number of waves (1 unless canary).
    pub waves: usize,
    /// From 0.
    pub current_wave: usize,
    pub phase: WavePhase,
    pub now_ms: i64,
    pub wave_started_at: Option<i64>,
    pub wave_ready_at: Option<i64>,
    pub wave: &'a [WaveDevice],
}

/// The candidate's telemetry over the devices that run it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    pub predictions: u64,
    pub errors: u64,
    pub latency: Histogram,
    /// Shadow: share of predictions that matched the live model.
    pub agreement: Option<f64>,
    /// The drift coefficient of the candidate's outputs and what they were
    /// compared with (asked for by `max_prediction_drift`).
    pub prediction_drift: Option<(f64, String)>,
}

/// What the controller does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing yet: look again later.
    Wait,
    /// Publish the candidate to the wave's pending devices in `mode`
    /// (provisional) and move to `phase`, the wave's clock starting now.
    Install { mode: Mode, phase: WavePhase },
    /// Blue-green: every device is staged; switch them all to the candidate.
    Switch,
    /// Every device runs the candidate: start baking, the bake clock starting now.
    Bake,
    /// Baked long enough: read the candidate's telemetry and [`judge`] it.
    Measure,
    /// The gate passed and another wave follows (after an approval if asked for).
    NextWave { wait_for_approval: bool },
    /// The gate passed on the last wave.
    Succeed,
    /// Stop and roll back, for this reason.
    Abort(String),
}

impl Snapshot<'_> {
    /// The mode the current phase installs in.
    fn mode(&self) -> Mode {
        match (self.strategy, self.phase) {
            (Strategy::Shadow, _) => Mode::Shadow,
            (Strategy::BlueGreen, WavePhase::Pending | WavePhase::Staging) => Mode::Staged,
            _ => Mode::Active,
        }
    }

    fn ready_state(&self) -> InstallState {
        match self.mode() {
            Mode::Shadow => InstallState::Shadow,
            Mode::Staged => InstallState::Staged,
            Mode::Active => InstallState::Active,
        }
    }

    fn timed_out(&self, since: Option<i64>) -> bool {
        self.now_ms - since.unwrap_or(self.now_ms) > self.gates.timeout_s as i64 * 1000
    }

    fn is_failed(d: &WaveDevice) -> bool {
        d.state == TargetState::Reported(InstallState::Failed)
    }

    /// An abort when more installs failed than the wave tolerates.
    fn failed(&self) -> Option<Decision> {
        let failed: Vec<&WaveDevice> = self.wave.iter().filter(|d| Self::is_failed(d)).collect();
        if failed.len() <= self.max_failed as usize {
            return None;
        }
        let d = failed[0];
        let more = match failed.len() {
            1 => String::new(),
            n => format!(" (and {} more; {} tolerated)", n - 1, self.max_failed),
        };
        Some(Decision::Abort(format!(
            "health check failed on {}: {}{more}",
            d.id,
            d.error.clone().unwrap_or_default()
        )))
    }

    /// Whether the devices not ready yet (failed ones within the tolerance
    /// aside) are all offline, and no more than `max_unavailable`.
    fn only_offline_missing(&self, ready: TargetState) -> bool {
        let missing: Vec<&WaveDevice> = self
            .wave
            .iter()
            .filter(|d| d.state != ready && !Self::is_failed(d))
            .collect();
        missing.len() <= self.max_unavailable as usize && missing.iter().all(|d| d.offline)
    }
}

/// One step of a running rollout.
pub fn advance(s: &Snapshot<'_>) -> Decision {
    match s.phase {
        WavePhase::Pending => Decision::Install {
            mode: s.mode(),
            phase: if s.mode() == Mode::Staged {
                WavePhase::Staging
            } else {
                WavePhase::Installing
            },
        },
        WavePhase::Installing | WavePhase::Staging | WavePhase::Switching => {
            if let Some(abort) = s.failed() {
                return abort;
            }
            let ready_state = s.ready_state();
            let ready = TargetState::Reported(ready_state);
            let n = s.wave.iter().filter(|d| d.state == ready).count();
            let failed = s.wave.iter().filter(|d| Snapshot::is_failed(d)).count();
            if n + failed < s.wave.len() && !s.only_offline_missing(ready) {
                if s.timed_out(s.wave_started_at) {
                    return Decision::Abort(format!(
                        "timed out: {n} of {} devices in wave {} are {}",
                        s.wave.len(),
                        s.current_wave + 1,
                        ready_state.as_str()
                    ));
                }
                return Decision::Wait;
            }
            if s.phase == WavePhase::Staging {
                Decision::Switch
            } else {
                Decision::Bake
            }
        }
        WavePhase::Baking => {
            if let Some(abort) = s.failed() {
                return abort;
            }
            let ready_at = s.wave_ready_at.unwrap_or(s.now_ms);
            if s.now_ms - ready_at < s.gates.bake_s as i64 * 1000 {
                Decision::Wait
            } else {
                Decision::Measure
            }
        }
    }
}

/// The analysis gate over the candidate's telemetry, after baking.
pub fn judge(s: &Snapshot<'_>, t: &Measured) -> Decision {
    let g = s.gates;
    if t.predictions < g.min_predictions {
        if s.timed_out(s.wave_started_at) {
            return Decision::Abort(format!(
                "gate: only {} predictions on the candidate, {} needed",
                t.predictions, g.min_predictions
            ));
        }
        return Decision::Wait;
    }
    let failure_rate = (t.predictions > 0).then(|| t.errors as f64 / t.predictions as f64);
    if let Some(rate) = failure_rate.filter(|f| *f > g.max_failure_rate) {
        return Decision::Abort(format!(
            "gate: failure rate {rate:.4} > {} ({} errors in {} predictions)",
            g.max_failure_rate, t.errors, t.predictions
        ));
    }
    if let Some(max) = g.max_latency_ms {
        let q = t.latency.quantile_ms(g.latency_quantile).unwrap_or(0.0);
        if q > max {
            return Decision::Abort(format!(
                "gate: p{} latency {q} ms > {max} ms",
                (g.latency_quantile * 100.0).round()
            ));
        }
    }
    if let (Some(min), Some(a)) = (g.min_agreement, t.agreement)
        && a < min
    {
        return Decision::Abort(format!("gate: shadow agreement {a:.4} < {min}"));
    }
    if let (Some(max), Some((d, against))) = (g.max_prediction_drift, &t.prediction_drift)
        && *d > max
    {
        return Decision::Abort(format!(
            "gate: prediction drift {d:.4} > {max} against {against}"
        ));
    }
    if s.current_wave + 1 < s.waves {
        Decision::NextWave {
            wait_for_approval: s.manual_approval,
        }
    } else {
        Decision::Succeed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn dev(id: &str, state: TargetState) -> WaveDevice {
        WaveDevice {
            id: id.into(),
            state,
            error: None,
            offline: false,
        }
    }

    fn active(id: &str) -> WaveDevice {
        dev(id, TargetState::Reported(InstallState::Active))
    }

    fn snap<'a>(gates: &'a Gates, phase: WavePhase, wave: &'a [WaveDevice]) -> Snapshot<'a> {
        Snapshot {
            strategy: Strategy::Canary,
            gates,
            manual_approval: false,
            max_unavailable: 0,
            max_failed: 0,
            waves: 3,
            current_wave: 0,
            phase,
            now_ms: NOW,
            wave_started_at: Some(NOW - 1_000),
            wave_ready_at: Some(NOW - 1_000),
            wave,
        }
    }

    fn measured(predictions: u64, errors: u64) -> Measured {
        let mut latency = Histogram::default();
        (0..predictions).for_each(|_| latency.record(3.0));
        Measured {
            predictions,
            errors,
            latency,
            agreement: None,
            prediction_drift: None,
        }
    }

    fn aborts(d: Decision, starts: &str) {
        match d {
            Decision::Abort(reason) => assert!(
                reason.starts_with(starts),
                "abort reason `{reason}` should start with `{starts}`"
            ),
            other => panic!("expected an abort ({starts}…), got {other:?}"),
        }
    }

    #[test]
    fn a_pending_wave_installs_in_the_strategys_mode() {
        let g = Gates::default();
        let mut s = snap(&g, WavePhase::Pending, &[]);
        assert_eq!(
            advance(&s),
            Decision::Install {
                mode: Mode::Active,
                phase: WavePhase::Installing
            }
        );
        s.strategy = Strategy::BlueGreen;
        assert_eq!(
            advance(&s),
            Decision::Install {
                mode: Mode::Staged,
                phase: WavePhase::Staging
            }
        );
        s.strategy = Strategy::Shadow;
        assert_eq!(
            advance(&s),
            Decision::Install {
                mode: Mode::Shadow,
                phase: WavePhase::Installing
            }
        );
    }

    #[test]
    fn installing_waits_for_every_device_then_bakes() {
        let g = Gates::default();
        let wave = [
            active("a"),
            dev("b", TargetState::Reported(InstallState::Probing)),
        ];
        assert_eq!(
            advance(&snap(&g, WavePhase::Installing, &wave)),
            Decision::Wait
        );
        let wave = [active("a"), active("b")];
        assert_eq!(
            advance(&snap(&g, WavePhase::Installing, &wave)),
            Decision::Bake
        );
    }

    #[test]
    fn a_failed_install_aborts_with_the_devices_error() {
        let g = Gates::default();
        let mut failed = dev("b", TargetState::Reported(InstallState::Failed));
        failed.error = Some("probe: output is NaN".into());
        let wave = [active("a"), failed];
        for phase in [
            WavePhase::Installing,
            WavePhase::Staging,
            WavePhase::Switching,
            WavePhase::Baking,
        ] {
            assert_eq!(
                advance(&snap(&g, phase, &wave)),
                Decision::Abort("health check failed on b: probe: output is NaN".into())
            );
        }
    }

    /// Issue 24.11: with `max_failed`, a device that cannot install does not
    /// stop the rollout; one failure more than tolerated does.
    #[test]
    fn failed_installs_within_the_tolerance_let_the_wave_go_on() {
        let g = Gates::default();
        let failed = |id: &str| {
            let mut d = dev(id, TargetState::Reported(InstallState::Failed));
            d.error = Some("disk full".into());
            d
        };
        let wave = [active("a"), failed("b"), dev("c", TargetState::Installing)];
        let mut s = snap(&g, WavePhase::Installing, &wave);
        s.max_failed = 1;
        assert_eq!(advance(&s), Decision::Wait, "c is still installing");
        let wave = [active("a"), failed("b"), active("c")];
        let mut s = snap(&g, WavePhase::Installing, &wave);
        s.max_failed = 1;
        assert_eq!(advance(&s), Decision::Bake);
        let wave = [active("a"), failed("b"), failed("c")];
        let mut s = snap(&g, WavePhase::Installing, &wave);
        s.max_failed = 1;
        assert_eq!(
            advance(&s),
            Decision::Abort("health check failed on b: disk full (and 1 more; 1 tolerated)".into())
        );
    }

    #[test]
    fn timeout_aborts_a_wave_that_does_not_get_ready() {
        let g = Gates {
            timeout_s: 60,
            ..Gates::default()
        };
        let wave = [active("a"), dev("b", TargetState::Installing)];
        let mut s = snap(&g, WavePhase::Installing, &wave);
        s.wave_started_at = Some(NOW - 59_000);
        assert_eq!(advance(&s), Decision::Wait);
        s.wave_started_at = Some(NOW - 61_000);
        assert_eq!(
            advance(&s),
            Decision::Abort("timed out: 1 of 2 devices in wave 1 are active".into())
        );
    }

    #[test]
    fn max_unavailable_lets_offline_devices_not_hold_a_wave_up() {
        let g = Gates::default();
        let mut away = dev("b", TargetState::Installing);
        away.offline = true;
        let wave = [active("a"), away.clone()];
        let mut s = snap(&g, WavePhase::Installing, &wave);
        assert_eq!(
            advance(&s),
            Decision::Wait,
            "no budget: the offline device holds the wave"
        );
        s.max_unavailable = 1;
        assert_eq!(advance(&s), Decision::Bake);
        let online_but_slow = [active("a"), dev("b", TargetState::Installing)];
        s.wave = &online_but_slow;
        assert_eq!(
            advance(&s),
            Decision::Wait,
            "an online device that is not ready is waited for"
        );
        let two_away = [
            active("a"),
            away.clone(),
            WaveDevice {
                id: "c".into(),
                ..away
            },
        ];
        s.wave = &two_away;
        assert_eq!(advance(&s), Decision::Wait, "more offline than the budget");
    }

    #[test]
    fn blue_green_stages_then_switches_then_bakes() {
        let g = Gates::default();
        let staged = [
            dev("a", TargetState::Reported(InstallState::Staged)),
            dev("b", TargetState::Reported(InstallState::Staged)),
        ];
        let mut s = snap(&g, WavePhase::Staging, &staged);
        s.strategy = Strategy::BlueGreen;
        assert_eq!(advance(&s), Decision::Switch);
        s.phase = WavePhase::Switching;
        assert_eq!(advance(&s), Decision::Wait, "staged is not yet active");
        let switched = [active("a"), active("b")];
        s.wave = &switched;
        assert_eq!(advance(&s), Decision::Bake);
    }

    #[test]
    fn shadow_waits_for_shadow_installs() {
        let g = Gates::default();
        let wave = [active("a")];
        let mut s = snap(&g, WavePhase::Installing, &wave);
        s.strategy = Strategy::Shadow;
        assert_eq!(advance(&s), Decision::Wait, "active is not shadow");
        let wave = [dev("a", TargetState::Reported(InstallState::Shadow))];
        s.wave = &wave;
        assert_eq!(advance(&s), Decision::Bake);
    }

    #[test]
    fn baking_measures_only_after_the_bake_time() {
        let g = Gates {
            bake_s: 10,
            ..Gates::default()
        };
        let wave = [active("a")];
        let mut s = snap(&g, WavePhase::Baking, &wave);
        s.wave_ready_at = Some(NOW - 9_999);
        assert_eq!(advance(&s), Decision::Wait);
        s.wave_ready_at = Some(NOW - 10_000);
        assert_eq!(advance(&s), Decision::Measure);
    }

    #[test]
    fn min_predictions_waits_then_times_out() {
        let g = Gates {
            min_predictions: 10,
            timeout_s: 30,
            ..Gates::default()
        };
        let mut s = snap(&g, WavePhase::Baking, &[]);
        assert_eq!(judge(&s, &measured(9, 0)), Decision::Wait);
        s.wave_started_at = Some(NOW - 31_000);
        assert_eq!(
            judge(&s, &measured(9, 0)),
            Decision::Abort("gate: only 9 predictions on the candidate, 10 needed".into())
        );
        assert_eq!(
            judge(&s, &measured(10, 0)),
            Decision::NextWave {
                wait_for_approval: false
            }
        );
    }

    #[test]
    fn failure_rate_gate() {
        let g = Gates {
            max_failure_rate: 0.1,
            ..Gates::default()
        };
        let s = snap(&g, WavePhase::Baking, &[]);
        assert_eq!(
            judge(&s, &measured(100, 10)),
            Decision::NextWave {
                wait_for_approval: false
            },
            "exactly at the limit passes"
        );
        assert_eq!(
            judge(&s, &measured(100, 11)),
            Decision::Abort(
                "gate: failure rate 0.1100 > 0.1 (11 errors in 100 predictions)".into()
            )
        );
    }

    #[test]
    fn latency_quantile_gate() {
        let g = Gates {
            max_latency_ms: Some(5.0),
            latency_quantile: 0.9,
            ..Gates::default()
        };
        let s = snap(&g, WavePhase::Baking, &[]);
        let mut t = measured(100, 0); // every prediction 3 ms: bucket bound 5 ms
        assert_eq!(
            judge(&s, &t),
            Decision::NextWave {
                wait_for_approval: false
            }
        );
        (0..20).for_each(|_| t.latency.record(40.0));
        t.predictions += 20;
        aborts(judge(&s, &t), "gate: p90 latency 50 ms > 5 ms");
        let no_limit = Gates {
            max_latency_ms: None,
            ..g
        };
        assert_eq!(
            judge(&snap(&no_limit, WavePhase::Baking, &[]), &t),
            Decision::NextWave {
                wait_for_approval: false
            }
        );
    }

    #[test]
    fn shadow_agreement_gate() {
        let g = Gates {
            min_agreement: Some(0.95),
            ..Gates::default()
        };
        let mut s = snap(&g, WavePhase::Baking, &[]);
        s.strategy = Strategy::Shadow;
        s.waves = 1;
        let mut t = measured(100, 0);
        t.agreement = Some(0.95);
        assert_eq!(judge(&s, &t), Decision::Succeed);
        t.agreement = Some(0.9);
        assert_eq!(
            judge(&s, &t),
            Decision::Abort("gate: shadow agreement 0.9000 < 0.95".into())
        );
    }

    #[test]
    fn prediction_drift_gate() {
        let g = Gates {
            max_prediction_drift: Some(0.2),
            ..Gates::default()
        };
        let mut s = snap(&g, WavePhase::Baking, &[]);
        s.waves = 1;
        let mut t = measured(100, 0);
        // Nothing judged (no output profile): the other gates decide.
        assert_eq!(judge(&s, &t), Decision::Succeed);
        t.prediction_drift = Some((0.2, "m 1.0.0".into()));
        assert_eq!(judge(&s, &t), Decision::Succeed);
        t.prediction_drift = Some((0.35, "m 1.0.0".into()));
        assert_eq!(
            judge(&s, &t),
            Decision::Abort("gate: prediction drift 0.3500 > 0.2 against m 1.0.0".into())
        );
    }

    #[test]
    fn manual_approval_holds_between_waves_not_after_the_last() {
        let g = Gates::default();
        let mut s = snap(&g, WavePhase::Baking, &[]);
        s.manual_approval = true;
        assert_eq!(
            judge(&s, &measured(50, 0)),
            Decision::NextWave {
                wait_for_approval: true
            }
        );
        s.current_wave = 2;
        assert_eq!(judge(&s, &measured(50, 0)), Decision::Succeed);
    }

    #[test]
    fn target_states_round_trip_their_text() {
        for s in [
            "pending",
            "installing",
            "rolled-back",
            "downloading",
            "verifying",
            "probing",
            "staged",
            "shadow",
            "active",
            "failed",
        ] {
            assert_eq!(TargetState::parse(s).map(TargetState::as_str), Some(s));
        }
        assert_eq!(TargetState::parse("bogus"), None);
    }
}
