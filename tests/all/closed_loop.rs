//! The closed loop (issue 22) on the real PostgreSQL and a private
//! Mosquitto: datasets pushed and versioned, runs queued by `retrain` and
//! carried out by the coordinator's in-process worker (trained, built,
//! validated in the wasmtime host against the champion, signed with a
//! release key whose delegation covers only this model, registered with
//! lineage); a worse candidate and broken trainers fail their runs with
//! reasons and register nothing.

use std::path::PathBuf;

use serde_json::Value;

use wasmops_fleet::mosquitto::Mosquitto;

use crate::common::*;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `retrain` with `args`, waiting for the end: (succeeded, the run as JSON).
fn retrain(c: &Coordinator, token: &str, args: &[&str]) -> (bool, Value) {
    let mut all = vec!["retrain", "loop-iris", "--wait", "--json"];
    all.extend(args);
    let out = cli(c, token, &all);
    let stdout = String::from_utf8_lossy(&out.stdout);
    (out.status.success(), json(&stdout))
}

/// `retrain` on `dataset`, judged on `iris-holdout` within 0.1 of the champion.
fn retrain_on(c: &Coordinator, token: &str, dataset: &str) -> (bool, Value) {
    retrain(
        c,
        token,
        &[
            "--dataset",
            dataset,
            "--holdout",
            "iris-holdout",
            "--margin",
            "0.1",
        ],
    )
}

