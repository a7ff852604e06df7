//! Coordinator + device agents as real processes over MQTT: deploy by label
//! selector, local predictions checked against onnxruntime, a version that
//! fails its health probe left out (the old one keeps serving), a rollback
//! refused, and the active model restored after an agent restart.

use crate::common::*;

use std::path::{Path, PathBuf};

use serde_json::Value;

type Agent = Served;

fn start_agent(config: &Path) -> Agent {
    serve(&["agent", "--config", p(config)])
}

fn write_agent_config(
    dir: &Path,
    id: &str,
    site: &str,
    c: &Coordinator,
    enrolment: &str,
) -> PathBuf {
    let path = dir.join(format!("{id}.toml"));
    let text = format!(
        "device_id = \"{id}\"\ncoordinator = \"{}\"\nenrolment_token = \"{enrolment}\"\nmqtt = \"{}\"\nstate_dir = \"{id}-state\"\nlisten = \"{}\"\n[labels]\nsite = \"{site}\"\n[trust]\nkeys = [\"{}\"]\n",
        c.url,
        c.mqtt,
        free_addr(),
        p(&keys().1)
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn devices(c: &Coordinator, token: &str) -> Value {
    api_get(c, token, "/v1/devices")
}

fn predict(agent: &Agent, input: &Path) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{}/v1/predict", agent.url))
        .body(std::fs::read(input).unwrap())
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

/// A minimal HTTP server that records every POSTed JSON body (a webhook sink).
fn webhook_sink() -> (String, Seen) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Seen = Default::default();
    let store = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                store.lock().unwrap().push(v);
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, seen)
}

fn signed(out: &str, version: &str, sequence: &str) -> PathBuf {
    scaler_release(
        out,
        "churn",
        version,
        &["--sequence", sequence],
        &keys().0,
        None,
    )
}

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
    let admin = std::fs::read_to_string(dir.path().join("coordinator/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let events = event_listener(&c.mqtt, Some(&admin));
    let token = |name: &str, role: &str| {
        let out = cli(&c, &admin, &["token", "--name", name, "--role", role]);
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let (ops, device_token) = (token("ops", "operator"), token("devices", "device"));
    // A device token downloads artifacts and reads nothing else.
    let denied = reqwest::blocking::Client::new()
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
    let status: Value = reqwest::blocking::get(format!("{}/v1/status", eu.url))
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
    let status: Value = reqwest::blocking::get(format!("{}/v1/status", eu.url))
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
