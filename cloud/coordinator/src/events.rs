//! Fleet events (ModelRegistered, DeploymentStarted, ModelDeployed,
//! DeviceOffline; rollouts add RolloutStarted, WaveCompleted, RolloutAborted):
//! published on `wasmops/v1/events/{kind}` (QoS 1) and POSTed as JSON to every
//! configured webhook, with retries, and streamed to API readers on
//! `GET /v1/events` (from [`Coordinator::internal_events`], which the loop
//! reads too). Delivery never blocks the change itself.

use std::time::Duration;

use rumqttc::QoS;
pub use wasmops_api::Event;

use crate::Coordinator;

pub fn topic(kind: &str) -> String {
    format!("{}/events/{kind}", wasmops_protocol::topics::PREFIX)
}

pub fn emit(
    c: &Coordinator,
    kind: &'static str,
    subject: impl Into<String>,
    detail: serde_json::Value,
) {
    let event = Event {
        kind: kind.to_string(),
        at_ms: crate::now_ms(),
        subject: subject.into(),
        detail,
    };
    let payload = serde_json::to_vec(&event).expect("events serialise");
    // No subscriber is fine.
    let _ = c.internal_events.send(event.clone());
    if let Some(bus) = c.bus.get()
        && let Err(e) = bus.try_publish(topic(kind), QoS::AtLeastOnce, false, payload.clone())
    {
        tracing::warn!("cannot publish event {kind}: {e}");
    }
    for url in &c.webhooks {
        let (http, url, body) = (c.http.clone(), url.clone(), payload.clone());
        tokio::spawn(async move {
            for attempt in 0..4u32 {
                let sent = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => return,
                    Ok(r) => tracing::warn!("webhook {url} answered {} for {kind}", r.status()),
                    Err(e) => tracing::warn!("webhook {url} failed for {kind}: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
            tracing::error!("giving up on webhook {url} for event {kind}");
        });
    }
}
