//! The fleet as an attacker holding one enrolled device's credential sees it
//! (issue 23): each attack is tried against real processes and must do no
//! harm. Enrolment-token attacks are in `agent.rs`
//! (`a_leaked_enrolment_token_takes_over_nothing_…`).

use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// What an MQTT client saw: messages, and how its connection went.
#[derive(Debug)]
enum Seen {
    Message(String, Vec<u8>),
    ConnAck(rumqttc::ConnectReturnCode),
    /// Whether each filter was granted.
    SubAck(Vec<bool>),
    /// The connection ended (refused, or closed by the broker).
    Closed(String),
}

/// An MQTT client logged in as `user`/`password` with `client_id` that
/// records what happens (see [`Seen`]); it does not reconnect.
struct Mqtt {
    client: rumqttc::Client,
    seen: mpsc::Receiver<Seen>,
}

impl Mqtt {
    fn connect(url: &str, client_id: &str, user: &str, password: &str) -> Mqtt {
        Mqtt::connect_with(url, client_id, user, password, |_| {})
    }

    fn connect_with(
        url: &str,
        client_id: &str,
        user: &str,
        password: &str,
        more: impl FnOnce(&mut rumqttc::MqttOptions),
    ) -> Mqtt {
        let mut opts = mqtt_options(client_id.to_string(), url);
        opts.set_credentials(user, password)
            .set_max_packet_size(1 << 20, 1 << 20);
        more(&mut opts);
        let (client, mut conn) = rumqttc::Client::new(opts, 64);
        let (tx, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for ev in conn.iter() {
                let seen = match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        Seen::Message(p.topic.clone(), p.payload.to_vec())
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => {
                        Seen::ConnAck(a.code)
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(a))) => Seen::SubAck(
                        a.return_codes
                            .iter()
                            .map(|c| *c != rumqttc::SubscribeReasonCode::Failure)
                            .collect(),
                    ),
                    Ok(_) => continue,
                    // rumqttc reports a refusing CONNACK as an error.
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                        let _ = tx.send(Seen::ConnAck(code));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Seen::Closed(e.to_string()));
                        return;
                    }
                };
                let _ = tx.send(seen);
            }
        });
        Mqtt { client, seen }
    }

    fn subscribe(&self, filter: &str) {
        self.client
            .subscribe(filter, rumqttc::QoS::AtLeastOnce)
            .unwrap();
    }

    fn publish(&self, topic: &str, retained: bool, payload: Vec<u8>) {
        self.client
            .publish(topic, rumqttc::QoS::AtLeastOnce, retained, payload)
            .unwrap();
    }

    /// The next thing seen within 10 s.
    fn next(&self) -> Seen {
        self.seen
            .recv_timeout(Duration::from_secs(10))
            .expect("the broker answers within 10 s")
    }

    /// Waits until the connection is up (CONNACK accepted).
    fn up(self) -> Mqtt {
        match self.next() {
            Seen::ConnAck(rumqttc::ConnectReturnCode::Success) => self,
            other => panic!("not connected: {other:?}"),
        }
    }

    /// Messages received so far.
    fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.seen
            .try_iter()
            .filter_map(|s| match s {
                Seen::Message(t, p) => Some((t, p)),
                _ => None,
            })
            .collect()
    }
}

/// A coordinator trusting the test key, on `broker` (an external one) or
/// its embedded broker; two releases of `churn` (1.0.0, 1.1.0) registered;
/// the victim `gw-victim` online and the thief `gw-thief` enrolled.
struct Scene {
    dir: tempfile::TempDir,
    c: Coordinator,
    admin: String,
    victim: Agent,
    log: std::path::PathBuf,
    thief_token: String,
}

/// Which broker a scene runs on.
enum Broker<'a> {
    /// The coordinator's own (rumqttd with the ACL hook).
    Embedded,
    /// A Mosquitto anyone may use as they like (a broker someone else runs).
    Open(&'a str),
    /// A Mosquitto from `wasmops mosquitto-config` (URL, its directory).
    Managed(&'a str, &'a std::path::Path),
}

