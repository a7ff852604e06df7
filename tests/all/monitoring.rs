//! Monitoring end to end (issue 21 §5), every part a real process: a private
//! Mosquitto, the coordinator on the real PostgreSQL, and 50 simulated
//! devices (`wasmops fleet simulate --scenario`) whose applications draw
//! rows of the iris training set, send them through their agents, and post
//! each row's outcome a few seconds later. The coordinator buckets
//! telemetry every 2 s and its watcher judges the last 20 s; the scenario
//! changes the world (`POST /v1/fleet/change`) 25 s after the deployment
//! settled, so a full window of unchanged traffic is judged first.
//!
//! - steady: nothing is raised;
//! - covariate shift (sepal length and width move by half a std):
//!   `DataDriftDetected` names exactly those two;
//! - stuck sensor (sepal length reads 0 on every tenth device):
//!   `DataQualityAlert` names the column and exactly those devices, and no
//!   other column drifts;
//! - concept drift (outcomes become the next class): realised accuracy
//!   falls and `PerformanceDegraded` is raised.

use crate::common::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmops_fleet::mosquitto::Mosquitto;

const DEVICES: usize = 50;
/// Unchanged traffic judged after the deployment, before the change.
const STEADY_S: u64 = 25;
const FEATURES: [&str; 4] = ["sepal_length", "sepal_width", "petal_length", "petal_width"];

/// Dropped in field order: the fleet first, the directories last.
struct World {
    _fleet: Served,
    c: Coordinator,
    _broker: Mosquitto,
    _db: Postgres,
    _dir: tempfile::TempDir,
    admin: String,
    model: String,
    events: Seen,
    /// When the scenario's change began (the deployment's end + STEADY_S).
    changed_at: Instant,
    /// The same, in ms since the epoch (as trend points are stamped).
    changed_at_ms: i64,
    /// The coordinator's data directory and flags (for a restart).
    data: std::path::PathBuf,
    args: Vec<String>,
}

impl World {
    /// SIGKILLs the coordinator and starts it again where devices expect it.
    fn restart_coordinator(&mut self) {
        let listen = self.c.url.trim_start_matches("http://").to_string();
        self.c.process.child.kill().unwrap();
        self.c.process.child.wait().unwrap();
        self.c = start_coordinator_at(&self.data, &listen, &self.args);
    }

