//! The fleet soak (`wasmops fleet soak`): a simulated fleet on a private
//! Mosquitto and a coordinator in its own process (on PostgreSQL when given),
//! driven through deployments and rollouts while things break:
//!
//! - devices are killed at random (as SIGKILL: mid-download and mid-install
//!   included) and rebooted a few seconds later, the whole time;
//! - the broker is SIGKILLed and restarted, twice;
//! - a first deployment, a canary that succeeds, a canary that is aborted,
//!   and a canary during which the coordinator is SIGKILLed and restarted.
//!
//! At the end it checks what must hold, and returns the figures:
//! - every device runs the version the coordinator wants for its group;
//! - the telemetry the coordinator stored counts every prediction made,
//!   except those still in a killed device's open window (memory only);
//! - no partial downloads, probe samples or stray files on the devices;
//! - the coordinator's memory stays flat (resident size sampled throughout).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde::Serialize;
use wasmops_agent::TrustConfig;
use wasmops_api::{
    Client, DeployRequest, EnrolmentRequest, Gates, RolloutAction, RolloutRequest, RolloutState,
};

use crate::mosquitto::Mosquitto;
use crate::simulator::{Fleet, FleetConfig};

pub struct SoakConfig {
    pub dir: PathBuf,
    /// The `wasmops` binary: the coordinator runs as `EXE coordinator …`.
    pub exe: PathBuf,
    pub devices: usize,
    /// The soak lasts at least this long (the scenario's steps may take longer).
    pub duration: Duration,
    /// `postgres://…`; SQLite in `dir` otherwise.
    pub database: Option<String>,
    /// Three signed versions of one model, in order.
    pub versions: [PathBuf; 3],
    pub trust_key: PathBuf,
    pub sample: String,
    /// Predictions per second per device.
    pub rate: f64,
    /// Seeds the choice and timing of device kills.
    pub seed: u64,
}

/// What the soak measured.
#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub devices: usize,
    pub seconds: f64,
    pub device_kills: u64,
    pub broker_restarts: u32,
    pub coordinator_restarts: u32,
    /// Rollout id → final state.
    pub rollouts: BTreeMap<String, String>,
    /// Devices per version at the end (the simulator's own view).
    pub versions: BTreeMap<String, usize>,
    pub predictions_made: u64,
    pub predictions_failed: u64,
    /// Made, but in a killed device's open window: lost with its memory.
    pub predictions_unreported: u64,
    pub predictions_stored: u64,
    /// The coordinator's resident memory (MiB): per process life, samples
    /// every few seconds.
    pub coordinator_rss_mib: Vec<Vec<f64>>,
}

impl SoakReport {
    /// Resident memory at the end of the last life of at least two minutes
    /// over its value a minute (or a quarter of the life, if shorter) after
    /// it started; 1 when no life was that long (too short to judge).
    pub fn rss_growth(&self) -> f64 {
        let Some(life) = self
            .coordinator_rss_mib
            .iter()
            .rev()
            .find(|l| l.len() >= 24)
        else {
            return 1.0;
        };
        let settled = life[(life.len() / 4).min(12)];
        life[life.len() - 1] / settled
    }
}

/// The coordinator as a child process (so it can be SIGKILLed and measured).
struct Coordinator {
    child: std::process::Child,
    args: Vec<String>,
    exe: PathBuf,
    api: String,
}

impl Coordinator {
    fn start(exe: &Path, args: Vec<String>, api: String) -> Result<Coordinator> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&args[2]).with_extension("log"))?;
        let child = std::process::Command::new(exe)
            .args(&args)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start the coordinator")?;
        let c = Coordinator {
            child,
            args,
            exe: exe.to_path_buf(),
            api,
        };
        let started = Instant::now();
        while reqwest::blocking::get(format!("{}/healthz", c.api)).is_err() {
            ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the coordinator did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(c)
    }

    fn kill_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        *self = Coordinator::start(&self.exe.clone(), self.args.clone(), self.api.clone())?;
        Ok(())
    }

    fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The coordinator's resident memory, sampled every 5 s, per process life.
