//! Presence: a retained `online` birth message after every connect, and a
//! retained `offline` Last Will the broker publishes when the device drops off
//! without saying goodbye. Reconnects with backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, LastWill, Packet, QoS};
use tokio::task::JoinHandle;

use wasmops_protocol::presence::{PresenceMessage, State};
use wasmops_protocol::topics;

/// A device's live MQTT session.
/// First reconnect delay, doubled per failed try up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// A connection up this long counts as healthy: the next loss retries fast again.
const STABLE: Duration = Duration::from_secs(30);

pub struct Presence {
    client: AsyncClient,
    task: JoinHandle<()>,
    device: String,
    connections: tokio::sync::watch::Receiver<u64>,
}

impl Presence {
    /// Connects `device` to the broker at `mqtt_url` and keeps it connected.
    /// `password` is the device's credential (the username is the device id).
    pub fn start(
        tls: &wasmops_tls::ClientTls,
        mqtt_url: &str,
        device: &str,
        password: Option<String>,
        labels: BTreeMap<String, String>,
        keep_alive: Duration,
    ) -> anyhow::Result<Presence> {
        Ok(Presence::start_with(tls, mqtt_url, device, password, labels, keep_alive, vec![])?.0)
    }

    /// Like [`Presence::start`], also (re)subscribing to `topics` (QoS 1) after
    /// every connect; their messages arrive on the returned channel.
    pub fn start_with(
        tls: &wasmops_tls::ClientTls,
        mqtt_url: &str,
        device: &str,
        password: Option<String>,
        labels: BTreeMap<String, String>,
        keep_alive: Duration,
        subscriptions: Vec<String>,
    ) -> anyhow::Result<(Presence, tokio::sync::mpsc::Receiver<rumqttc::Publish>)> {
        anyhow::ensure!(
            topics::valid_device_id(device),
            "device id `{device}` must be letters, digits, `-`, `_` or `.`"
        );
        let mut opts = tls.mqtt_options(format!("wasmops-device-{device}"), mqtt_url)?;
        opts.set_keep_alive(keep_alive);
        // Without this the client's 10 KiB default applies, and a desired
        // state or report over it drops the connection on every try. Incoming
        // has room above what the coordinator sends (a retained message from
        // an older coordinator); outgoing is what the broker accepts.
        opts.set_max_packet_size(
            4 * wasmops_protocol::MAX_MESSAGE_BYTES,
            wasmops_protocol::MAX_MESSAGE_BYTES,
        );
        if let Some(p) = password {
            opts.set_credentials(device, p);
        }
        let will = serde_json::to_vec(&PresenceMessage {
            state: State::Offline,
            labels: BTreeMap::new(),
        })?;
        opts.set_last_will(LastWill::new(
            topics::presence(device),
            will,
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut events) = AsyncClient::new(opts, 64);
        let birth = serde_json::to_vec(&PresenceMessage {
            state: State::Online,
            labels,
        })?;
        let (c, topic) = (client.clone(), topics::presence(device));
        let device_id = device.to_string();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (connected, connections) = tokio::sync::watch::channel(0u64);
        let task = tokio::spawn(async move {
            let mut backoff = FIRST_RETRY;
            let mut up_since: Option<std::time::Instant> = None;
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        up_since = Some(std::time::Instant::now());
                        connected.send_modify(|n| *n += 1);
                        if let Err(e) = c.try_publish(&topic, QoS::AtLeastOnce, true, birth.clone())
                        {
                            tracing::warn!("cannot queue the birth message: {e}");
                        }
                        for t in &subscriptions {
                            if let Err(e) = c.try_subscribe(t, QoS::AtLeastOnce) {
                                tracing::warn!("cannot subscribe to {t}: {e}");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if tx.send(p).await.is_err() {
                            tracing::debug!("nobody listens for incoming messages");
                        }
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::ConnectionRefused(
                        code @ (rumqttc::ConnectReturnCode::BadUserNamePassword
                        | rumqttc::ConnectReturnCode::NotAuthorized),
                    )) => {
                        tracing::error!(
                            "the broker refuses device {device_id}'s credential ({code:?}): it was revoked or replaced. \
                             An operator gives this device a fresh enrolment token (`wasmops enrolment --devices {device_id}`); \
                             put it in agent.toml as enrolment_token and restart: the agent enrols with it. Retrying in {backoff:?}."
                        );
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_RETRY);
                    }
                    Err(e) => {
                        // Backoff starts over only after a connection that
                        // held: one that drops at once (a message it cannot
                        // read, a refused login) is not retried in a tight loop.
                        if up_since.take().is_some_and(|t| t.elapsed() >= STABLE) {
                            backoff = FIRST_RETRY;
                        }
                        tracing::debug!("MQTT connection lost ({e}); retrying in {backoff:?}");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_RETRY);
                    }
                }
            }
        });
        Ok((
            Presence {
                client,
                task,
                device: device.to_string(),
                connections,
            },
            rx,
        ))
    }

    pub fn client(&self) -> &AsyncClient {
        &self.client
    }

    /// Counts successful connects: changes after every reconnect.
    pub fn connections(&self) -> tokio::sync::watch::Receiver<u64> {
        self.connections.clone()
    }

    /// Says goodbye: a retained `offline`, then a clean disconnect.
    pub async fn stop(self) {
        let bye = serde_json::to_vec(&PresenceMessage {
            state: State::Offline,
            labels: BTreeMap::new(),
        })
        .expect("serialises");
        let _ = self
            .client
            .publish(topics::presence(&self.device), QoS::AtLeastOnce, true, bye)
            .await;
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.task.abort();
    }

    /// Vanishes without a word (a crash or power cut): the broker publishes the Last Will.
    pub fn crash(self) {
        self.task.abort();
    }
}
