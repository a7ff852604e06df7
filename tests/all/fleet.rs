//! The fleet loop end to end, every part a real process: a private Mosquitto,
//! the coordinator, and 50 simulated devices (`wasmops fleet simulate`, each
//! its own MQTT connection) sending application traffic the whole time.
//!
//! In order: a version whose health probe fails is aborted in wave 1 and the
//! fleet keeps the old one; a slow version breaks the latency gate, is aborted
//! and rolled back; a good version is canaried to all (approved wave by wave,
//! paused and resumed) while the coordinator is SIGKILLed mid-rollout and
//! restarted (it carries on); a shadow run
//! reports agreement without touching the answers; blue-green switches all.
//! Then the broker is SIGKILLed under traffic and restarted, and every
//! prediction the devices made is counted exactly once by the coordinator.
//! No prediction fails at any point.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmops_fleet::mosquitto::Mosquitto;

const DEVICES: usize = 50;

struct Fleet(Served, usize);

impl Fleet {
    fn view(&self) -> Value {
        http()
            .get(format!("{}/v1/fleet", self.0.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    fn post(&self, path: &str) {
        assert!(
            http()
                .post(format!("{}{path}", self.0.url))
                .send()
                .unwrap()
                .status()
                .is_success()
        );
    }

    /// Every device runs `version` (and no shadow).
    fn all_on(&self, version: &str) -> bool {
        let v = self.view();
        v["versions"][format!("iris@{version}")] == self.1
            && v["devices"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["shadow"].is_null())
    }
}

/// `devices` simulated devices named `{prefix}0000`…, labelled `fleet=e2e`.
fn start_fleet(
    dir: &Path,
    c: &Coordinator,
    mqtt: &str,
    enrolment: &str,
    prefix: &str,
    devices: usize,
) -> Fleet {
    let (sample, state, n) = (
        fixtures().join("scaler_logreg/input_b1.json"),
        dir.join(format!("fleet-{prefix}")),
        devices.to_string(),
    );
    let mut args = vec![
        "fleet",
        "simulate",
        "--devices",
        &n,
        "--id-prefix",
        prefix,
        "--mqtt",
        mqtt,
        "--state-dir",
        p(&state),
        "--trust",
        p(&keys().1),
    ];
    args.extend([
        "--label",
        "fleet=e2e",
        "--spread",
        "site=eu,us",
        "--rate",
        "4",
        "--sample",
        p(&sample),
        "--telemetry-interval-ms",
        "500",
    ]);
    args.extend(["--coordinator", &c.url, "--enrolment-token", enrolment]);
    let mut fleet = serve(&args);
    fleet.url = fleet.url.trim_end_matches("/v1/fleet").to_string();
    Fleet(fleet, devices)
}

/// Registers iris releases built from `(fixture, version, sequence)`.
fn register(c: &Coordinator, token: &str, releases: &[(&str, &str, &str)]) {
    for (model, version, seq) in releases {
        cli_ok(
            c,
            token,
            &["model", "register", p(&release(model, version, seq))],
        );
    }
}

/// iris 1.0.0 and 1.1.0 registered on a fresh coordinator: its admin token,
/// and an enrolment token for `sim-*`.
fn two_releases(c: &Coordinator, data: &Path) -> (String, String) {
    let admin = admin_token(data);
    let enrolment = cli_ok(c, &admin, &["enrolment", "--devices", "sim-*"]);
    register(
        c,
        &admin,
        &[
            ("scaler_logreg", "1.0.0", "1"),
            ("scaler_logreg", "1.1.0", "2"),
        ],
    );
    (admin, enrolment)
}

/// Starts `devices` devices, waits until they are online, deploys iris
/// 1.0.0 to `fleet=e2e` and waits until they all run it.
fn fleet_on_first_version(
    dir: &Path,
    c: &Coordinator,
    token: &str,
    (mqtt, enrolment): (&str, &str),
    prefix: &str,
    devices: usize,
) -> Fleet {
    let fleet = start_fleet(dir, c, mqtt, enrolment, prefix, devices);
    wait_until("the devices online", || online(c, token) >= devices);
    cli_ok(
        c,
        token,
        &[
            "deploy",
            "iris",
            "1.0.0",
            "--selector",
            "fleet=e2e",
            "--wait",
            "300",
        ],
    );
    wait_long("the fleet on 1.0.0", Duration::from_secs(60), || {
        fleet.all_on("1.0.0")
    });
    fleet
}

/// Devices whose `state` (from `/v1/devices`) is online.
fn online(c: &Coordinator, token: &str) -> usize {
    let d: Value = http()
        .get(format!("{}/v1/devices", c.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    d.as_array()
        .unwrap()
        .iter()
        .filter(|x| x["state"] == "online")
        .count()
}

/// The desired states the broker holds retained, by device (the body of
/// each signed envelope).
fn retained_desired(mqtt: &str) -> std::collections::BTreeMap<String, Value> {
    let opts = mqtt_options(format!("retained-{}", std::process::id()), mqtt);
    let (client, mut conn) = rumqttc::Client::new(opts, 256);
    client
        .subscribe("wasmops/v1/devices/+/desired", rumqttc::QoS::AtLeastOnce)
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    // Retained messages arrive right after the SubAck; a quiet second ends them.
    while let Ok(ev) = conn.recv_timeout(Duration::from_secs(1)) {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) = ev {
            let device = wasmops_protocol::topics::device_of(&p.topic)
                .unwrap()
                .to_string();
            // Signed envelopes: the test reads the body without checking.
            let state = serde_json::from_slice::<wasmops_protocol::signed::Envelope>(&p.payload)
                .ok()
                .and_then(|e| e.body_unverified::<Value>().ok());
            seen.insert(device, state.map_or(Value::Null, |s| s["desired"].clone()));
        }
    }
    seen
}

fn release(model: &str, version: &str, sequence: &str) -> PathBuf {
    let out = scratch().join(format!("iris-{version}.wasm"));
    let training = fixtures().join("scaler_logreg/input_b5.json");
    ok(&[
        "build",
        p(&fixtures().join(model).join("model.onnx")),
        "--out",
        p(&out),
        "--name",
        "iris",
        "--version",
        version,
        "--sequence",
        sequence,
        "--training-data",
        p(&training),
    ]);
    ok(&["sign", p(&out), "--key", p(&keys().0)]);
    out
}

fn rollout_view(c: &Coordinator, token: &str, id: &str) -> Value {
    http()
        .get(format!("{}/v1/rollouts/{id}", c.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

fn wait_long(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `wasmops rollout create … --wait`: (success, stderr).
fn rollout(c: &Coordinator, token: &str, args: &[&str]) -> (bool, String) {
    let mut all = vec!["rollout", "create"];
    all.extend(args);
    all.extend([
        "--selector",
        "fleet=e2e",
        "--min-predictions",
        "20",
        "--bake",
        "2",
        "--timeout",
        "120",
        "--wait",
        "300",
    ]);
    let out = cli(c, token, &all);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn stored_predictions(c: &Coordinator, token: &str) -> u64 {
    let t: Value = http()
        .get(format!("{}/v1/telemetry", c.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    t["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["role"] == "live")
        .map(|v| v["predictions"].as_u64().unwrap())
        .sum()
}

/// One fleet at a time: two would share the machine's two cores.
static ONE_FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn fleet_on_sqlite() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    scenario(None);
}

#[test]
fn fleet_on_postgres() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let db = Postgres::fresh("fleet");
    scenario(Some(&db.url));
}

fn scenario(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start().unwrap();
    let listen = free_addr();
    let data = dir.path().join("coordinator");
    let mut coordinator_args = vec![
        "--trust".to_string(),
        p(&keys().1).to_string(),
        "--mqtt".to_string(),
        broker.url(),
    ];
    if let Some(url) = database {
        coordinator_args.extend(["--database".to_string(), url.to_string()]);
    }
    let mut c = start_coordinator_at(&data, &listen, &coordinator_args);
    let events = broker_events(&broker.url());
    let admin = admin_token(&data);
    let token = |name: &str, role: &str| {
        let out = cli(
            &c,
            &admin,
            &["token", "create", "--name", name, "--role", role],
        );
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let ops = token("ops", "operator");
    let out = cli(&c, &ops, &["enrolment", "--devices", "sim-*"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrolment = String::from_utf8(out.stdout).unwrap().trim().to_string();
    register(
        &c,
        &admin,
        &[
            ("scaler_logreg", "1.0.0", "1"),
            ("scaler_logreg", "1.1.0", "2"),
            ("slow_iris", "1.2.0", "3"),
            ("scaler_logreg", "1.3.0", "4"),
            ("scaler_logreg", "1.4.0", "5"),
            ("scaler_logreg", "1.5.0", "6"),
        ],
    );
    let fleet = fleet_on_first_version(
        dir.path(),
        &c,
        &ops,
        (&broker.url(), &enrolment),
        "sim-",
        DEVICES,
    );

    // 1. A version whose health probe fails: wave 1 fails, the rollout aborts, nobody switched.
    let bad_probe = dir.path().join("bad-probe.json");
    std::fs::write(
        &bad_probe,
        r#"{"inputs":[{"name":"X","shape":[1,3],"data":[1.0, 2.0, 3.0]}]}"#,
    )
    .unwrap();
    let (passed, err) = rollout(&c, &ops, &["iris", "1.1.0", "--probe", p(&bad_probe)]);
    assert!(
        !passed && err.contains("aborted") && err.contains("health check failed"),
        "{err}"
    );
    wait_long("the fleet still on 1.0.0", Duration::from_secs(60), || {
        fleet.all_on("1.0.0")
    });

    // 2. A slow version: installs fine, but wave 1's p95 latency breaks the gate;
    //    its devices are rolled back (the canary install was provisional).
    let (passed, err) = rollout(&c, &ops, &["iris", "1.2.0", "--max-latency-ms", "5"]);
    assert!(!passed && err.contains("gate: p95 latency"), "{err}");
    wait_long(
        "the canary devices rolled back to 1.0.0",
        Duration::from_secs(60),
        || fleet.all_on("1.0.0"),
    );

    // 3. A good version, canaried to all with approval between waves, paused and resumed;
    //    the coordinator is SIGKILLed during wave 2 and restarted.
    let out = cli(
        &c,
        &ops,
        &[
            "rollout",
            "create",
            "iris",
            "1.3.0",
            "--selector",
            "fleet=e2e",
            "--waves",
            "10,50,100",
            "--min-predictions",
            "20",
            "--bake",
            "2",
            "--max-latency-ms",
            "250",
            "--manual-approval",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let act = |c: &Coordinator, action: &str| {
        let out = cli(c, &ops, &["rollout", action, &id]);
        assert!(
            out.status.success(),
            "rollout {action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    wait_long(
        "wave 1 to pass and wait for approval",
        Duration::from_secs(120),
        || rollout_view(&c, &ops, &id)["state"] == "waiting-approval",
    );
    std::thread::sleep(Duration::from_millis(1500));
    let v = rollout_view(&c, &ops, &id);
    assert_eq!(v["state"], "waiting-approval", "{v}");
    assert_eq!(
        v["wave_detail"][1]["states"]["pending"], v["wave_detail"][1]["devices"],
        "wave 2 must not start before approval: {v}"
    );
    act(&c, "approve");
    wait_long("wave 2 to start", Duration::from_secs(60), || {
        let v = rollout_view(&c, &ops, &id);
        v["wave"] == 2 && v["phase"] != "pending"
    });
    act(&c, "pause");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(rollout_view(&c, &ops, &id)["state"], "paused");
    act(&c, "resume");
    c.process.child.kill().unwrap();
    c.process.child.wait().unwrap();
    drop(c);
    c = start_coordinator_at(&data, &listen, &coordinator_args);
    wait_long(
        "wave 2 to pass after the restart",
        Duration::from_secs(120),
        || rollout_view(&c, &ops, &id)["state"] == "waiting-approval",
    );
    act(&c, "approve");
    let out = cli(&c, &ops, &["rollout", "status", &id, "--wait", "300"]);
    assert!(
        out.status.success(),
        "the restarted coordinator did not finish the rollout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_long("the fleet on 1.3.0", Duration::from_secs(60), || {
        fleet.all_on("1.3.0")
    });

    // 4. Shadow: 1.4.0 beside 1.3.0 on the same inputs; agreement reported, answers untouched, shadow removed.
    let (passed, err) = rollout(
        &c,
        &ops,
        &[
            "iris",
            "1.4.0",
            "--strategy",
            "shadow",
            "--min-agreement",
            "0.99",
        ],
    );
    assert!(passed, "{err}");
    let r: Value = http()
        .get(format!("{}/v1/rollouts", c.url))
        .bearer_auth(&ops)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let shadow_id = r[0]["id"].as_str().unwrap().to_string();
    let shadow = rollout_view(&c, &ops, &shadow_id);
    assert_eq!(shadow["telemetry"]["agreement"], 1.0, "{shadow}");
    assert!(
        shadow["telemetry"]["predictions"].as_u64().unwrap() >= 20,
        "{shadow}"
    );
    wait_long(
        "shadows removed, fleet still on 1.3.0",
        Duration::from_secs(60),
        || fleet.all_on("1.3.0"),
    );

    // 5. Blue-green: all stage 1.4.0, then all switch.
    let (passed, err) = rollout(&c, &ops, &["iris", "1.4.0", "--strategy", "blue-green"]);
    assert!(passed, "{err}");
    wait_long("the fleet on 1.4.0", Duration::from_secs(60), || {
        fleet.all_on("1.4.0")
    });

    // 6. The broker dies under traffic and comes back: devices buffer, resend, nothing lost or doubled.
    broker.kill();
    std::thread::sleep(Duration::from_secs(3));
    broker.restart().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    fleet.post("/v1/fleet/traffic?rate=0");
    std::thread::sleep(Duration::from_millis(500));
    fleet.post("/v1/fleet/flush");
    wait_long(
        "every telemetry report acknowledged",
        Duration::from_secs(120),
        || fleet.view()["pending_reports"] == 0,
    );
    let view = fleet.view();
    let made = view["ok"].as_u64().unwrap() + view["failed"].as_u64().unwrap();
    assert_eq!(
        view["failed"], 0,
        "a prediction failed during the rollouts: {view}"
    );
    assert_eq!(view["dropped_reports"], 0);
    assert!(made > 1000, "the fleet made only {made} predictions");
    assert_eq!(
        stored_predictions(&c, &ops),
        made,
        "the coordinator's telemetry must count every prediction once"
    );

    // Input features are binned by the training-data deciles signed into the claims.
    let t: Value = http()
        .get(format!("{}/v1/telemetry", c.url))
        .bearer_auth(&ops)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let live = t["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == "1.4.0" && v["role"] == "live")
        .expect("telemetry for 1.4.0");
    for f in 0..4 {
        let s = &live["stats"]["features"][format!("X[{f}]")];
        let bins: u64 = s["bins"]
            .as_array()
            .unwrap_or_else(|| panic!("no bins for X[{f}]: {s}"))
            .iter()
            .map(|b| b.as_u64().unwrap())
            .sum();
        assert_eq!(
            bins,
            s["count"].as_u64().unwrap() - s["nulls"].as_u64().unwrap(),
            "{s}"
        );
    }

    // 7. A device vanishes; a blue-green with a budget of one unavailable device
    //    goes ahead without it (it keeps its version until it returns).
    fleet.post("/v1/fleet/traffic?rate=4");
    fleet.post("/v1/fleet/devices/sim-0007/crash");
    wait_until("sim-0007 offline", || {
        let d: Value = http()
            .get(format!("{}/v1/devices", c.url))
            .bearer_auth(&ops)
            .send()
            .unwrap()
            .json()
            .unwrap();
        d.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == "sim-0007" && x["state"] == "offline")
    });
    let (passed, err) = rollout(
        &c,
        &ops,
        &[
            "iris",
            "1.5.0",
            "--strategy",
            "blue-green",
            "--max-unavailable",
            "1",
        ],
    );
    assert!(passed, "{err}");
    let view = fleet.view();
    assert_eq!(
        view["versions"]["iris@1.5.0"],
        DEVICES - 1,
        "{}",
        view["versions"]
    );

    // Events on MQTT (the listener reconnects after the broker restart).
    assert!(
        count(&events, "RolloutStarted", None) >= 4,
        "{:?}",
        events.lock().unwrap()
    );
    assert!(count(&events, "RolloutAborted", None) >= 1);
    assert!(count(&events, "WaveCompleted", None) >= 3);
}

/// Issue 24.3: ending a rollout is resumable. The coordinator is SIGKILLed in
/// the middle of an abort (after two of six devices were sent back); the
/// restarted one finishes the abort, while every second publish of an end
/// state fails; then a rollout succeeds under the same publish errors and
/// every device ends committed (its retained desired state is final, not
/// provisional). Before the fix the abort was marked final first and stopped
/// at the first error: four devices kept the candidate.
#[test]
fn rollout_ends_survive_a_kill_and_publish_errors() {
    const N: usize = 6;
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let listen = free_addr();
    let data = dir.path().join("coordinator");
    let args = |fault: &str| {
        [
            "--trust",
            p(&keys().1),
            "--mqtt",
            &broker.url(),
            "--fault",
            fault,
        ]
        .map(String::from)
        .to_vec()
    };
    let mut c = start_coordinator_at(&data, &listen, &args("rollout-end=hang-at:3"));
    let events = broker_events(&broker.url());
    let (admin, enrolment) = two_releases(&c, &data);
    let fleet = fleet_on_first_version(
        dir.path(),
        &c,
        &admin,
        (&broker.url(), &enrolment),
        "sim-",
        N,
    );

    // A canary that would bake for ten minutes: all six run 1.1.0 meanwhile.
    let id = cli_ok(
        &c,
        &admin,
        &[
            "rollout",
            "create",
            "iris",
            "1.1.0",
            "--selector",
            "fleet=e2e",
            "--waves",
            "100",
            "--bake",
            "600",
        ],
    );
    wait_long("the fleet on 1.1.0", Duration::from_secs(120), || {
        fleet.all_on("1.1.0")
    });
    // The abort hangs before its third device: the API call never returns.
    let (url, token, rid) = (c.url.clone(), admin.clone(), id.clone());
    std::thread::spawn(move || {
        let _ = http()
            .post(format!("{url}/v1/rollouts/{rid}/abort"))
            .bearer_auth(token)
            .send();
    });
    wait_long("two devices sent back", Duration::from_secs(60), || {
        let v = rollout_view(&c, &admin, &id);
        v["state"] == "aborting" && v["wave_detail"][0]["states"]["rolled-back"] == 2
    });
    std::thread::sleep(Duration::from_millis(500));
    c.process.child.kill().unwrap();
    c.process.child.wait().unwrap();
    drop(c);
    assert_eq!(
        count(&events, "RolloutAborted", Some(&id)),
        0,
        "not ended yet"
    );

    // Restarted, with every second publish of an end state failing.
    c = start_coordinator_at(&data, &listen, &args("rollout-end=fail-every:2"));
    wait_long("the abort to end", Duration::from_secs(60), || {
        rollout_view(&c, &admin, &id)["state"] == "aborted"
    });
    let v = rollout_view(&c, &admin, &id);
    assert_eq!(v["wave_detail"][0]["states"]["rolled-back"], N, "{v}");
    wait_long("the fleet back on 1.0.0", Duration::from_secs(60), || {
        fleet.all_on("1.0.0")
    });
    wait_until("one RolloutAborted event", || {
        count(&events, "RolloutAborted", Some(&id)) == 1
    });

    // Success under the same publish errors: every device committed.
    let (passed, err) = rollout(&c, &admin, &["iris", "1.1.0", "--waves", "100"]);
    assert!(passed, "{err}");
    wait_long("the fleet on 1.1.0", Duration::from_secs(60), || {
        fleet.all_on("1.1.0")
    });
    let desired = retained_desired(&broker.url());
    assert_eq!(desired.len(), N, "{desired:?}");
    for (device, d) in &desired {
        assert_eq!(d["version"], "1.1.0", "{device}: {d}");
        assert_eq!(d["provisional"], false, "{device} was not committed: {d}");
    }
    assert_eq!(count(&events, "RolloutSucceeded", None), 1);
}

/// Issue 24.15: a deployment to a selector is the selector's version from
/// then on. A device that enrols afterwards gets it without anyone deploying
/// again; a device given another version explicitly keeps it and `devices`
/// shows it as differing; a successful rollout to the selector moves the
/// group, and the next late joiner gets the rollout's version.
#[test]
fn late_joiners_converge_to_their_group() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start().unwrap();
    let data = dir.path().join("coordinator");
    let args = ["--trust", p(&keys().1), "--mqtt", &broker.url()].map(String::from);
    let c = start_coordinator(&data, &args);
    let (admin, enrolment) = two_releases(&c, &data);
    let first = fleet_on_first_version(
        dir.path(),
        &c,
        &admin,
        (&broker.url(), &enrolment),
        "sim-",
        2,
    );

    // A device enrolled after the deployment converges to it.
    let late = start_fleet(dir.path(), &c, &broker.url(), &enrolment, "sim-late-", 1);
    wait_long("the late joiner on 1.0.0", Duration::from_secs(60), || {
        late.all_on("1.0.0")
    });
    // The simulator's view can run ahead of the coordinator's: the device's
    // "active" status is still on its way through the broker.
    wait_long(
        "the coordinator to see all three in sync",
        Duration::from_secs(60),
        || {
            let devices = api_get(&c, &admin, "/v1/devices");
            let devices = devices.as_array().unwrap();
            devices.len() == 3
                && devices
                    .iter()
                    .all(|d| d["group"]["version"] == "1.0.0" && d["group"]["in_sync"] == true)
        },
    );

    // An explicit deployment to one device stands; `devices` shows the difference.
    cli_ok(
        &c,
        &admin,
        &[
            "deploy", "iris", "1.1.0", "--device", "sim-0000", "--wait", "300",
        ],
    );
    std::thread::sleep(Duration::from_secs(7)); // more than a reconciler pass
    let devices = api_get(&c, &admin, "/v1/devices");
    let d = devices
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "sim-0000")
        .unwrap();
    assert_eq!(d["active_version"], "1.1.0", "{d}");
    assert_eq!(d["group"]["in_sync"], false, "{d}");
    let out = cli(&c, &admin, &["devices"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("iris 1.0.0 (differs)"), "{table}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 device(s) differ"));

    // A rollout to the selector that succeeds moves the group.
    let (passed, err) = rollout(&c, &admin, &["iris", "1.1.0", "--waves", "100"]);
    assert!(passed, "{err}");
    let later = start_fleet(dir.path(), &c, &broker.url(), &enrolment, "sim-later-", 1);
    wait_long(
        "the next late joiner on 1.1.0",
        Duration::from_secs(60),
        || later.all_on("1.1.0"),
    );
    wait_long("everyone in sync", Duration::from_secs(60), || {
        api_get(&c, &admin, "/v1/devices")
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["group"]["version"] == "1.1.0" && d["group"]["in_sync"] == true)
    });
    drop(first);
}

/// The soak (`wasmops fleet soak`), short: 30 devices on PostgreSQL and a
/// private Mosquitto for a minute and a half of kills, two broker restarts
/// and a coordinator restart across three canaries (one aborted). The
/// command itself checks versions, counts, stray files and memory; here its
/// figures are checked to be what it claims.
#[test]
fn soak_short_on_postgres() {
    let _one = ONE_FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let db = Postgres::fresh("soak");
    let out = wasmops(&[
        "fleet",
        "soak",
        "--devices",
        "30",
        "--minutes",
        "1.5",
        "--database",
        &db.url,
        "--seed",
        "7",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let r: Value = serde_json::from_slice(&out.stdout).expect("the soak prints its figures");
    assert_eq!(r["devices"], 30);
    assert!(r["device_kills"].as_u64().unwrap() >= 5, "{r}");
    assert_eq!(r["broker_restarts"], 2);
    assert_eq!(r["coordinator_restarts"], 1);
    let states: Vec<&str> = r["rollouts"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "succeeded").count(),
        2,
        "{r}"
    );
    assert_eq!(states.iter().filter(|s| **s == "aborted").count(), 1, "{r}");
    assert_eq!(r["versions"]["churn@1.2.0"], 30, "{r}");
    let made = r["predictions_made"].as_u64().unwrap();
    assert!(made > 1000, "{r}");
    assert_eq!(
        r["predictions_stored"].as_u64().unwrap() + r["predictions_unreported"].as_u64().unwrap(),
        made
    );
}