fn scene(broker: Broker) -> Scene {
    let dir = tempfile::tempdir().unwrap();
    let mqtt = match broker {
        Broker::Embedded => vec!["--mqtt-listen".to_string(), free_addr()],
        Broker::Open(url) => vec!["--mqtt".to_string(), url.to_string()],
        Broker::Managed(url, config) => vec![
            "--mqtt".to_string(),
            url.to_string(),
            "--mosquitto-dir".to_string(),
            p(config).to_string(),
        ],
    };
    let args: Vec<String> = ["--trust".to_string(), p(&keys().1).to_string()]
        .into_iter()
        .chain(mqtt)
        .collect();
    let data = dir.path().join("coordinator");
    let c = start_coordinator(&data, &args);
    let admin = admin_token(&data);
    for (file, version, seq) in [("v1.wasm", "1.0.0", "1"), ("v2.wasm", "1.1.0", "2")] {
        let wasm = scaler_release(
            file,
            "churn",
            version,
            &["--sequence", seq],
            &keys().0,
            None,
        );
        cli_ok(&c, &admin, &["model", "register", p(&wasm)]);
    }
    let enrolment = cli_ok(&c, &admin, &["enrolment", "--devices", "gw-*"]);
    // The thief is an enrolled device: its own credential logs in to MQTT.
    let thief: Value = http()
        .post(format!("{}/v1/enrol", c.url))
        .bearer_auth(&enrolment)
        .json(&serde_json::json!({"device": "gw-thief"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let thief_token = thief["token"].as_str().unwrap().to_string();
    let config = write_agent_config(dir.path(), "gw-victim", "eu", &c, &enrolment);
    let log = dir.path().join("gw-victim.log");
    let victim = serve_logged(&["agent", "--config", p(&config)], &log);
    wait_online(&c, &admin, "gw-victim");
    Scene {
        dir,
        c,
        admin,
        victim,
        log,
        thief_token,
    }
}

impl Scene {
    fn deploy(&self, version: &str) {
        let args = [
            "deploy",
            "churn",
            version,
            "--device",
            "gw-victim",
            "--wait",
            "120",
        ];
        cli_ok(&self.c, &self.admin, &args);
    }

    /// The victim still serves 1.1.0, by its own account and the coordinator's.
    fn victim_unmoved(&self, what: &str) {
        let status = agent_status(&self.victim);
        assert_eq!(status["active"]["version"], "1.1.0", "{what}: {status}");
        let input = fixtures().join("scaler_logreg/input_b1.json");
        let (code, got) = predict(&self.victim, &input);
        assert_eq!(code, 200, "{what}: {got}");
        let listed = api_get(&self.c, &self.admin, "/v1/devices");
        let me = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == "gw-victim")
            .cloned()
            .unwrap_or_default();
        assert_eq!(me["active_version"], "1.1.0", "{what}: {me}");
    }
}

/// On a broker someone else runs (a Mosquitto without ACLs, where any
/// client may publish anywhere), another enrolled device publishes a forged,
/// a foreign-signed and a replayed desired state on the victim's topic, and
/// a forged telemetry ack: the victim refuses each by name, keeps serving
/// the version its operator deployed, and keeps its reports.
#[test]
fn forged_and_replayed_desired_states_and_acks_steer_nothing() {
    let broker = wasmops_fleet::mosquitto::Mosquitto::start().unwrap();
    let s = scene(Broker::Open(&broker.url()));
    let topic = wasmops_protocol::topics::desired("gw-victim");
    let thief = Mqtt::connect(&broker.url(), "thief", "gw-thief", &s.thief_token).up();
    thief.subscribe(&topic);

    // The thief records the victim's signed desired state for 1.0.0, then
    // the operator moves the victim on to 1.1.0.
    s.deploy("1.0.0");
    s.deploy("1.1.0");
    let old = thief
        .messages()
        .into_iter()
        .map(|(_, p)| p)
        .find(|p| String::from_utf8_lossy(p).contains("1.0.0"))
        .expect("the thief saw the signed desired state for 1.0.0");
    let envelope: wasmops_protocol::signed::Envelope = serde_json::from_slice(&old).unwrap();
    let body: Value = envelope.body_unverified().unwrap();
    let desired_v1 = body["desired"].clone();
    assert_eq!(desired_v1["version"], "1.0.0", "{body}");

    let forged_key = wasmops_sign::SecretKey::from_seed([9; 32]);
    let foreign = wasmops_protocol::signed::Envelope::seal(
        wasmops_protocol::signed::DESIRED,
        "gw-victim",
        &serde_json::json!({"counter": u64::MAX, "desired": desired_v1}),
        |m| forged_key.sign(m),
    );
    for (what, payload, refusal) in [
        (
            "an unsigned desired state",
            serde_json::to_vec(&desired_v1).unwrap(),
            "not a signed message",
        ),
        (
            "one signed by another key",
            foreign.to_vec(),
            "signature does not verify",
        ),
        ("a replay of the real one for 1.0.0", old, "a replay"),
    ] {
        thief.publish(&topic, true, payload);
        wait_until(&format!("gw-victim to refuse {what}"), || {
            agent_status(&s.victim)["last_status"]["error"]
                .as_str()
                .is_some_and(|e| e.contains(refusal))
        });
        s.victim_unmoved(what);
    }

    // A forged ack for the victim's reports: it keeps them.
    thief.publish(
        &wasmops_protocol::topics::telemetry_ack("gw-victim"),
        false,
        serde_json::to_vec(&serde_json::json!({"seqs": (0..1000).collect::<Vec<u64>>()})).unwrap(),
    );
    wait_until("the victim to ignore the forged ack", || {
        std::fs::read_to_string(&s.log)
            .unwrap_or_default()
            .contains("ignoring a telemetry ack: not a signed message")
    });
}

/// On the embedded broker, another enrolled device's credential (and a
/// viewer's API token) can neither speak for the victim nor listen to it:
/// each try ends the thief's connection, and nothing reaches the victim or
/// the coordinator.
#[test]
fn one_device_cannot_speak_or_listen_for_another_on_the_embedded_broker() {
    let s = scene(Broker::Embedded);
    s.deploy("1.1.0");
    let url = s.c.mqtt.clone();
    let thief_id = "wasmops-device-gw-thief";
    let topics = wasmops_protocol::topics::status;
    let forged_status = serde_json::json!({
        "deployment": null, "state": "active", "model": "churn", "version": "6.6.6",
        "active": {"model": "churn", "version": "6.6.6", "sha256": "ab".repeat(32), "sequence": 99},
    });
    let closes = |what: &str, act: &dyn Fn(&Mqtt)| {
        let thief = Mqtt::connect(&url, thief_id, "gw-thief", &s.thief_token).up();
        act(&thief);
        loop {
            match thief.next() {
                Seen::Closed(why) => {
                    eprintln!("{what}: the broker closed the thief's connection ({why})");
                    break;
                }
                Seen::Message(t, _) => panic!("{what}: the thief received {t}"),
                _ => {}
            }
        }
    };
    closes("a forged status", &|t| {
        t.publish(
            &topics("gw-victim"),
            true,
            forged_status.to_string().into_bytes(),
        )
    });
    closes("a forged desired state", &|t| {
        t.publish(
            &wasmops_protocol::topics::desired("gw-victim"),
            true,
            b"{}".to_vec(),
        )
    });
    closes("a forged telemetry ack", &|t| {
        t.publish(
            &wasmops_protocol::topics::telemetry_ack("gw-victim"),
            false,
            b"{}".to_vec(),
        )
    });
    for filter in [
        "#",
        "wasmops/v1/devices/+/desired",
        "wasmops/v1/devices/gw-victim/status",
    ] {
        closes(&format!("subscribing to {filter}"), &|t| {
            t.subscribe(filter)
        });
    }

    // Its own topics still work.
    let thief = Mqtt::connect(&url, thief_id, "gw-thief", &s.thief_token).up();
    thief.subscribe(&wasmops_protocol::topics::desired("gw-thief"));
    assert!(matches!(thief.next(), Seen::SubAck(ok) if ok == [true]));
    drop(thief);

    // Taking over the victim's client id, or naming itself the victim.
    for (client_id, user) in [
        ("wasmops-device-gw-victim", "gw-thief"),
        ("wasmops-device-gw-victim", "gw-victim"),
        ("wasmops-device-gw-thief", "gw-victim"),
    ] {
        let t = Mqtt::connect(&url, client_id, user, &s.thief_token);
        match t.next() {
            Seen::ConnAck(code) => assert_eq!(
                code,
                rumqttc::ConnectReturnCode::BadUserNamePassword,
                "{client_id} as {user}"
            ),
            other => panic!("{client_id} as {user}: {other:?}"),
        }
    }
    // A last will on the victim's presence.
    let will = Mqtt::connect_with(&url, thief_id, "gw-thief", &s.thief_token, |o| {
        o.set_last_will(rumqttc::LastWill::new(
            wasmops_protocol::topics::presence("gw-victim"),
            "offline",
            rumqttc::QoS::AtLeastOnce,
            true,
        ));
    });
    match will.next() {
        Seen::ConnAck(code) => assert_eq!(code, rumqttc::ConnectReturnCode::NotAuthorized),
        other => panic!("a will on the victim's presence: {other:?}"),
    }

    // A viewer's API token does not log in to MQTT at all: people watch
    // events on the HTTP stream, where the device's own credential may not.
    let viewer = cli_ok(
        &s.c,
        &s.admin,
        &["token", "create", "--name", "watcher", "--role", "viewer"],
    );
    match Mqtt::connect(&url, "events-watcher", "watcher", &viewer).next() {
        Seen::ConnAck(code) => assert_eq!(code, rumqttc::ConnectReturnCode::BadUserNamePassword),
        other => panic!("a viewer's token on MQTT: {other:?}"),
    }
    let refused = api(&s.c.url, &s.thief_token)
        .events(&[])
        .err()
        .expect("a device's credential reads no events");
    assert_eq!(refused.status(), Some(403), "{refused}");
    let mut events = api(&s.c.url, &viewer)
        .events(&["DeploymentStarted"])
        .unwrap();
    s.deploy("1.1.0");
    let seen = events.next().unwrap().unwrap();
    assert_eq!(seen.kind, "DeploymentStarted", "{seen:?}");

    std::thread::sleep(Duration::from_secs(1));
    s.victim_unmoved("after the thief's tries");
    assert!(s.dir.path().exists());
}

/// The same attacks on a Mosquitto configured by `wasmops mosquitto-config`
/// (dynamic-security plugin; the coordinator adds each device as it enrols):
/// the broker drops the thief's forged publishes and refuses its
/// subscriptions and the victim's client id; a reset device is logged out.
#[test]
fn one_device_cannot_speak_or_listen_for_another_on_a_configured_mosquitto() {
    let config = tempfile::tempdir().unwrap();
    let port = free_addr()
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "mosquitto-config",
        "--dir",
        p(config.path()),
        "--listen",
        &listen,
        // The broker's certificate from the coordinator's CA (the tests' CA).
        "--ca-dir",
        p(test_ca().parent().unwrap()),
    ];
    let conf = ok(&args);
    let broker = wasmops_fleet::mosquitto::Mosquitto::start_with(conf.trim().into(), port).unwrap();
    // Mosquitto over TLS: everyone here (devices, thief, coordinator) speaks mqtts.
    let url = broker.url().replace("mqtt://", "mqtts://");
    let s = scene(Broker::Managed(&url, config.path()));
    s.deploy("1.1.0");
    let thief_id = "wasmops-device-gw-thief";
    let thief = Mqtt::connect(&url, thief_id, "gw-thief", &s.thief_token).up();
    for filter in [
        "#",
        "wasmops/v1/devices/+/desired",
        "wasmops/v1/devices/gw-victim/status",
    ] {
        thief.subscribe(filter);
        match thief.next() {
            Seen::SubAck(ok) => assert_eq!(ok, [false], "{filter}"),
            other => panic!("subscribing to {filter}: {other:?}"),
        }
    }
    let forged_status = serde_json::json!({
        "deployment": null, "state": "active", "model": "churn", "version": "6.6.6",
        "active": {"model": "churn", "version": "6.6.6", "sha256": "ab".repeat(32), "sequence": 99},
    });
    thief.publish(
        &wasmops_protocol::topics::status("gw-victim"),
        true,
        forged_status.to_string().into_bytes(),
    );
    thief.publish(
        &wasmops_protocol::topics::desired("gw-victim"),
        true,
        b"{}".to_vec(),
    );
    // Its own topics work.
    thief.subscribe(&wasmops_protocol::topics::desired("gw-thief"));
    assert!(matches!(thief.next(), Seen::SubAck(ok) if ok == [true]));
    for (client_id, user) in [
        ("wasmops-device-gw-victim", "gw-thief"),
        ("wasmops-device-gw-victim", "gw-victim"),
        ("gw-thief", "gw-thief"),
    ] {
        match Mqtt::connect(&url, client_id, user, &s.thief_token).next() {
            Seen::ConnAck(code) => assert_ne!(code, rumqttc::ConnectReturnCode::Success),
            other => panic!("{client_id} as {user}: {other:?}"),
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    s.victim_unmoved("after the thief's tries");
    assert!(
        thief.messages().is_empty(),
        "the thief heard nothing but its own"
    );

    // Reset: the thief's login is gone from the broker.
    cli_ok(&s.c, &s.admin, &["devices", "reset", "gw-thief"]);
    wait_until("the broker to refuse the reset device", || {
        matches!(
            Mqtt::connect(&url, thief_id, "gw-thief", &s.thief_token).next(),
            Seen::ConnAck(code) if code != rumqttc::ConnectReturnCode::Success
        )
    });
}

/// Copies a trust directory (root files and delegations), as a release team
/// hands its first state to a coordinator and a device.
fn copy_trust(from: &std::path::Path, to: &std::path::Path) {
    for sub in ["", "delegations"] {
        std::fs::create_dir_all(to.join(sub)).unwrap();
        for e in std::fs::read_dir(from.join(sub)).unwrap() {
            let path = e.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, to.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
}

/// A revoked key's model deployed after the revocation was published: the
/// coordinator refuses it (deployment and rollout), the device — which
/// fetched the revocation itself, without a restart — stops serving what
/// that key signed, while another key's release deploys and serves; an
/// older revocation list published again is refused.
#[test]
fn a_revoked_keys_model_is_refused_everywhere_once_the_revocation_is_published() {
    let dir = tempfile::tempdir().unwrap();
    let (root_key, root_pub) = keygen("revoke-root");
    let (rel1_key, rel1_pub) = keygen("revoke-rel1");
    let (rel2_key, rel2_pub) = keygen("revoke-rel2");
    let team = dir.path().join("team-trust");
    churn_team_trust(
        &team,
        &root_key,
        &[(&rel1_pub, "rel1"), (&rel2_pub, "rel2")],
    );
    let (first, device_trust) = (dir.path().join("first-trust"), dir.path().join("gw-trust"));
    copy_trust(&team, &first);
    copy_trust(&team, &device_trust);
    let release = |version: &str, seq: &str, key: &std::path::Path| {
        scaler_release(
            &format!("revoke-{version}.wasm"),
            "churn",
            version,
            &["--sequence", seq],
            key,
            None,
        )
    };
    let releases = [
        release("1.0.0", "1", &rel1_key),
        release("1.1.0", "2", &rel1_key),
        release("1.2.0", "3", &rel2_key),
    ];

    let (c, admin) = rooted_coordinator(&dir.path().join("coordinator"), &root_pub, &first);
    for r in &releases {
        cli_ok(&c, &admin, &["model", "register", p(r)]);
    }
    let enrolment = cli_ok(&c, &admin, &["enrolment", "--devices", "gw-rev"]);
    let config = dir.path().join("gw-rev.toml");
    std::fs::write(
        &config,
        format!(
            "device_id = \"gw-rev\"\ncoordinator = \"{}\"\nenrolment_token = \"{enrolment}\"\nmqtt = \"{}\"\nstate_dir = \"gw-rev-state\"\nlisten = \"{}\"\ntrust_refresh_seconds = 1\n[trust]\nroot = \"{}\"\ntrust_dir = \"{}\"\n",
            c.url,
            c.mqtt,
            free_addr(),
            p(&root_pub),
            p(&device_trust)
        ),
    )
    .unwrap();
    let agent = start_agent(&config);
    wait_online(&c, &admin, "gw-rev");
    let deploy = |version: &str| {
        cli(
            &c,
            &admin,
            &[
                "deploy", "churn", version, "--device", "gw-rev", "--wait", "120",
            ],
        )
    };
    for v in ["1.0.0", "1.1.0"] {
        let out = deploy(v);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let input = fixtures().join("scaler_logreg/input_b1.json");
    assert_eq!(predict(&agent, &input).0, 200);

    // The release team revokes rel1's key and publishes the list.
    ok(&[
        "trust",
        "revoke",
        "--dir",
        p(&team),
        "--root-key",
        p(&root_key),
        "--key",
        p(&rel1_pub),
        "--reason",
        "leaked",
    ]);
    cli_ok(&c, &admin, &["trust", "push", "--dir", p(&team)]);

    // The coordinator deploys nothing rel1 signed, registered before or not.
    for v in ["1.0.0", "1.1.0"] {
        let out = deploy(v);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("revoked"),
            "{v}: {err}"
        );
    }
    let out = cli(
        &c,
        &admin,
        &["rollout", "create", "churn", "1.0.0", "--device", "gw-rev"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("revoked"), "{err}");

    // The device took the list itself and stopped serving rel1's model (its
    // previous version is rel1's too), without a restart.
    wait_until("the device to stop serving rel1's model", || {
        predict(&agent, &input).0 != 200
    });
    let status = agent_status(&agent);
    assert!(
        status["restore_note"]
            .as_str()
            .is_some_and(|n| n.contains("revoked") && n.contains("1.1.0")),
        "{status}"
    );
    assert!(device_trust.join("revocations.json").exists());

    // rel2's release deploys and serves.
    let out = deploy("1.2.0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(predict(&agent, &input).0, 200);

    // The old list (none) published again: refused, nothing un-revoked.
    let out = cli(&c, &admin, &["trust", "push", "--dir", p(&first)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("409"), "{err}");
    let out = deploy("1.0.0");
    assert!(!out.status.success());
}
