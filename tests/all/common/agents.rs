//! Agents as real processes for the end-to-end tests: their config, their
//! coordinator, and what tests ask of them.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::*;

pub type Agent = Served;

pub fn start_agent(config: &Path) -> Agent {
    serve(&["agent", "--config", p(config)])
}

/// Whether the coordinator lists `id` as online.
pub fn is_online(c: &Coordinator, admin: &str, id: &str) -> bool {
    devices(c, admin)
        .as_array()
        .is_some_and(|l| l.iter().any(|d| d["id"] == id && d["state"] == "online"))
}

/// The agent serves its HTTP API before it has enrolled and connected (an
/// offline gateway must serve at once), so a test that deploys to it waits here.
pub fn wait_online(c: &Coordinator, admin: &str, id: &str) {
    wait_until(&format!("{id} online"), || is_online(c, admin, id));
}

pub fn write_agent_config(
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

/// Enrols `id` and starts its agent with telemetry every 300 ms.
pub fn start_chatty_agent(dir: &Path, id: &str, c: &Coordinator, admin: &str) -> Agent {
    let out = cli(c, admin, &["enrolment", "--devices", id]);
    let enrolment = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let config = write_agent_config(dir, id, "eu", c, &enrolment);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "[labels]",
            "telemetry_interval_ms = 300\nsample_rows = { iris = 4 }\n[labels]",
            1,
        ),
    )
    .unwrap();
    start_agent(&config)
}

/// A coordinator in `dir/coordinator` trusting the test release key, with
/// its embedded broker; and its admin token.
pub fn trusting_coordinator(dir: &Path) -> (Coordinator, String) {
    trusting_coordinator_with(dir, &[])
}

/// [`trusting_coordinator`] started with `extra` flags too.
pub fn trusting_coordinator_with(dir: &Path, extra: &[&str]) -> (Coordinator, String) {
    let mut args: Vec<String> = vec![
        "--trust".into(),
        p(&keys().1).into(),
        "--mqtt-listen".into(),
        free_addr(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let c = start_coordinator(&dir.join("coordinator"), &args);
    let admin = admin_token(&dir.join("coordinator"));
    (c, admin)
}

/// A release team's trust directory `dir`: a root (`root_key`) that
/// delegates the model `churn` to each `(release key's .pub, name)`.
pub fn churn_team_trust(dir: &Path, root_key: &Path, releasers: &[(&Path, &str)]) {
    ok(&["trust", "init", "--dir", p(dir), "--root-key", p(root_key)]);
    for (key, name) in releasers {
        ok(&delegate(dir, root_key, key, name, &["--models", "churn"]));
    }
}

/// A coordinator in `data` under a root of trust (`--root`, `--trust-dir`),
/// with its embedded broker; and its admin token.
pub fn rooted_coordinator(data: &Path, root_pub: &Path, trust_dir: &Path) -> (Coordinator, String) {
    let c = start_coordinator(
        data,
        &[
            "--root".into(),
            p(root_pub).into(),
            "--trust-dir".into(),
            p(trust_dir).into(),
            "--mqtt-listen".into(),
            free_addr(),
        ],
    );
    (c, admin_token(data))
}

pub fn devices(c: &Coordinator, token: &str) -> Value {
    api_get(c, token, "/v1/devices")
}

/// An agent's `GET /v1/status`.
pub fn agent_status(agent: &Agent) -> Value {
    http()
        .get(format!("{}/v1/status", agent.url))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

pub fn predict(agent: &Agent, input: &Path) -> (u16, Value) {
    let resp = http()
        .post(format!("{}/v1/predict", agent.url))
        .body(std::fs::read(input).unwrap())
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.json().unwrap())
}

pub fn signed(out: &str, version: &str, sequence: &str) -> PathBuf {
    scaler_release(
        out,
        "churn",
        version,
        &["--sequence", sequence],
        &keys().0,
        None,
    )
}
