//! Fleet benchmarks. Each prints a human summary, then ONE JSON object as the
//! last line. Baselines run in the same process and the same broker.
//!
//! - `fleet bench-telemetry`: telemetry reports stored per second by the
//!   coordinator (parse, de-duplicate, commit, acknowledge) through Mosquitto,
//!   against the broker's raw throughput to a plain subscriber.
//! - `fleet bench-rollout`: wall time of a three-wave canary across N simulated devices.

use std::time::{Duration, Instant};

use crate::mosquitto::Mosquitto;
use anyhow::{Context, Result, bail};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use wasmops_protocol::telemetry::{Histogram, Report, VersionStats};

/// A realistic report: one version, a latency histogram, three feature summaries.
fn report(device: &str, seq: u64) -> Vec<u8> {
    let mut latency = Histogram::default();
    for ms in [0.2, 0.3, 0.4, 1.2, 0.25] {
        latency.record(ms);
    }
    let mut v = VersionStats {
        model: "churn".into(),
        version: "1.1.0".into(),
        role: "live".into(),
        predictions: 5,
        latency,
        ..Default::default()
    };
    for f in 0..3 {
        v.features.insert(
            format!("X[{f}]"),
            wasmops_protocol::telemetry::Summary {
                count: 5,
                nulls: 0,
                min: Some(1.0),
                max: Some(9.0),
                sum: 22.0,
                sum_sq: 130.0,
                bins: vec![1, 1, 1, 1, 1],
                ..Default::default()
            },
        );
    }
    serde_json::to_vec(&Report {
        device: device.into(),
        stream: "bench".into(),
        seq,
        window_start_ms: 0,
        window_end_ms: 1,
        versions: vec![v],
        dropped_reports: 0,
        dropped_predictions: 0,
    })
    .expect("serialises")
}

/// Publishes `per_device` reports from each of `devices` connections (QoS 1) as fast as the broker takes them.
async fn publish_all(
    url: &str,
    devices: usize,
    per_device: usize,
    topic: impl Fn(&str) -> String,
) -> Result<()> {
    let (host, port) = wasmops_protocol::parse_mqtt_url(url)?;
    let mut tasks = vec![];
    for d in 0..devices {
        let device = format!("bench-{d:04}");
        let mut opts = MqttOptions::new(
            format!("{device}-{}", std::process::id()),
            host.clone(),
            port,
        );
        opts.set_inflight(200);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(opts, 1000);
        let topic = topic(&device);
        tasks.push(tokio::spawn(async move {
            let publisher = {
                let client = client.clone();
                tokio::spawn(async move {
                    for seq in 0..per_device as u64 {
                        client
                            .publish(&topic, QoS::AtLeastOnce, false, report(&device, seq))
                            .await?;
                    }
                    anyhow::Ok(())
                })
            };
            let mut acked = 0;
            while acked < per_device {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => bail!("publisher connection failed: {e}"),
                }
            }
            publisher.await??;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

pub fn telemetry(mqtt: Option<&str>, devices: usize, messages: usize) -> Result<()> {
    let own;
    let url = match mqtt {
        Some(u) => u.to_string(),
        None => {
            own = Mosquitto::start()?;
            own.url()
        }
    };
    let per_device = messages.div_ceil(devices);
    let total = per_device * devices;
    let rt = tokio::runtime::Runtime::new()?;

    // Baseline: the broker alone, to a subscriber that only counts.
    let raw_rate = rt.block_on(async {
        let (host, port) = wasmops_protocol::parse_mqtt_url(&url)?;
        let mut opts = MqttOptions::new(format!("bench-raw-sub-{}", std::process::id()), host, port);
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (sub, mut events) = AsyncClient::new(opts, 100);
        sub.subscribe("bench/raw/+/telemetry", QoS::AtLeastOnce).await?;
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
                break;
            }
        }
        let counter = tokio::spawn(async move {
            let mut n = 0;
            while n < total {
                if let Ok(Event::Incoming(Packet::Publish(_))) = events.poll().await {
                    n += 1;
                }
            }
        });
        let started = Instant::now();
        publish_all(&url, devices, per_device, |d| format!("bench/raw/{d}/telemetry")).await?;
        tokio::time::timeout(Duration::from_secs(300), counter).await.context("the raw subscriber did not get every message (a broker with a small max_queued_messages drops QoS 1 messages under burst; run without --mqtt to use a private, sized Mosquitto)")??;
        anyhow::Ok(total as f64 / started.elapsed().as_secs_f64())
    })?;

    // The coordinator: parse, de-duplicate, store in SQLite, acknowledge.
    let dir = tempfile::tempdir()?;
    let key = wasmops_sign::SecretKey::generate()?;
    let coordinator = crate::demo::InProcess::start(
        &rt,
        dir.path(),
        wasmops_trust::TrustPolicy::keys(vec![key.public()]),
        Some(&url),
    )?;
    let api = coordinator.api.clone();
    // The publishers are enrolled devices (telemetry from strangers is rejected).
    let admin = coordinator.admin()?;
    let enrolment = admin.create_enrolment(&wasmops_api::EnrolmentRequest::new("bench-*"))?;
    let enroller = wasmops_api::Client::with_tls(&api, &enrolment.token, coordinator.tls.clone())?;
    for d in 0..devices {
        enroller
            .enrol(&format!("bench-{d:04}"))
            .context("enrolment failed")?;
    }
    // Let the coordinator's subscription land before publishing.
    std::thread::sleep(Duration::from_millis(500));
    let stored = || -> Result<u64> {
        let v = admin.telemetry(i64::MAX)?;
        Ok(v["reports"].as_u64().unwrap_or(0))
    };
    let started = Instant::now();
    rt.block_on(publish_all(
        &url,
        devices,
        per_device,
        wasmops_protocol::topics::telemetry,
    ))?;
    let published = started.elapsed();
    loop {
        let n = stored()?;
        if n as usize >= total {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("only {n} of {total} reports stored after 600 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let elapsed = started.elapsed();
    let ingest_rate = total as f64 / elapsed.as_secs_f64();
    coordinator.stop(&rt);
    println!(
        "telemetry ingestion through Mosquitto ({url}), {devices} publishing connections, {total} reports of {} bytes",
        report("bench-0000", 0).len()
    );
    println!("  broker alone (publish → subscriber):      {raw_rate:>9.0} msgs/s");
    println!(
        "  coordinator (publish → stored in SQLite): {ingest_rate:>9.0} msgs/s  (publishing took {:.2} s, all stored after {:.2} s)",
        published.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({"reports": total, "devices": devices, "raw_broker_msgs_per_s": raw_rate.round(), "ingest_msgs_per_s": ingest_rate.round(), "ratio_ingest_to_raw": (ingest_rate / raw_rate * 1000.0).round() / 1000.0})
    );
    Ok(())
}