#[test]
fn retraining_is_validated_signed_registered_with_lineage_or_refused_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let db = Postgres::fresh("closed_loop");
    let broker = Mosquitto::start().unwrap();
    // Trust: a root; the team's release key and the loop's own key, each
    // delegated for this model only.
    let (root_key, root_pub) = keygen("loop-root");
    let (team_key, team_pub) = keygen("loop-team");
    let (loop_key, loop_pub) = keygen("loop-worker");
    let trust = dir.path().join("trust");
    ok(&[
        "trust",
        "init",
        "--dir",
        p(&trust),
        "--root-key",
        p(&root_key),
    ]);
    for (key, name) in [(&team_pub, "team"), (&loop_pub, "loop")] {
        ok(&delegate(
            &trust,
            &root_key,
            key,
            name,
            &["--models", "loop-iris"],
        ));
    }
    let champion = scaler_release(
        "loop-champion.wasm",
        "loop-iris",
        "1.0.0",
        &[
            "--sequence",
            "1",
            "--training-data",
            p(&fixtures().join("drift/iris_coded.csv")),
            "--label-column",
            "species",
        ],
        &team_key,
        Some(&trust.join("delegations/team.json")),
    );
    let (hook, hooked) = webhook_sink();
    let data = dir.path().join("coordinator");
    let workdir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/trainers");
    let args: Vec<String> = [
        "--root",
        p(&root_pub),
        "--trust-dir",
        p(&trust),
        "--database",
        &db.url,
        "--mqtt",
        &broker.url(),
        "--worker-key",
        p(&loop_key),
        "--worker-delegation",
        p(&trust.join("delegations/loop.json")),
        "--worker-workdir",
        p(&workdir),
        "--worker-commands",
        "--webhook",
        &hook,
    ]
    .map(String::from)
    .to_vec();
    let c = start_coordinator(&data, &args);
    let admin = admin_token(&data);
    cli_ok(&c, &admin, &["model", "register", p(&champion)]);
    cli_ok(
        &c,
        &admin,
        &["model", "alias", "loop-iris", "production", "1.0.0"],
    );

    // Datasets: versioned by content, summarised, refused without their label.
    let trainer = fixtures().join("trainer");
    let pushed = json(&cli_ok(
        &c,
        &admin,
        &[
            "dataset",
            "push",
            p(&trainer.join("iris_train.csv")),
            "--name",
            "iris",
            "--label",
            "species",
            "--json",
        ],
    ));
    assert_eq!(
        (pushed["version"].as_u64(), pushed["rows"].as_u64()),
        (Some(1), Some(120))
    );
    assert_eq!(
        pushed["labels"]["counts"],
        serde_json::json!({"0": 40, "1": 40, "2": 40})
    );
    cli_ok(
        &c,
        &admin,
        &[
            "dataset",
            "push",
            p(&trainer.join("iris_holdout.csv")),
            "--name",
            "iris-holdout",
            "--label",
            "species",
        ],
    );
    let refused = cli(
        &c,
        &admin,
        &[
            "dataset",
            "push",
            p(&trainer.join("iris_train.csv")),
            "--name",
            "x",
            "--label",
            "kind",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no label column `kind`"),
        "{refused:?}"
    );

    // 1. A retrained candidate within the margin of the champion (which saw
    // these holdout rows in its training: accuracy 1.0) is released.
    let (done, run) = retrain_on(&c, &admin, "iris");
    assert!(done, "{run:#}");
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["candidate"], "1.1.0");
    let v = &run["validation"];
    assert_eq!(v["passed"], true, "{v:#}");
    assert_eq!(v["champion"], "loop-iris@1.0.0");
    let checks: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in ["packaging", "schema", "metric", "latency", "size"] {
        assert!(checks.contains(&name), "{checks:?}");
    }
    // sklearn's accuracy on these rows (tests/fixtures/trainer/sklearn.json).
    let accuracy = run["metrics"]["candidate"]["accuracy"].as_f64().unwrap();
    assert!((accuracy - 0.9333).abs() < 0.01, "{accuracy}");
    assert_eq!(run["metrics"]["champion"]["accuracy"], 1.0);
    // Lineage: the registered version names the run, the dataset's bytes and
    // the code; it is signed by the loop's key under its delegation.
    let released = api_get(&c, &admin, "/v1/models/loop-iris/versions/1.1.0");
    let lineage = &released["claims"]["lineage"];
    assert_eq!(lineage["training_run"], id.as_str());
    assert_eq!(lineage["dataset_id"], "iris");
    assert_eq!(lineage["dataset_sha256"], pushed["sha256"]);
    assert!(
        lineage["code_commit"]
            .as_str()
            .unwrap()
            .starts_with("builtin:logistic")
    );
    assert_eq!(released["delegation"], "loop");
    assert!(released["claims"]["profile"]["rows"].as_u64().is_some());
    let logs = cli_ok(&c, &admin, &["runs", "show", &id, "--logs"]);
    assert!(logs.contains("gate metric: passed"), "{logs}");
    let shown = json(&cli_ok(
        &c,
        &admin,
        &["dataset", "show", "iris@1", "--json"],
    ));
    assert_eq!(shown[0]["used_by"][0], "loop-iris@1.1.0");

    // 2. A candidate trained on corrupted labels fails the gate: nothing is
    // registered, the run and ValidationFailed name the metric and both values.
    let bad = dir.path().join("iris-bad.csv");
    let text = std::fs::read_to_string(trainer.join("iris_train.csv")).unwrap();
    let mut lines = text.lines();
    let mut corrupted = format!("{}\n", lines.next().unwrap());
    for l in lines {
        let (x, y) = l.rsplit_once(',').unwrap();
        let y: u32 = y.parse().unwrap();
        corrupted.push_str(&format!("{x},{}\n", (y + 1) % 3));
    }
    std::fs::write(&bad, corrupted).unwrap();
    cli_ok(
        &c,
        &admin,
        &[
            "dataset",
            "push",
            p(&bad),
            "--name",
            "iris-bad",
            "--label",
            "species",
        ],
    );
    let (done, run) = retrain_on(&c, &admin, "iris-bad");
    assert!(!done);
    assert_eq!(run["status"], "failed");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("validation failed: metric: accuracy"),
        "{error}"
    );
    assert!(
        error.contains("champion loop-iris 1.0.0: 1.0000"),
        "{error}"
    );
    assert!(run["candidate"].is_null());
    let versions = api_get(&c, &admin, "/v1/models/loop-iris");
    assert_eq!(versions["versions"].as_array().unwrap().len(), 2);
    wait_until("ValidationFailed", || {
        count(
            &hooked,
            "ValidationFailed",
            Some(run["id"].as_str().unwrap()),
        ) == 1
    });
    let event = hooked
        .lock()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "ValidationFailed")
        .cloned()
        .unwrap();
    let failed = &event["detail"]["failed"][0];
    assert_eq!(failed["name"], "metric");
    assert_eq!(failed["champion"], 1.0);
    assert!(failed["candidate"].as_f64().unwrap() < 0.5, "{event}");

    // 3. Broken trainers fail their runs with the reason; the coordinator and
    // the champion keep serving.
    // A model of another input schema (300 features, not the champion's 4).
    let wide = format!(
        "cp '{}' {{out}}",
        fixtures().join("wide_logreg/model.onnx").display()
    );
    for (command, limit, says) in [
        ("echo boom >&2; exit 3 # {out}", "60s", "exit status: 3"),
        ("true # {out}", "60s", "wrote no model"),
        ("sleep 30 # {out}", "2s", "time limit of 2 s"),
        ("echo not-onnx > {out}", "60s", "building the candidate"),
        (
            wide.as_str(),
            "60s",
            "has 300 features, the training data 4 columns",
        ),
    ] {
        let (done, run) = retrain(
            &c,
            &admin,
            &[
                "--dataset",
                "iris",
                "--command",
                command,
                "--time-limit",
                limit,
            ],
        );
        assert!(!done, "{command}");
        let error = run["error"].as_str().unwrap();
        assert!(error.contains(says), "{command}: {error}");
        if command.starts_with("echo boom") {
            assert!(error.contains("boom"), "{error}");
        }
    }
    let production = api_get(&c, &admin, "/v1/models/loop-iris/versions/production");
    assert_eq!(production["version"], "1.0.0");

    // 4. The example scikit-learn trainer as an external command.
    python_deps();
    {
        let (done, run) = retrain(
            &c,
            &admin,
            &[
                "--dataset",
                "iris",
                "--holdout",
                "iris-holdout",
                "--margin",
                "0.1",
                "--command",
                "python3 train_sklearn.py --data {data} --holdout {holdout} --label {label} --out {out} --metrics {metrics}",
            ],
        );
        assert!(done, "{run:#}");
        assert_eq!(run["candidate"], "1.2.0");
        assert!(
            run["code_commit"]
                .as_str()
                .unwrap()
                .contains("train_sklearn.py sha256:")
        );
        assert_eq!(
            run["metrics"]["trainer"]["accuracy"],
            run["metrics"]["candidate"]["accuracy"]
        );
    }
    // 5. The loop file: a run as it says, then a person approves and the
    // alias moves (no rollout plan: no devices here).
    let loop_file = dir.path().join("loop.toml");
    let write = |text: &str| std::fs::write(&loop_file, text).unwrap();
    write(
        "trainer = \"builtin:logistic\"\ndataset = \"iris\"\n[triggers]\non = [\"DataQualityAlert\"]\n",
    );
    let refused = cli(&c, &admin, &["loop", "set", "loop-iris", p(&loop_file)]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("a broken sensor is fixed, not learnt"),
        "{refused:?}"
    );
    write(concat!(
        "trainer = \"builtin:logistic\"\ndataset = \"iris\"\nholdout = \"iris-holdout\"\n",
        "[triggers]\non = [\"PerformanceDegraded\"]\n[gate]\nmargin = 0.1\n",
        "[release]\napproval = \"manual\"\n",
    ));
    cli_ok(&c, &admin, &["loop", "set", "loop-iris", p(&loop_file)]);
    let (done, run) = retrain(&c, &admin, &[]);
    assert!(done, "{run:#}");
    assert_eq!(run["trigger"], "manual");
    let id = run["id"].as_str().unwrap().to_string();
    let version = run["candidate"].as_str().unwrap().to_string();
    let subject = format!("loop-iris@{version}");
    wait_until("ApprovalRequired", || {
        count(&hooked, "ApprovalRequired", Some(&subject)) == 1
    });
    let production = api_get(&c, &admin, "/v1/models/loop-iris/versions/production");
    assert_eq!(production["version"], "1.0.0", "not before approval");
    let approved = cli_ok(&c, &admin, &["loop", "approve", &id]);
    assert!(approved.contains("approved"), "{approved}");
    wait_until("ModelPromoted", || {
        count(&hooked, "ModelPromoted", Some(&subject)) == 1
    });
    let production = api_get(&c, &admin, "/v1/models/loop-iris/versions/production");
    assert_eq!(production["version"], version.as_str());
    let shown = json(&cli_ok(
        &c,
        &admin,
        &["loop", "show", "loop-iris", "--json"],
    ));
    assert_eq!(shown["promotions"][0]["state"], "promoted");
    let again = cli(&c, &admin, &["loop", "approve", &id]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("not awaiting approval"));

    // 6. SIGKILL the coordinator (and its in-process worker) during a run:
    // after the restart the run is failed at once, nothing was registered, and
    // the next run works.
    let queued = json(&cli_ok(
        &c,
        &admin,
        &[
            "retrain",
            "loop-iris",
            "--dataset",
            "iris",
            "--command",
            "sleep 60 # {out}",
            "--json",
        ],
    ));
    let id = queued["id"].as_str().unwrap().to_string();
    wait_until("the run to start", || {
        api_get(&c, &admin, &format!("/v1/runs/{id}"))["status"] == "running"
    });
    let listen = c.url.trim_start_matches("http://").to_string();
    let mut c = c;
    c.process.child.kill().unwrap();
    c.process.child.wait().unwrap();
    // Back without --worker-commands: command trainers are refused there
    // (they would run as the coordinator's user).
    let args: Vec<String> = args
        .into_iter()
        .filter(|a| a != "--worker-commands")
        .collect();
    let c = start_coordinator_at(&data, &listen, &args);
    let (done, refused) = retrain(
        &c,
        &admin,
        &["--dataset", "iris", "--command", "true # {out}"],
    );
    assert!(!done);
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("runs no command trainers"),
        "{refused:#}"
    );
    let lost = api_get(&c, &admin, &format!("/v1/runs/{id}"));
    assert_eq!(lost["status"], "failed", "{lost:#}");
    assert!(
        lost["error"]
            .as_str()
            .unwrap()
            .contains("restarted during the run"),
        "{lost:#}"
    );
    let versions = api_get(&c, &admin, "/v1/models/loop-iris");
    let before = versions["versions"].as_array().unwrap().len();
    let (done, run) = retrain_on(&c, &admin, "iris");
    assert!(done, "{run:#}");
    let versions = api_get(&c, &admin, "/v1/models/loop-iris");
    assert_eq!(versions["versions"].as_array().unwrap().len(), before + 1);

    let runs = json(&cli_ok(
        &c,
        &admin,
        &["runs", "list", "--model", "loop-iris", "--json"],
    ));
    assert!(runs.as_array().unwrap().len() >= 6);
    for kind in ["RunStarted", "RunCompleted", "RunFailed"] {
        assert!(count(&hooked, kind, None) >= 1, "{kind}");
    }
}

/// `wasmops demo --scenario drift`: the whole loop for a new user, on
/// embedded defaults, in under 3 minutes.
#[test]
fn the_drift_demo_closes_the_loop() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = wasmops(&[
        "demo",
        "--scenario",
        "drift",
        "--devices",
        "10",
        "--dir",
        p(dir.path()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let closed = stderr
        .lines()
        .find_map(|l| l.strip_prefix("loop closed in "))
        .unwrap_or_else(|| panic!("{stderr}"));
    let seconds: f64 = closed.split(" s").next().unwrap().parse().unwrap();
    assert!(seconds < 120.0, "{stderr}");
    assert!(
        stderr.contains("PerformanceDegraded: collecting"),
        "{stderr}"
    );
    assert!(stderr.contains("sensor 1.1.0: promoted"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(180),
        "{stderr}"
    );
}
