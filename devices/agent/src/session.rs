//! The agent's MQTT session: presence (birth and Last Will, see
//! [`crate::presence`]), desired-state messages to the installer (only the
//! newest counts), status reports, and telemetry sent until acknowledged.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rumqttc::QoS;
use wasmops_protocol::device::{Desired, InstallState, Status};
use wasmops_protocol::topics;

use crate::agent::Agent;
use crate::presence::Presence;

/// A connected agent's background work; stops on drop of [`Running::stop`].
pub struct Running {
    pub agent: Arc<Agent>,
    presence: Presence,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Says goodbye (retained `offline`) and stops.
    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        // A last report, so predictions made since the last tick are not left behind.
        let _ = self.agent.close_window();
        self.presence.stop().await;
    }

    /// Vanishes without a word (the broker publishes the Last Will).
    pub fn crash(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.presence.crash();
    }
}

/// Connects `agent` to MQTT: presence, desired-state installs, status
/// reports, telemetry with acknowledgements.
pub fn start(agent: Arc<Agent>) -> Result<Running> {
    let config = &agent.config;
    let subscriptions = vec![
        topics::desired(&config.device_id),
        topics::telemetry_ack(&config.device_id),
    ];
    let login = Some(config.credential().to_string()).filter(|t| !t.is_empty());
    let (presence, mut incoming) = Presence::start_with(
        agent.tls(),
        &config.mqtt,
        &config.device_id,
        login,
        config.labels.clone(),
        Duration::from_secs(10),
        subscriptions,
    )?;
    let client = presence.client().clone();
    let status_topic = topics::status(&config.device_id);
    let publisher = {
        let (agent, client) = (agent.clone(), client.clone());
        Arc::new(move |s: Status| {
            *agent.last_status.write().unwrap() = Some(s.clone());
            let payload = serde_json::to_vec(&s).expect("status serialises");
            if let Err(e) = client.try_publish(&status_topic, QoS::AtLeastOnce, true, payload) {
                tracing::warn!("cannot queue a status report: {e}");
            }
        })
    };
    // Say what runs after a restart.
    publisher(agent.status(None, InstallState::Active, agent.restore_note()));

    let (desired_tx, mut desired_rx) = tokio::sync::watch::channel::<Option<Desired>>(None);
    let router = {
        let (agent, refused) = (agent.clone(), publisher.clone());
        let ack_topic = topics::telemetry_ack(&config.device_id);
        tokio::spawn(async move {
            while let Some(msg) = incoming.recv().await {
                if msg.topic == ack_topic {
                    agent.acked(&msg.payload);
                    continue;
                }
                if msg.payload.is_empty() {
                    // A cleared retained message: nothing to act on.
                    continue;
                }
                match agent.control.desired(&msg.payload) {
                    // Only the newest desired state matters: a slow install is not queued behind stale ones.
                    Ok(Some(d)) => {
                        desired_tx.send_replace(Some(d));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("{}: refusing a desired-state message: {e}", agent.id());
                        refused(agent.status(
                            None,
                            InstallState::Failed,
                            Some(format!("desired state refused: {e}")),
                        ));
                    }
                }
            }
        })
    };
    let trust = {
        let (agent, publisher) = (agent.clone(), publisher.clone());
        tokio::spawn(async move {
            if !agent.trusts_a_root() {
                return;
            }
            let http = match agent.http() {
                Ok(h) => h,
                Err(e) => {
                    tracing::error!(
                        "{}: trust metadata will not be refreshed: {e:#}",
                        agent.id()
                    );
                    return;
                }
            };
            let every = Duration::from_secs(agent.config.trust_refresh_seconds.max(1));
            loop {
                tokio::time::sleep(every).await;
                match crate::trust::refresh(&agent, &http).await {
                    // Say what serves now (a revoked model may have stopped).
                    Ok(Some(_)) => {
                        publisher(agent.status(None, InstallState::Active, agent.restore_note()))
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!("{}: trust metadata not refreshed: {e:#}", agent.id()),
                }
            }
        })
    };
    let installer = {
        let agent = agent.clone();
        tokio::spawn(async move {
            while desired_rx.changed().await.is_ok() {
                let Some(desired) = desired_rx.borrow_and_update().clone() else {
                    continue;
                };
                if let Err(e) = agent.apply(&desired, &*publisher).await {
                    tracing::warn!(
                        "{}: install of {} {} failed: {e:#}",
                        agent.id(),
                        desired.model,
                        desired.version
                    );
                    publisher(agent.status(
                        Some(&desired),
                        InstallState::Failed,
                        Some(format!("{e:#}")),
                    ));
                }
            }
        })
    };
    let telemetry = {
        let agent = agent.clone();
        let mut connections = presence.connections();
        let interval = Duration::from_millis(config.telemetry_interval_ms.max(50));
        tokio::spawn(async move {
            let mut sent = BTreeMap::new();
            let mut tick = tokio::time::interval(interval);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = agent.close_window() {
                            tracing::error!("{}: cannot store a telemetry report: {e:#}", agent.id());
                        }
                    }
                    // Reconnected: everything unacknowledged goes out again at once.
                    Ok(()) = connections.changed() => sent.clear(),
                }
                agent.send_pending(&client, &mut sent);
            }
        })
    };
    Ok(Running {
        agent,
        presence,
        tasks: vec![router, installer, telemetry, trust],
    })
}
