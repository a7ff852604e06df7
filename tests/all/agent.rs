//! Coordinator + device agents as real processes over MQTT: deploy by label
//! selector, local predictions checked against onnxruntime, a version that
//! fails its health probe left out (the old one keeps serving), a rollback
//! refused, and the active model restored after an agent restart.

use crate::common::*;

use serde_json::Value;

#[test]
fn deploy_probe_rollback_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, hooked) = webhook_sink();
    let c = start_coordinator(
        &dir.path().join("coordinator"),
        &[
            "--trust".into(),
            p(&keys().1).into(),
            "--mqtt-listen".into(),
            free_addr(),
            "--webhook".into(),
            hook,
        ],
    );
    let admin = admin_token(&dir.path().join("coordinator"));
    let events = event_listener(&c.url, &admin);
    let token = |name: &str, role: &str| {
        let out = cli(
            &c,
            &admin,
            &["token", "create", "--name", name, "--role", role],
        );
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (ops, device_token) = (token("ops", "operator"), token("devices", "device"));
    // A device token downloads artifacts and reads nothing else.
    let denied = http()
        .get(format!("{}/v1/models", c.url))
        .bearer_auth(&device_token)
        .send()
        .unwrap();
    assert_eq!(denied.status().as_u16(), 403);
    for (file, version, seq) in [
        ("agent-v1.wasm", "1.0.0", "1"),
        ("agent-v2.wasm", "1.1.0", "2"),
    ] {
        let out = cli(
            &c,
            &admin,
            &["model", "register", p(&signed(file, version, seq))],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Enrolment: one token for `gw-*`; each agent trades it for its own credential.
    let out = cli(&c, &ops, &["enrolment", "--devices", "gw-*"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let enrolment = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let stranger = wasmops(&[
        "agent",
        "--config",
        p(&write_agent_config(
            dir.path(),
            "intruder-1",
            "eu",
            &c,
            &enrolment,
        )),
    ]);
    let err = String::from_utf8_lossy(&stranger.stderr);
    assert!(
        !stranger.status.success() && err.contains("enrolment of intruder-1 refused"),
        "{err}"
    );
    let eu = start_agent(&write_agent_config(
        dir.path(),
        "gw-eu",
        "eu",
        &c,
        &enrolment,
    ));
    let us = start_agent(&write_agent_config(
        dir.path(),
        "gw-us",
        "us",
        &c,
        &enrolment,
    ));
    assert!(
        dir.path().join("gw-eu-state/credentials.json").exists(),
        "the agent keeps its own credential"
    );
    wait_until("both agents online", || {
        let d = devices(&c, &ops);
        d.as_array()
            .is_some_and(|l| l.iter().filter(|x| x["state"] == "online").count() == 2)
    });
    let input = fixtures().join("scaler_logreg/input_b1.json");
    let expected = read_json(&fixtures().join("scaler_logreg/expected_b1.json"));
    let (status, body) = predict(&eu, &input);
    assert_eq!(status, 400, "no model yet: {body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no model is installed"),
        "{body}"
    );

    // Deploy by selector: only the eu device gets it.
    let out = cli(
        &c,
        &ops,
        &[
            "deploy",
            "churn",
            "1.0.0",
            "--selector",
            "site=eu",
            "--wait",
            "120",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, got) = predict(&eu, &input);
    assert_eq!(status, 200, "{got}");
    assert_outputs_match(&got, &expected, 1e-4, "agent gw-eu");
    assert_eq!(
        predict(&us, &input).0,
        400,
        "the us device was not targeted"
    );
    let d = devices(&c, &ops);
    let eu_row = d
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == "gw-eu")
        .unwrap();
    assert_eq!(eu_row["active_version"], "1.0.0", "{d}");

    // A version that fails its health probe: the device keeps serving 1.0.0.
    let bad_probe = dir.path().join("bad-probe.json");
    std::fs::write(
        &bad_probe,
        r#"{"inputs":[{"name":"X","shape":[1,3],"data":[1.0, 2.0, 3.0]}]}"#,
    )
    .unwrap();
    let out = cli(
        &c,
        &ops,
        &[
            "deploy",
            "churn",
            "1.1.0",
            "--device",
            "gw-eu",
            "--probe",
            p(&bad_probe),
            "--wait",
            "120",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("health probe failed"),
        "{err}"
    );
    let (status, got) = predict(&eu, &input);
    assert_eq!(status, 200);
    assert_outputs_match(&got, &expected, 1e-4, "still 1.0.0 after the failed probe");

    // The good probe (the fixture input) passes; 1.1.0 takes over.
    let out = cli(
        &c,
        &ops,
        &[
            "deploy",
            "churn",
            "1.1.0",
            "--device",
            "gw-eu",
            "--probe",
            p(&input),
            "--wait",
            "120",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = http()
        .get(format!("{}/v1/status", eu.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["active"]["version"], "1.1.0", "{status}");

    // Going back to sequence 1 is a rollback: refused on the device.
    let out = cli(
        &c,
        &ops,
        &[
            "deploy", "churn", "1.0.0", "--device", "gw-eu", "--wait", "120",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("rollback refused"),
        "{err}"
    );

    // A restarted agent serves its active model at once.
    let config = dir.path().join("gw-eu.toml");
    drop(eu);
    let eu = start_agent(&config);
    let (status, got) = predict(&eu, &input);
    assert_eq!(status, 200, "{got}");
    assert_outputs_match(&got, &expected, 1e-4, "after restart");
    let status: Value = http()
        .get(format!("{}/v1/status", eu.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["active"]["version"], "1.1.0", "{status}");

    // Events, on MQTT and at the webhook: two registrations, four deployments
    // started, two successful installs on gw-eu, and gw-us going offline (Last Will).
    drop(us);
    wait_until("DeviceOffline for gw-us on both channels", || {
        count(&events, "DeviceOffline", Some("gw-us")) >= 1
            && count(&hooked, "DeviceOffline", Some("gw-us")) >= 1
    });
    for seen in [&events, &hooked] {
        assert_eq!(count(seen, "ModelRegistered", None), 2);
        assert_eq!(count(seen, "DeploymentStarted", None), 4);
        assert_eq!(count(seen, "ModelDeployed", Some("gw-eu")), 2);
    }
}

/// Issue 23: a leaked enrolment token takes over nothing. Used again for an
/// enrolled id it is refused (403), a fresh token over that id too (409), and
/// the real device keeps its credential. After an operator's reset the device
/// says loudly that its credential is refused, keeps serving, and enrols
/// again with the fresh token once it is in its agent.toml.
#[test]
fn a_leaked_enrolment_token_takes_over_nothing_and_a_reset_device_enrols_again() {
    let dir = tempfile::tempdir().unwrap();
    let (c, admin) = trusting_coordinator(dir.path());
    let enrolment = cli_ok(&c, &admin, &["enrolment", "--devices", "gw-key"]);
    let config = write_agent_config(dir.path(), "gw-key", "eu", &c, &enrolment);
    let log = dir.path().join("gw-key.log");
    let start = || serve_logged(&["agent", "--config", p(&config)], &log);
    let online = || is_online(&c, &admin, "gw-key");
    let agent = start();
    wait_until("gw-key online", online);
    let saved = dir.path().join("gw-key-state/credentials.json");
    let credential = read_json(&saved)["token"].as_str().unwrap().to_string();
    let enrol = |token: &str| {
        let r = http()
            .post(format!("{}/v1/enrol", c.url))
            .bearer_auth(token)
            .json(&serde_json::json!({"device": "gw-key"}))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json::<Value>().unwrap())
    };
    let works = |token: &str| {
        http()
            .get(format!("{}/v1/whoami", c.url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
            == 200
    };

    // The thief: the leaked token again, then a fresh one meant for gw-key.
    let (status, body) = enrol(&enrolment);
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("used for `gw-key` already"),
        "{body}"
    );
    let fresh = cli_ok(&c, &admin, &["enrolment", "--devices", "gw-key"]);
    let (status, body) = enrol(&fresh);
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("wasmops devices reset gw-key"),
        "{body}"
    );
    assert!(works(&credential) && online());

    // The operator resets gw-key: its credential is refused from now on; the
    // restarted agent says so, and still serves its local API.
    cli_ok(&c, &admin, &["devices", "reset", "gw-key"]);
    assert!(!works(&credential));
    drop(agent);
    let agent = start();
    wait_until("the agent says its credential is refused", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("the coordinator refuses device gw-key's credential")
    });
    let status: Value = http()
        .get(format!("{}/v1/status", agent.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["device"], "gw-key", "{status}");
    drop(agent);

    // The fresh token (the refused attempt did not use it up) in agent.toml:
    // the agent enrols with it and is back.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace(&enrolment, &fresh)).unwrap();
    let _agent = start();
    wait_until("gw-key online again", online);
    let renewed = read_json(&saved)["token"].as_str().unwrap().to_string();
    assert!(renewed != credential && works(&renewed));
    let audit = api_get(&c, &admin, "/v1/audit?limit=50").to_string();
    for action in ["device.enrol.refused", "device.reset", "device.enrol"] {
        assert!(audit.contains(action), "{action}: {audit}");
    }
}

/// Issue 24.2: a restart never deletes an accepted model. One whose claims
/// expired since it was installed keeps serving (and the agent says so); one
/// whose bytes are damaged gives way to the previous version, and stays on
/// disk for inspection.
#[test]
fn restart_keeps_an_expired_model_and_falls_back_from_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let (c, admin) = trusting_coordinator(dir.path());
    // Two releases whose claims lapse a minute after they are built.
    for (file, version, seq) in [
        ("expiring-v1.wasm", "1.0.0", "1"),
        ("expiring-v2.wasm", "1.1.0", "2"),
    ] {
        let wasm = scaler_release(
            file,
            "churn",
            version,
            &["--sequence", seq, "--expires", "60s"],
            &keys().0,
            None,
        );
        let out = cli(&c, &admin, &["model", "register", p(&wasm)]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let lapse = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let out = cli(&c, &admin, &["enrolment", "--devices", "gw-restart"]);
    assert!(out.status.success());
    let enrolment = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let config = write_agent_config(dir.path(), "gw-restart", "eu", &c, &enrolment);
    let agent = start_agent(&config);
    wait_online(&c, &admin, "gw-restart");
    for version in ["1.0.0", "1.1.0"] {
        let out = cli(
            &c,
            &admin,
            &[
                "deploy",
                "churn",
                version,
                "--device",
                "gw-restart",
                "--wait",
                "120",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let input = fixtures().join("scaler_logreg/input_b1.json");
    let expected = read_json(&fixtures().join("scaler_logreg/expected_b1.json"));
    let status_of = |a: &Agent| -> Value {
        http()
            .get(format!("{}/v1/status", a.url))
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    let active_sha = status_of(&agent)["active"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    drop(agent); // SIGKILL

    // Reboot after the claims expired: still serving, and saying why it is notable.
    std::thread::sleep(lapse.saturating_duration_since(std::time::Instant::now()));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let agent = start_agent(&config);
    let (code, got) = predict(&agent, &input);
    assert_eq!(code, 200, "{got}");
    assert_outputs_match(&got, &expected, 1e-4, "expired but accepted");
    let status = status_of(&agent);
    assert_eq!(status["active"]["version"], "1.1.0", "{status}");
    let note = status["restore_note"].as_str().unwrap_or_default();
    assert!(note.contains("expired"), "{status}");
    drop(agent);

    // Damage the active slot: the previous version serves, nothing is deleted.
    let slot = dir
        .path()
        .join(format!("gw-restart-state/slots/{active_sha}.wasm"));
    let mut bytes = std::fs::read(&slot).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&slot, &bytes).unwrap();
    let agent = start_agent(&config);
    let (code, got) = predict(&agent, &input);
    assert_eq!(code, 200, "{got}");
    assert_outputs_match(&got, &expected, 1e-4, "previous version");
    let status = status_of(&agent);
    assert_eq!(status["active"]["version"], "1.0.0", "{status}");
    let note = status["restore_note"].as_str().unwrap_or_default();
    assert!(
        note.contains("the active model churn 1.1.0 cannot be loaded"),
        "{status}"
    );
    // The damaged bytes are set aside, not deleted, and the device fetches
    // the desired version afresh rather than trusting them.
    let aside = slot.with_extension("wasm.damaged");
    assert_eq!(
        std::fs::read(&aside).ok(),
        Some(bytes),
        "the damaged slot is kept for inspection"
    );
}

/// Issue 24.12: the embedded broker starts empty with each coordinator
/// start. A device that was offline when it was given a deployment, and comes
/// back after the coordinator (and so the broker) restarted, still gets it:
/// desired states live in the database and are published again.
#[test]
fn a_deployment_survives_an_embedded_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    let (listen, mqtt_listen) = (free_addr(), free_addr());
    let args = [
        "--trust".to_string(),
        p(&keys().1).to_string(),
        "--mqtt-listen".to_string(),
        mqtt_listen,
    ];
    let c = start_coordinator_at(&data, &listen, &args);
    let admin = admin_token(&data);
    let wasm = signed("survivor-v1.wasm", "1.0.0", "1");
    let out = cli(&c, &admin, &["model", "register", p(&wasm)]);
    assert!(out.status.success());
    let out = cli(&c, &admin, &["enrolment", "--devices", "gw-away"]);
    assert!(out.status.success());
    let enrolment = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let config = write_agent_config(dir.path(), "gw-away", "eu", &c, &enrolment);
    let agent = start_agent(&config);
    wait_online(&c, &admin, "gw-away");
    drop(agent);
    wait_until("gw-away offline", || {
        devices(&c, &admin).as_array().is_some_and(|l| {
            l.iter()
                .any(|d| d["id"] == "gw-away" && d["state"] == "offline")
        })
    });
    // Deployed while the device is away: only the broker's retained copy would reach it.
    let out = cli(
        &c,
        &admin,
        &["deploy", "churn", "1.0.0", "--device", "gw-away"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(c); // SIGKILL: the embedded broker and its retained messages go with it
    let c = start_coordinator_at(&data, &listen, &args);
    let agent = start_agent(&config);
    wait_until("gw-away to install 1.0.0", || {
        http()
            .get(format!("{}/v1/status", agent.url))
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|s| s["active"]["version"] == "1.0.0")
    });
    let input = fixtures().join("scaler_logreg/input_b1.json");
    let (code, body) = predict(&agent, &input);
    assert_eq!(code, 200, "{body}");

    // Issue 24.4: while a rollout holds the device, another deployment or
    // rollout to it is refused with a 409 naming the rollout.
    let wasm = signed("survivor-v2.wasm", "1.1.0", "2");
    assert!(
        cli(&c, &admin, &["model", "register", p(&wasm)])
            .status
            .success()
    );
    let out = cli(
        &c,
        &admin,
        &[
            "rollout",
            "create",
            "churn",
            "1.1.0",
            "--device",
            "gw-away",
            "--min-predictions",
            "1000000",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rollout = String::from_utf8(out.stdout).unwrap().trim().to_string();
    for args in [
        &["deploy", "churn", "1.0.0", "--device", "gw-away"][..],
        &["rollout", "create", "churn", "1.1.0", "--device", "gw-away"][..],
    ] {
        let out = cli(&c, &admin, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(&format!("is in rollout {rollout}")),
            "{args:?}: {err}"
        );
    }
    let out = cli(&c, &admin, &["rollout", "abort", &rollout]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(
        &c,
        &admin,
        &[
            "deploy", "churn", "1.0.0", "--device", "gw-away", "--wait", "120",
        ],
    );
    assert!(
        out.status.success(),
        "after the abort: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(c);
}

/// Issue 24.1: a 300-feature model deployed with a 1000-row probe (≈ 2.5 MB:
/// far over the MQTT client's 10 KiB default and the broker's 256 KiB) installs
/// at once: the probe travels as an artifact over HTTP, the desired state
/// stays small. Its telemetry (a summary per input column, ≈ 100 KB a window)
/// reaches the coordinator whole: every one of the 300 columns counts every
/// row predicted. A probe over the limit is refused at the API, naming it.
#[test]
fn a_wide_model_with_a_large_probe_installs_and_reports_every_column() {
    const COLUMNS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    let args = ["--trust", p(&keys().1), "--mqtt-listen", &free_addr()].map(String::from);
    let c = start_coordinator(&data, &args);
    let admin = admin_token(&data);
    let fixture = fixtures().join("wide_logreg");
    let wasm = scratch().join("wide-1.0.0.wasm");
    ok(&[
        "build",
        p(&fixture.join("model.onnx")),
        "--out",
        p(&wasm),
        "--name",
        "wide",
        "--version",
        "1.0.0",
        "--training-data",
        p(&fixture.join("input_b6.json")),
    ]);
    ok(&["sign", p(&wasm), "--key", p(&keys().0)]);
    assert!(
        cli(&c, &admin, &["model", "register", p(&wasm)])
            .status
            .success()
    );
    let agent = start_chatty_agent(dir.path(), "gw-wide", &c, &admin);
    wait_online(&c, &admin, "gw-wide");

    let rows = |n: usize| -> Value {
        let data: Vec<f64> = (0..n * COLUMNS)
            .map(|i| ((i * 37) % 1000) as f64 / 250.0 - 2.0)
            .collect();
        serde_json::json!({"inputs": [{"name": "X", "shape": [n, COLUMNS], "data": data}]})
    };
    let probe = dir.path().join("probe.json");
    std::fs::write(&probe, serde_json::to_vec(&rows(1000)).unwrap()).unwrap();
    let size = std::fs::metadata(&probe).unwrap().len();
    assert!(size > 2_000_000, "the probe is {size} bytes");
    cli_ok(
        &c,
        &admin,
        &[
            "deploy",
            "wide",
            "1.0.0",
            "--device",
            "gw-wide",
            "--probe",
            p(&probe),
            "--wait",
            "120",
        ],
    );

    // Predictions of 7 rows each; every column of every row is summarised.
    let input = dir.path().join("input.json");
    std::fs::write(&input, serde_json::to_vec(&rows(7)).unwrap()).unwrap();
    for _ in 0..5 {
        let (code, body) = predict(&agent, &input);
        assert_eq!(code, 200, "{body}");
    }
    let mut last = Value::Null;
    wait_until("all 300 columns of 35 rows at the coordinator", || {
        let t = api_get(&c, &admin, "/v1/telemetry");
        let v = t["versions"]
            .as_array()
            .and_then(|l| l.iter().find(|v| v["model"] == "wide").cloned());
        let done = v.as_ref().is_some_and(|v| {
            v["predictions"] == 5
                && v["stats"]["features"]
                    .as_object()
                    .is_some_and(|f| f.len() == COLUMNS && f.values().all(|s| s["count"] == 35))
        });
        last = v.unwrap_or(Value::Null);
        done
    });
    let features = last["stats"]["features"].as_object().unwrap();
    assert!(features.contains_key("X[0]") && features.contains_key("X[299]"));

    // Over the probe limit: refused before it is sent, naming the limit;
    // nothing published.
    let huge = dir.path().join("huge-probe.json");
    std::fs::write(&huge, serde_json::to_vec(&rows(6000)).unwrap()).unwrap();
    assert!(std::fs::metadata(&huge).unwrap().len() > 16 << 20);
    let out = cli(
        &c,
        &admin,
        &[
            "deploy",
            "wide",
            "1.0.0",
            "--device",
            "gw-wide",
            "--probe",
            p(&huge),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("at most"), "{err}");
}

/// Issue 21.2: a device counts live values by the model's signed profile:
/// features named as in the training CSV, numbers in the profile's bins with
/// what lies beyond the training range, output columns binned too, and the
/// coordinator's merged view adds up to what was served.
#[test]
fn live_values_are_counted_in_the_signed_profile_bins() {
    profile_counts_and_labels(None);
}

/// The same on the real PostgreSQL (prediction records and labels are
/// written with hand-numbered placeholders there).
#[test]
fn live_values_and_labels_on_postgres() {
    let db = Postgres::fresh("labels");
    profile_counts_and_labels(Some(&db.url));
}

fn profile_counts_and_labels(database: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    let mut args = ["--trust", p(&keys().1), "--mqtt-listen", &free_addr()]
        .map(String::from)
        .to_vec();
    if let Some(url) = database {
        args.extend(["--database".to_string(), url.to_string()]);
    }
    let c = start_coordinator(&data, &args);
    let admin = admin_token(&data);
    let wasm = scratch().join(format!("iris-profiled-{}.wasm", database.is_some()));
    profiled_iris(&wasm, "2.0.0");
    cli_ok(&c, &admin, &["model", "register", p(&wasm)]);
    let profile: Value = serde_json::from_str(&ok(&["inspect", p(&wasm), "--json"])).unwrap();
    let profile = profile["claims"]["profile"].clone();
    let agent = start_chatty_agent(dir.path(), "gw-prof", &c, &admin);
    wait_online(&c, &admin, "gw-prof");
    cli_ok(
        &c,
        &admin,
        &[
            "deploy", "iris", "2.0.0", "--device", "gw-prof", "--wait", "120",
        ],
    );
    // Ten rows, two of them with a petal width far above the training maximum.
    let rows = iris_rows();
    let input = dir.path().join("rows.json");
    std::fs::write(
        &input,
        serde_json::to_vec(
            &serde_json::json!({"inputs": [{"name": "X", "shape": [10, 4], "data": rows}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let (code, body) = predict(&agent, &input);
        assert_eq!(code, 200, "{body}");
        // One id per row, for outcomes posted later.
        let got = body["prediction_ids"].as_array().unwrap();
        assert_eq!(got.len(), 10, "{body}");
        for id in got {
            let id = id.as_str().unwrap();
            assert!(id.len() == 25 && id.starts_with('p'), "{id}");
            assert!(ids.insert(id.to_string()), "{id} twice");
        }
    }
    let mut stats = Value::Null;
    wait_until("30 rows counted at the coordinator", || {
        let t = api_get(&c, &admin, "/v1/telemetry");
        stats = t["versions"]
            .as_array()
            .and_then(|l| {
                l.iter()
                    .find(|v| v["model"] == "iris" && v["version"] == "2.0.0")
            })
            .map(|v| v["stats"].clone())
            .unwrap_or(Value::Null);
        stats["features"]["petal_width"]["count"] == 30
    });
    for (j, column) in profile["columns"].as_array().unwrap().iter().enumerate() {
        let name = column["name"].as_str().unwrap();
        let s = &stats["features"][name];
        let bins = s["bins"]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {s}"));
        assert_eq!(
            bins.len(),
            column["counts"].as_array().unwrap().len(),
            "{name}"
        );
        let total: u64 = bins.iter().map(|b| b.as_u64().unwrap()).sum();
        assert_eq!(total, 30, "{name}: {s}");
        // Where each served value falls, by the profile's own edges.
        let want = expected_bins(column, &rows, j, 3);
        let got: Vec<u64> = bins.iter().map(|b| b.as_u64().unwrap()).collect();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(stats["features"]["petal_width"]["above"], 6, "{stats}");
    assert!(stats["features"].get("X[0]").is_none(), "{stats}");
    for k in 0..3 {
        let s = &stats["outputs"][format!("probabilities[{k}]")];
        let total: u64 = s["bins"]
            .as_array()
            .unwrap_or_else(|| panic!("probabilities[{k}]: {stats}"))
            .iter()
            .map(|b| b.as_u64().unwrap())
            .sum();
        assert_eq!(total, 30, "{s}");
    }

    // Raw rows, opted into for iris (`sample_rows = { iris = 4 }`): at most 4
    // per window, each one of the rows served, named as in training.
    let sampled = dir.path().join("samples.csv");
    cli_ok(
        &c,
        &admin,
        &["monitor", "iris", "--since", "1h", "--samples", p(&sampled)],
    );
    let text = std::fs::read_to_string(&sampled).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("sepal_length,sepal_width,petal_length,petal_width")
    );
    let served: Vec<Vec<f64>> = rows
        .chunks(4)
        .map(|r| r.iter().map(|x| *x as f32 as f64).collect())
        .collect();
    let kept: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert!(!kept.is_empty() && kept.len() <= 30, "{text}");
    for row in &kept {
        assert!(served.contains(row), "{row:?} was never served:\n{text}");
    }

    // Outcomes for those predictions (issue 21.3, delayed labels): a CSV of
    // ids and classes; a batch with one unknown id or a wrong-typed outcome is
    // refused whole, naming it.
    let labels = dir.path().join("labels.csv");
    let mut csv = String::from("prediction_id,outcome\n");
    for (i, id) in ids.iter().enumerate() {
        csv.push_str(&format!("{id},{}\n", i % 3));
    }
    std::fs::write(&labels, &csv).unwrap();
    let out = cli_ok(&c, &admin, &["labels", "push", p(&labels)]);
    assert!(out.contains("stored 30 labels"), "{out}");
    let bad = dir.path().join("bad-labels.csv");
    std::fs::write(&bad, format!("{csv}pffffffffffffffffffffffff,1\n")).unwrap();
    let out = cli(&c, &admin, &["labels", "push", p(&bad)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("`pffffffffffffffffffffffff`")
            && err.contains("nothing stored"),
        "{err}"
    );
    let first = ids.iter().next().unwrap();
    std::fs::write(&bad, format!("prediction_id,outcome\n{first},0.5\n")).unwrap();
    let out = cli(&c, &admin, &["labels", "push", p(&bad)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("wrong type"), "{err}");
    drop(agent);
}