    /// Events of `kind` about this model.
    fn events(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind && e["detail"]["model"] == self.model.as_str())
            .cloned()
            .collect()
    }

    fn any_event(&self) -> Vec<Value> {
        [
            "DataDriftDetected",
            "PredictionDriftDetected",
            "DataQualityAlert",
            "PerformanceDegraded",
        ]
        .iter()
        .flat_map(|k| self.events(k))
        .collect()
    }

    fn wait_for(&self, kind: &str, limit: Duration) -> Vec<Value> {
        self.wait_for_one(kind, limit, |_| true)
    }

    /// Waits until an event of `kind` passes `check`; returns all of `kind`.
    fn wait_for_one(
        &self,
        kind: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let seen = self.events(kind);
            if seen.iter().any(&check) {
                return seen;
            }
            assert!(
                started.elapsed() < limit,
                "no {kind} within {limit:?}; events: {:#?}\nmonitor: {}",
                self.any_event(),
                self.monitor(&["--since", "5m"])
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn monitor(&self, extra: &[&str]) -> String {
        let mut args = vec!["monitor", self.model.as_str()];
        args.extend(extra);
        let out = cli(&self.c, &self.admin, &args);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn report(&self, since: &str) -> Value {
        let text = cli_ok(
            &self.c,
            &self.admin,
            &["monitor", &self.model, "--since", since, "--json"],
        );
        serde_json::from_str(&text).unwrap()
    }

    fn wait_until_changed(&self) {
        if let Some(left) = self.changed_at.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
    }
}

/// Starts the world for `scenario`, with the model deployed to the fleet.
fn world(scenario: &str, extra: &[&str]) -> World {
    world_with(scenario, extra, &[])
}

/// [`world`] with `coordinator` flags added to the coordinator's.
fn world_with(scenario: &str, extra: &[&str], coordinator: &[&str]) -> World {
    let tag = scenario.replace('-', "_");
    let dir = tempfile::tempdir().unwrap();
    let db = Postgres::fresh(&format!("monitor_{tag}"));
    let broker = Mosquitto::start().unwrap();
    let data = dir.path().join("coordinator");
    let args: Vec<String> = [
        "--trust",
        p(&keys().1),
        "--mqtt",
        &broker.url(),
        "--database",
        &db.url,
        "--monitor-bucket-seconds",
        "2",
        "--monitor-window-seconds",
        "20",
    ]
    .map(String::from)
    .to_vec();
    let args: Vec<String> = args
        .into_iter()
        .chain(coordinator.iter().map(|a| a.to_string()))
        .collect();
    let c = start_coordinator(&data, &args);
    let admin = admin_token(&data);
    let events = event_listener(&c.url, &admin);
    let model = format!("iris-{scenario}");
    let training = fixtures().join("drift/iris_coded.csv");
    let wasm = scratch().join(format!("{model}.wasm"));
    ok(&[
        "build",
        p(&fixtures().join("scaler_logreg/model.onnx")),
        "--out",
        p(&wasm),
        "--name",
        &model,
        "--version",
        "1.0.0",
        "--training-data",
        p(&training),
        "--label-column",
        "species",
    ]);
    ok(&["sign", p(&wasm), "--key", p(&keys().0)]);
    cli_ok(&c, &admin, &["model", "register", p(&wasm)]);
    let prefix = format!("{}-", &tag[..4]);
    let enrolment = cli_ok(
        &c,
        &admin,
        &["enrolment", "--devices", &format!("{prefix}*")],
    );
    let state = dir.path().join("fleet");
    let n = DEVICES.to_string();
    let mqtt = broker.url();
    let mut fleet_args = vec![
        "fleet",
        "simulate",
        "--devices",
        &n,
        "--id-prefix",
        &prefix,
        "--mqtt",
        &mqtt,
        "--state-dir",
        p(&state),
        "--trust",
        p(&keys().1),
        "--label",
        "fleet=monitor",
        "--spread",
        "site=eu,us",
        "--rate",
        "2",
        "--telemetry-interval-ms",
        "1000",
        "--scenario",
        scenario,
        "--training-data",
        p(&training),
        "--label-column",
        "species",
        // The test changes the world itself, after the deployment.
        "--change-after",
        "86400",
        "--label-delay",
        "3",
        "--coordinator",
        &c.url,
        "--token",
        &admin,
        "--enrolment-token",
        &enrolment,
    ];
    fleet_args.extend(extra);
    let fleet = serve(&fleet_args);
    wait_until("the devices online", || {
        api_get(&c, &admin, "/v1/devices")
            .as_array()
            .is_some_and(|l| l.iter().filter(|d| d["state"] == "online").count() >= DEVICES)
    });
    cli_ok(
        &c,
        &admin,
        &[
            "deploy",
            &model,
            "1.0.0",
            "--selector",
            "fleet=monitor",
            "--wait",
            "120",
        ],
    );
    let changed_at = Instant::now() + Duration::from_secs(STEADY_S);
    let changed_at_ms = wasmops_protocol::now_ms() + (STEADY_S * 1000) as i64;
    let change = format!(
        "{}/v1/fleet/change",
        fleet.url.trim_end_matches("/v1/fleet")
    );
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(STEADY_S));
        // The fleet may be gone with a test that ended first.
        let _ = http().post(change).send();
    });
    World {
        _dir: dir,
        _db: db,
        _broker: broker,
        c,
        admin,
        model,
        events,
        _fleet: fleet,
        changed_at,
        changed_at_ms,
        data,
        args,
    }
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn steady_traffic_raises_nothing() {
    let w = world("steady", &[]);
    // A minute of traffic from the training distribution, outcomes included.
    std::thread::sleep(Duration::from_secs(60));
    assert!(w.any_event().is_empty(), "{:#?}", w.any_event());
    let r = w.report("5m");
    assert_eq!(r["devices"], DEVICES as u64, "{r:#}");
    assert_eq!(r["data_drift"]["dataset_drift"], false, "{r:#}");
    for c in r["data_drift"]["columns"].as_array().unwrap() {
        assert_eq!(c["drifted"], false, "{c}");
        assert_eq!(c["method"], "wasserstein_norm");
        assert!(c["score"].as_f64().unwrap() < 0.1, "{c}");
    }
    assert_eq!(r["quality"], serde_json::json!([]), "{r:#}");
    // Realised accuracy on the training rows, and the model's own estimate.
    let perf = &r["performance"];
    assert!(perf["labelled"].as_u64().unwrap() > 500, "{perf}");
    assert!(perf["accuracy"].as_f64().unwrap() > 0.9, "{perf}");
    assert!(perf["estimated_accuracy"].as_f64().unwrap() > 0.6, "{perf}");
    assert_eq!(r["label_drift"]["columns"][0]["drifted"], false, "{r:#}");
    let text = w.monitor(&["--since", "5m"]);
    assert!(text.contains("data drift: not detected"), "{text}");
}