struct Rss {
    lives: Vec<Vec<f64>>,
    last: Instant,
}

impl Default for Rss {
    fn default() -> Rss {
        Rss {
            lives: vec![vec![]],
            last: Instant::now() - Duration::from_secs(60),
        }
    }
}

impl Rss {
    fn sample(&mut self, c: &Coordinator) {
        if self.last.elapsed() >= Duration::from_secs(5)
            && let Some(m) = c.rss_mib()
        {
            self.lives.last_mut().expect("a life").push(m);
            self.last = Instant::now();
        }
    }
}

/// A small deterministic generator for the kills (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

/// SIGKILLs the broker and starts it again two seconds later.
fn bounce(broker: &mut Mosquitto) -> Result<()> {
    broker.kill();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart()
}

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> Result<bool>) -> Result<()> {
    let started = Instant::now();
    loop {
        if ready().unwrap_or(false) {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs the soak; `say` gets a line per step.
pub fn run(s: &SoakConfig, say: &dyn Fn(String)) -> Result<SoakReport> {
    let started = Instant::now();
    let rt = tokio::runtime::Runtime::new()?;
    let mut broker = Mosquitto::start()?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let data = s.dir.join("coordinator");
    std::fs::create_dir_all(&data)?;
    let mut args: Vec<String> = [
        "coordinator",
        "--data-dir",
        &data.to_string_lossy(),
        "--listen",
        &listen.to_string(),
        "--mqtt",
        &broker.url(),
        "--trust",
        &s.trust_key.to_string_lossy(),
        // The soak's private Mosquitto is plain MQTT on loopback.
        "--insecure-plain",
    ]
    .map(String::from)
    .to_vec();
    if let Some(db) = &s.database {
        args.extend(["--database".to_string(), db.clone()]);
    }
    let mut coordinator = Coordinator::start(&s.exe, args, format!("http://{listen}"))?;
    let token = std::fs::read_to_string(data.join("admin.token"))?
        .trim()
        .to_string();
    let api = Client::new(&coordinator.api, &token)?;
    let mut names = vec![];
    for v in &s.versions {
        api.register(std::fs::read(v)?)?;
        let claims =
            wasmops_trust::Claims::read(&std::fs::read(v)?)?.context("a version has no claims")?;
        names.push((claims.name, claims.version));
    }
    let enrolment = api.create_enrolment(&EnrolmentRequest::new("soak-*"))?;
    let selector: BTreeMap<String, String> = [("fleet".to_string(), "soak".to_string())].into();
    let fleet = Arc::new(rt.block_on(Fleet::start(FleetConfig {
        devices: s.devices,
        id_prefix: "soak-".into(),
        labels: selector.clone(),
        spread: None,
        coordinator: coordinator.api.clone(),
        enrolment_token: enrolment.token,
        mqtt: broker.url(),
        ca_cert: None,
        state_dir: s.dir.join("fleet"),
        trust: TrustConfig {
            root: None,
            trust_dir: None,
            keys: vec![s.trust_key.clone()],
        },
        telemetry_interval_ms: 1000,
        rate: s.rate,
        sample: Some(s.sample.clone()),
        scenario: None,
        api_token: None,
        sample_rows: Default::default(),
    }))?);
    wait_for("the fleet online", Duration::from_secs(180), || {
        Ok(api
            .devices()?
            .iter()
            .filter(|d| d.state == "online")
            .count()
            == s.devices)
    })?;
    say(format!(
        "{} devices online after {:.0} s",
        s.devices,
        started.elapsed().as_secs_f64()
    ));

    let mut rss = Rss::default();

    let probe: serde_json::Value = serde_json::from_str(&s.sample)?;
    let dep = api.deploy(&DeployRequest {
        model: names[0].0.clone(),
        version: names[0].1.clone(),
        devices: vec![],
        selector: selector.clone(),
        probe: Some(probe.clone()),
    })?;
    wait_for("the first deployment", Duration::from_secs(300), || {
        Ok(api.deployment(&dep.id)?.settled())
    })?;
    say(format!("{} {} deployed", names[0].0, names[0].1));

    // Kills from now on: a device every few seconds, rebooted 1–4 s later.
    let stop_chaos = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (fleet, stop, n, handle) = (
            fleet.clone(),
            stop_chaos.clone(),
            s.devices as u64,
            rt.handle().clone(),
        );
        let mut rng = Rng(s.seed | 1);
        std::thread::spawn(move || {
            let mut down: Vec<(Instant, String)> = vec![];
            while !stop.load(Ordering::Relaxed) {
                let victim = format!("soak-{:04}", rng.below(n));
                if fleet.crash(&victim) {
                    down.push((
                        Instant::now() + Duration::from_millis(1000 + rng.below(3000)),
                        victim,
                    ));
                }
                let sleep = Duration::from_millis(1500 + rng.below(3000));
                let until = Instant::now() + sleep;
                while Instant::now() < until {
                    down.retain(|(at, id)| {
                        if Instant::now() < *at {
                            return true;
                        }
                        if let Err(e) = handle.block_on(fleet.restart(id)) {
                            tracing::error!("cannot reboot {id}: {e:#}");
                            return true;
                        }
                        false
                    });
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            for (_, id) in down {
                let _ = handle.block_on(fleet.restart(&id));
            }
        })
    };

    let canary = |version: usize, waves: Vec<u32>, bake_s: u64| -> Result<String> {
        let mut req = RolloutRequest::new(names[version].0.clone(), names[version].1.clone());
        req.selector = selector.clone();
        req.waves = waves;
        req.gates = Gates {
            max_failure_rate: 0.01,
            min_predictions: 5,
            bake_s,
            timeout_s: 600,
            ..Gates::default()
        };
        req.probe = Some(probe.clone());
        Ok(api.create_rollout(&req)?.id)
    };
    let mut rollouts = BTreeMap::new();
    // Follows rollout `id` to its end, which must be `want`.
    let mut finish = |id: &str, want: RolloutState, coordinator: &Coordinator, rss: &mut Rss| {
        let mut state = RolloutState::Running;
        wait_for(&format!("rollout {id}"), Duration::from_secs(600), || {
            rss.sample(coordinator);
            state = api.rollout(id)?.state;
            Ok(state.is_terminal())
        })?;
        rollouts.insert(id.to_string(), state.as_str().to_string());
        ensure!(state == want, "rollout {id} ended {state:?}");
        Ok::<(), anyhow::Error>(())
    };

    // A canary that succeeds, with the broker killed once it is under way.
    let a = canary(1, vec![10, 50, 100], 3)?;
    std::thread::sleep(Duration::from_secs(5));
    bounce(&mut broker)?;
    finish(&a, RolloutState::Succeeded, &coordinator, &mut rss)?;
    say(format!(
        "canary to {} succeeded (broker restarted during it)",
        names[1].1
    ));

    // A canary aborted while its first wave installs or bakes.
    let b = canary(2, vec![30, 100], 600)?;
    wait_for(
        "the aborted canary's first wave",
        Duration::from_secs(300),
        || {
            rss.sample(&coordinator);
            Ok(api.rollout(&b)?.phase != wasmops_api::WavePhase::Pending)
        },
    )?;
    std::thread::sleep(Duration::from_secs(3));
    api.rollout_action(&b, RolloutAction::Abort)?;
    finish(&b, RolloutState::Aborted, &coordinator, &mut rss)?;
    say(format!("canary to {} aborted", names[2].1));

    // A canary during which the coordinator is SIGKILLed and restarted.
    let c = canary(2, vec![25, 100], 3)?;
    std::thread::sleep(Duration::from_secs(4));
    coordinator.kill_and_restart()?;
    rss.lives.push(vec![]);
    finish(&c, RolloutState::Succeeded, &coordinator, &mut rss)?;
    say(format!(
        "canary to {} succeeded (coordinator killed and restarted during it)",
        names[2].1
    ));

    // The rest of the time: traffic and kills, the broker killed once more halfway.
    let mut broker_restarts = 1;
    while started.elapsed() < s.duration {
        rss.sample(&coordinator);
        if broker_restarts == 1 && started.elapsed() > s.duration.mul_f64(0.8) {
            bounce(&mut broker)?;
            broker_restarts += 1;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    if broker_restarts == 1 {
        bounce(&mut broker)?;
        broker_restarts += 1;
    }

    // Quiesce: kills stop, everyone reboots, traffic stops, windows close.
    stop_chaos.store(true, Ordering::Relaxed);
    chaos
        .join()
        .map_err(|_| anyhow::anyhow!("the kill thread panicked"))?;
    for id in fleet.down() {
        rt.block_on(fleet.restart(&id))?;
    }
    fleet.set_rate(0.0);
    std::thread::sleep(Duration::from_secs(2));
    fleet.flush_telemetry();
    wait_for(
        "every report acknowledged",
        Duration::from_secs(300),
        || {
            rss.sample(&coordinator);
            Ok(fleet.view().pending_reports == 0)
        },
    )?;
    let want = &names[2];
    wait_for(
        "every device on its group's version",
        Duration::from_secs(300),
        || {
            let devices = api.devices()?;
            Ok(devices.len() == s.devices
                && devices.iter().all(|d| {
                    d.group
                        .as_ref()
                        .is_some_and(|g| g.in_sync && g.version == want.1)
                }))
        },
    )?;
    let view = fleet.view();
    let stored = stored_predictions(&api)?;
    let report = SoakReport {
        devices: s.devices,
        seconds: started.elapsed().as_secs_f64(),
        device_kills: view.crashed.crashes,
        broker_restarts,
        coordinator_restarts: 1,
        rollouts,
        versions: view.versions.clone(),
        predictions_made: view.ok + view.failed,
        predictions_failed: view.failed,
        predictions_unreported: view.crashed.unreported,
        predictions_stored: stored,
        coordinator_rss_mib: rss.lives,
    };
    let label = format!("{}@{}", want.0, want.1);
    ensure!(
        view.versions.get(&label) == Some(&s.devices),
        "the devices say they run {:?}, the coordinator wants {label} everywhere",
        view.versions
    );
    ensure!(
        report.predictions_stored + report.predictions_unreported == report.predictions_made,
        "the coordinator stored {} predictions; the devices made {} of which {} were lost with killed devices' memory",
        report.predictions_stored,
        report.predictions_made,
        report.predictions_unreported
    );
    let strays = stray_files(&s.dir.join("fleet"))?;
    ensure!(strays.is_empty(), "stray files on the devices: {strays:?}");
    rt.block_on(
        Arc::into_inner(fleet)
            .context("the fleet is still shared")?
            .stop(),
    );
    Ok(report)
}

/// Live predictions the coordinator stored, over every version.
fn stored_predictions(api: &Client) -> Result<u64> {
    let t = api.telemetry(0)?;
    Ok(t["versions"]
        .as_array()
        .context("telemetry without versions")?
        .iter()
        .filter(|v| v["role"] == "live")
        .filter_map(|v| v["predictions"].as_u64())
        .sum())
}

/// Files that should not be left: partial downloads, fetched probe samples,
/// half-written temporaries, unacknowledged reports.
fn stray_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let path = e.path();
            if e.file_type()?.is_dir() {
                todo.push(path);
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let in_outbox =
                path.parent().is_some_and(|p| p.ends_with("telemetry")) && name != "counters.json";
            if name.ends_with(".part")
                || name.ends_with(".probe")
                || name.contains(".tmp")
                || in_outbox
            {
                out.push(path);
            }
        }
    }
    Ok(out)
}
