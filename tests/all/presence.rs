//! Device presence over MQTT, against the embedded rumqttd broker and the real
//! Mosquitto on 127.0.0.1:1883: a birth message marks a device online with its
//! labels; a clean stop and a crash (the broker's Last Will) both mark it offline;
//! a device that never enrolled is rejected.

use crate::common::*;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use wasmops_agent::presence::Presence;

fn devices(c: &Coordinator, token: &str) -> Value {
    api_get(c, token, "/v1/devices")
}

/// Polls until `check` holds for the device list, or fails after 15 s.
fn wait_for(c: &Coordinator, token: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let d = devices(c, token);
        if check(&d) {
            return d;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}: {d}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn state_of<'a>(list: &'a Value, id: &str) -> Option<&'a str> {
    list.as_array()?.iter().find(|d| d["id"] == id)?["state"].as_str()
}

fn exercise(mqtt_args: &[String], tag: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--trust".to_string(), p(&keys().1).to_string()];
    args.extend(mqtt_args.iter().cloned());
    let c = start_coordinator(dir.path(), &args);
    let token = admin_token(dir.path());
    // Unique ids: a real broker keeps retained messages across runs.
    let stamp = format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (a, b, stranger) = (
        format!("gw-a-{stamp}"),
        format!("gw-b-{stamp}"),
        format!("gw-x-{stamp}"),
    );
    let (ka, kb) = (enrol(&c, &token, &a), enrol(&c, &token, &b));
    let (ka_junk, kb_again) = (ka.clone(), kb.clone());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let labels = BTreeMap::from([
        ("site".to_string(), "eu-1".to_string()),
        ("tier".to_string(), "edge".to_string()),
    ]);
    let (pa, pb, px) = rt.block_on(async {
        // The stranger tries first, with a made-up credential.
        let px = Presence::start(
            &test_tls(),
            &c.mqtt,
            &stranger,
            Some("wo_made_up".into()),
            BTreeMap::new(),
            Duration::from_secs(5),
        )
        .unwrap();
        let pa = Presence::start(
            &test_tls(),
            &c.mqtt,
            &a,
            Some(ka),
            labels.clone(),
            Duration::from_secs(5),
        )
        .unwrap();
        let pb = Presence::start(
            &test_tls(),
            &c.mqtt,
            &b,
            Some(kb),
            BTreeMap::new(),
            Duration::from_secs(5),
        )
        .unwrap();
        (pa, pb, px)
    });
    let list = wait_for(&c, &token, "both devices online", |l| {
        state_of(l, &a) == Some("online") && state_of(l, &b) == Some("online")
    });
    assert!(
        state_of(&list, &stranger).is_none(),
        "a device that never enrolled must be rejected: {list}"
    );
    rt.block_on(async { px.crash() });
    let dev_a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == a.as_str())
        .unwrap();
    assert_eq!(dev_a["labels"]["site"], "eu-1");

    // A crash: no goodbye; the broker publishes the Last Will.
    rt.block_on(async { pa.crash() });
    let list = wait_for(&c, &token, "crashed device offline", |l| {
        state_of(l, &a) == Some("offline")
    });
    assert_eq!(
        state_of(&list, &b),
        Some("online"),
        "the other device is unaffected"
    );
    let dev_a = list
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == a.as_str())
        .unwrap();
    assert_eq!(
        dev_a["labels"]["site"], "eu-1",
        "the Last Will keeps the labels the device announced"
    );
    // A clean stop.
    rt.block_on(pb.stop());
    wait_for(&c, &token, "stopped device offline", |l| {
        state_of(l, &b) == Some("offline")
    });

    // Garbage from an enrolled device — malformed presence and telemetry, a
    // message over the size limit — is ignored; the coordinator keeps working.
    rt.block_on(async {
        // As device a itself (its session crashed above): garbage on its own
        // topics first, then on others' (the embedded broker ends the
        // connection there; Mosquitto here has no ACLs and passes them on).
        let mut opts = mqtt_options(format!("wasmops-device-{a}"), &c.mqtt);
        opts.set_credentials(a.clone(), ka_junk);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = rumqttc::AsyncClient::new(opts, 10);
        let qos = rumqttc::QoS::AtLeastOnce;
        client
            .publish(
                wasmops_protocol::topics::presence(&a),
                qos,
                false,
                b"{not json".to_vec(),
            )
            .await
            .unwrap();
        client
            .publish(
                wasmops_protocol::topics::telemetry(&a),
                qos,
                false,
                b"{not json".to_vec(),
            )
            .await
            .unwrap();
        client
            .publish(
                wasmops_protocol::topics::presence(&format!("junk-{stamp}")),
                qos,
                false,
                b"{}".to_vec(),
            )
            .await
            .unwrap();
        client
            .publish("wasmops/v1/devices/+/presence", qos, false, b"{}".to_vec())
            .await
            .ok();
        client
            .publish(
                wasmops_protocol::topics::telemetry(&a),
                qos,
                false,
                vec![b'x'; 300 * 1024],
            )
            .await
            .unwrap();
        for _ in 0..6 {
            let _ = tokio::time::timeout(Duration::from_millis(300), events.poll()).await;
        }
    });
    let list = devices(&c, &token);
    assert!(
        state_of(&list, &format!("junk-{stamp}")).is_none(),
        "{list}"
    );
    let pb = rt.block_on(async {
        Presence::start(
            &test_tls(),
            &c.mqtt,
            &b,
            Some(kb_again),
            BTreeMap::new(),
            Duration::from_secs(5),
        )
        .unwrap()
    });
    wait_for(
        &c,
        &token,
        "the coordinator still recording presence after the junk",
        |l| state_of(l, &b) == Some("online"),
    );
    rt.block_on(pb.stop());

    // Leave the real broker clean: clear our retained messages.
    rt.block_on(async {
        let (client, mut events) =
            rumqttc::AsyncClient::new(mqtt_options(format!("clean-{stamp}"), &c.mqtt), 10);
        for id in [&a, &b, &stranger] {
            client
                .publish(
                    wasmops_protocol::topics::presence(id),
                    rumqttc::QoS::AtLeastOnce,
                    true,
                    Vec::<u8>::new(),
                )
                .await
                .unwrap();
        }
        for _ in 0..6 {
            let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
        }
    });
}

#[test]
fn presence_with_the_embedded_broker() {
    exercise(&["--mqtt-listen".to_string(), free_addr()], "embedded");
}

#[test]
fn presence_with_mosquitto() {
    exercise(
        &["--mqtt".to_string(), "mqtt://127.0.0.1:1883".to_string()],
        "mosquitto",
    );
}