#[test]
fn covariate_shift_names_exactly_the_moved_features() {
    let w = world("covariate-shift", &[]);
    w.wait_until_changed();
    let shifted_at = Instant::now();
    let seen = w.wait_for("DataDriftDetected", Duration::from_secs(90));
    let took = shifted_at.elapsed();
    assert_eq!(seen[0]["subject"], format!("{}@1.0.0", w.model));
    eprintln!("DataDriftDetected {took:?} after the shift (2 s buckets, 20 s window)");
    // The two columns may cross the threshold a look apart: together, the
    // events name exactly the moved features.
    std::thread::sleep(Duration::from_secs(10));
    let moved = BTreeSet::from(["sepal_length".to_string(), "sepal_width".to_string()]);
    let named: BTreeSet<String> = w
        .events("DataDriftDetected")
        .iter()
        .flat_map(|e| names(&e["detail"]["columns"]))
        .collect();
    assert_eq!(named, moved, "{:#?}", w.events("DataDriftDetected"));
    let d = &w.events("DataDriftDetected").last().unwrap()["detail"].clone();
    // The report and the page show the shift over time.
    let r = w.report("10m");
    let drifted: BTreeSet<String> = r["data_drift"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["drifted"] == true)
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert!(drifted.is_subset(&moved), "{r:#}");
    // Both sites shifted: each label group's own counts show it.
    for site in ["site=eu", "site=us"] {
        let g = r["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == site)
            .unwrap_or_else(|| panic!("{site}: {r:#}"));
        assert_eq!(g["devices"], 25);
        let named: BTreeSet<String> = g["drifted"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(named, moved, "{g:#}");
    }
    assert_eq!(names(&d["columns"]), moved, "{d:#}");
    // Per 2 s point (~800 rows: sampling noise alone reaches 0.1 there):
    // low on average before the shift, every point high after it.
    // The newest point is still filling while the report is read: a few
    // rows, and their noise, are no verdict.
    let trend = r["trend"].as_array().unwrap();
    let complete = &trend[..trend.len().saturating_sub(1)];
    for column in ["sepal_length", "sepal_width"] {
        let scores = |before: bool| -> Vec<f64> {
            complete
                .iter()
                .filter(|p| {
                    let start = p["start_ms"].as_i64().unwrap();
                    if before {
                        start + 3_000 < w.changed_at_ms
                    } else {
                        start > w.changed_at_ms + 3_000
                    }
                })
                .filter_map(|p| p["scores"][column].as_f64())
                .collect()
        };
        let (pre, post) = (scores(true), scores(false));
        assert!(pre.len() >= 3 && post.len() >= 3, "{trend:#?}");
        // The median: the fleet's first bucket can be sparse (devices still
        // starting on a loaded machine), and few rows score noisily
        // (session 31: one at 0.53 among eleven under 0.06).
        let mut sorted = pre.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(median < 0.07, "{column} before: {pre:?}");
        assert!(post.iter().all(|s| *s > 0.25), "{column} after: {post:?}");
    }
    let page = scratch().join("monitor-covariate-shift.html");
    let out = cli(
        &w.c,
        &w.admin,
        &["monitor", &w.model, "--since", "10m", "--html", p(&page)],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = browse(&page);
    assert_eq!(seen["errors"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["requests"], serde_json::json!([]), "{seen}");
    let plots = seen["plots"].as_array().unwrap();
    assert_eq!(plots.len(), FEATURES.len(), "one trend per column: {seen}");
    for plot in plots {
        assert!(plot["points"].as_u64().unwrap() >= 10, "{plot}");
    }
}

#[test]
fn a_stuck_sensor_is_a_quality_alert_naming_its_devices() {
    let w = world("stuck-sensor", &[]);
    // A loop that would retrain on drift or decay: a stuck sensor must start
    // no run (it is fixed, not learnt), even where it shows as drift.
    let training = fixtures().join("drift/iris_coded.csv");
    cli_ok(
        &w.c,
        &w.admin,
        &[
            "dataset",
            "push",
            p(&training),
            "--name",
            "iris-stuck",
            "--label",
            "species",
        ],
    );
    let loop_file = scratch().join("stuck-loop.toml");
    std::fs::write(
        &loop_file,
        "trainer = \"builtin:logistic\"\ndataset = \"iris-stuck\"\n[triggers]\non = [\"DataDriftDetected\", \"PerformanceDegraded\"]\n",
    )
    .unwrap();
    cli_ok(&w.c, &w.admin, &["loop", "set", &w.model, p(&loop_file)]);
    w.wait_until_changed();
    // Out of range at once; stuck once a device's window holds only stuck
    // values (devices get there a report apart: the alert is raised again,
    // naming them all, as it spreads).
    let stuck: BTreeSet<String> = (0..DEVICES)
        .filter(|i| i.is_multiple_of(10))
        .map(|i| format!("stuc-{i:04}"))
        .collect();
    let low_unique = |e: &Value| e["detail"]["anomaly"] == "FEATURE_TYPE_LOW_UNIQUE";
    let seen = w.wait_for_one("DataQualityAlert", Duration::from_secs(90), |e| {
        low_unique(e) && names(&e["detail"]["devices"]) == stuck
    });
    for e in seen.iter().filter(|e| low_unique(e)) {
        assert_eq!(e["detail"]["column"], "sepal_length");
        assert!(names(&e["detail"]["devices"]).is_subset(&stuck), "{e:#}");
    }
    let all = seen
        .iter()
        .find(|e| low_unique(e) && names(&e["detail"]["devices"]) == stuck)
        .unwrap();
    assert_eq!(
        all["detail"]["groups"],
        serde_json::json!({"fleet=monitor": 5, "site=eu": 5}),
        "devices 0, 10, 20, 30, 40 are all in site=eu"
    );
    // Another ten seconds: still no drift on any other column, and no run.
    std::thread::sleep(Duration::from_secs(10));
    for e in w.events("DataDriftDetected") {
        assert_eq!(
            names(&e["detail"]["columns"]),
            BTreeSet::from(["sepal_length".to_string()]),
            "{e:#}"
        );
    }
    let runs: Value = serde_json::from_str(&cli_ok(
        &w.c,
        &w.admin,
        &["runs", "list", "--model", &w.model, "--json"],
    ))
    .unwrap();
    assert_eq!(
        runs,
        serde_json::json!([]),
        "drift events: {:#?}",
        w.events("DataDriftDetected")
    );
    // Monitoring one site shows the devices there.
    let r: Value = serde_json::from_str(&cli_ok(
        &w.c,
        &w.admin,
        &[
            "monitor",
            &w.model,
            "--since",
            "1m",
            "--selector",
            "site=us",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(r["devices"], 25, "{r:#}");
    assert!(
        r["quality"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["anomaly"] != "FEATURE_TYPE_LOW_UNIQUE"),
        "no stuck device in site=us: {r:#}"
    );
}

#[test]
fn concept_drift_shows_accuracy_falling_and_the_loop_retrains_and_promotes() {
    // The loop's worker signs with its own key, which devices and the
    // coordinator trust too; devices sample production rows for retraining.
    let (loop_key, loop_pub) = keygen("concept-loop");
    let model = "iris-concept-drift";
    let sample = format!("{model}=20");
    let mut w = world_with(
        "concept-drift",
        &["--trust", p(&loop_pub), "--sample-rows", &sample],
        &["--trust", p(&loop_pub), "--worker-key", p(&loop_key)],
    );
    let loop_file = scratch().join("concept-loop.toml");
    std::fs::write(
        &loop_file,
        concat!(
            "trainer = \"builtin:logistic\"\n",
            "[from_production]\nfresh = \"10s\"\nmin_rows = 300\n",
            "[triggers]\non = [\"PerformanceDegraded\"]\n",
            "[release]\napproval = \"auto\"\n",
            "rollout = { selector = { fleet = \"monitor\" }, waves = [20, 100] }\n",
        ),
    )
    .unwrap();
    cli_ok(&w.c, &w.admin, &["loop", "set", model, p(&loop_file)]);
    w.wait_until_changed();
    let seen = w.wait_for("PerformanceDegraded", Duration::from_secs(90));
    let d = &seen[0]["detail"];
    assert!(
        d["accuracy"].as_f64().unwrap() + 0.1 < d["estimated_accuracy"].as_f64().unwrap(),
        "{d:#}"
    );
    // Inputs did not move: no data drift.
    assert!(w.events("DataDriftDetected").is_empty());
    // Realised accuracy per bucket: high before the change, low after it.
    std::thread::sleep(Duration::from_secs(10));
    let r = w.report("5m");
    let accuracy: Vec<f64> = r["trend"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["labelled"].as_u64().unwrap_or(0) >= 20)
        .filter_map(|p| p["accuracy"].as_f64())
        .collect();
    assert!(accuracy.len() >= 6, "{r:#}");
    assert!(accuracy[0] > 0.85, "{accuracy:?}");
    assert!(*accuracy.last().unwrap() < 0.3, "{accuracy:?}");
    let text = w.monitor(&["--since", "5m"]);
    assert!(text.contains("estimated accuracy"), "{text}");

    // The loop: PerformanceDegraded → a run on fresh labelled production rows
    // → the candidate beats the champion on them → canary → promoted, even
    // with the coordinator SIGKILLed during the canary.
    let started = Instant::now();
    loop {
        let view = api_get(&w.c, &w.admin, &format!("/v1/models/{model}/loop"));
        if view["promotions"][0]["state"] == "rolling_out" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(240), "{view:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
    w.restart_coordinator();
    let promoted = w.wait_for("ModelPromoted", Duration::from_secs(240));
    let version = promoted[0]["detail"]["version"]
        .as_str()
        .unwrap()
        .to_string();
    let run_id = promoted[0]["detail"]["run"].as_str().unwrap().to_string();
    let run: Value = serde_json::from_str(&cli_ok(
        &w.c,
        &w.admin,
        &["runs", "show", &run_id, "--json"],
    ))
    .unwrap();
    assert_eq!(run["trigger"], "PerformanceDegraded", "{run:#}");
    let metrics = &run["metrics"];
    let (new, old) = (
        metrics["candidate"]["accuracy"].as_f64().unwrap(),
        metrics["champion"]["accuracy"].as_f64().unwrap(),
    );
    assert!(new > old + 0.2, "candidate {new} vs champion {old}");
    let dataset = &run["datasets"][0];
    let shown: Value = serde_json::from_str(&cli_ok(
        &w.c,
        &w.admin,
        &[
            "dataset",
            "show",
            &format!(
                "{}@{}",
                dataset["name"].as_str().unwrap(),
                dataset["version"]
            ),
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(shown[0]["provenance"]["source"], "production", "{shown:#}");
    assert!(
        shown[0]["provenance"]["devices"].as_u64().unwrap() >= 10,
        "{shown:#}"
    );
    let production = api_get(
        &w.c,
        &w.admin,
        &format!("/v1/models/{model}/versions/production"),
    );
    assert_eq!(production["version"], version.as_str());
    assert_eq!(
        production["claims"]["lineage"]["training_run"],
        run_id.as_str()
    );
    let devices = api_get(&w.c, &w.admin, "/v1/devices");
    let on_new = devices
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["active_version"] == version.as_str())
        .count();
    assert_eq!(on_new, DEVICES, "{devices:#}");
    // And the fleet is right again about the new rule.
    let started = Instant::now();
    loop {
        let r: Value = serde_json::from_str(&cli_ok(
            &w.c,
            &w.admin,
            &[
                "monitor",
                model,
                "--version",
                &version,
                "--since",
                "30s",
                "--json",
            ],
        ))
        .unwrap();
        let perf = &r["performance"];
        if perf["labelled"].as_u64().unwrap_or(0) >= 200
            && perf["accuracy"].as_f64().unwrap_or(0.0) > 0.8
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "{perf:#}");
        std::thread::sleep(Duration::from_secs(2));
    }
}
