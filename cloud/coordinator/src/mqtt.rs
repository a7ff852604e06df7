//! The coordinator's MQTT side: an embedded `rumqttd` broker as the zero-setup
//! default (or an external broker such as Mosquitto), and the subscriber that
//! turns device presence into the `devices` table, status reports into
//! deployment and rollout progress, and hands telemetry to its writer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use wasmops_protocol::device::{InstallState, Status};
use wasmops_protocol::topics;

use crate::{Coordinator, acl};

/// Largest MQTT message accepted by the embedded broker and the subscriber
/// (the wire contract's limit).
pub use wasmops_protocol::MAX_MESSAGE_BYTES;

pub use crate::acl::COORDINATOR_USER;

/// Broker logins waiting for a decision before new ones are refused outright.
const MAX_PENDING_LOGINS: usize = 1024;

/// Login decisions made at once (each at most one database lookup): enough to
/// admit a fleet of 1,000 reconnecting devices in about a second on SQLite.
const LOGIN_WORKERS: usize = 8;

/// Recent login decisions, so a reconnect storm or a password-guessing flood
/// costs one database lookup per (user, password) per TTL. Keyed by a hash
/// of the password, never the password. Any credential change (enrolment)
/// invalidates everything through the generation counter.
#[derive(Default)]
pub struct LoginCache {
    decided: std::sync::Mutex<HashMap<LoginKey, Verdict>>,
}

/// (username, client id, SHA-256 of the password).
type LoginKey = (String, String, [u8; 32]);
/// (when decided, credential generation then, admitted).
type Verdict = (std::time::Instant, u64, bool);

impl LoginCache {
    /// An admission is remembered for a minute, a refusal for five seconds
    /// (a device enrolling right after a refused try is not kept out long).
    const ADMIT_TTL: Duration = Duration::from_secs(60);
    const REFUSE_TTL: Duration = Duration::from_secs(5);
    const MAX_ENTRIES: usize = 100_000;

    pub async fn decide<F, Fut>(
        &self,
        (user, client_id): (&str, &str),
        pass: &str,
        generation: u64,
        lookup: F,
    ) -> bool
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        use sha2::Digest;
        let key = (
            user.to_string(),
            client_id.to_string(),
            sha2::Sha256::digest(pass).into(),
        );
        if let Some((at, g, ok)) = self.decided.lock().unwrap().get(&key) {
            let ttl = if *ok {
                Self::ADMIT_TTL
            } else {
                Self::REFUSE_TTL
            };
            if *g == generation && at.elapsed() < ttl {
                return *ok;
            }
        }
        let ok = lookup().await;
        let mut decided = self.decided.lock().unwrap();
        if decided.len() >= Self::MAX_ENTRIES {
            decided.clear();
        }
        decided.insert(key, (std::time::Instant::now(), generation, ok));
        ok
    }
}

/// Starts rumqttd on `listen` in a background thread (it runs its own runtime)
/// and returns once it completes an MQTT handshake. Every connection must log
/// in (see [`crate::enrolment::mqtt_login`]): unknown devices are turned away.
pub async fn start_embedded_broker(c: Arc<Coordinator>, listen: SocketAddr) -> anyhow::Result<()> {
    use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
    // Fail early and clearly if the port is taken (rumqttd would only log it).
    drop(
        std::net::TcpListener::bind(listen)
            .map_err(|e| anyhow::anyhow!("embedded MQTT broker cannot listen on {listen}: {e}"))?,
    );
    // The broker's runtime asks this runtime (which owns the database pool).
    // Bounded at every step (issue 24.13): a queue of MAX_PENDING_LOGINS (a
    // login beyond it is refused at once; the client retries with backoff),
    // LOGIN_WORKERS lookups at a time, and recent decisions cached.
    type Login = (String, String, String, tokio::sync::oneshot::Sender<bool>);
    let (login_tx, mut login_rx) = tokio::sync::mpsc::channel::<Login>(MAX_PENDING_LOGINS);
    let checker = c.clone();
    tokio::spawn(async move {
        let workers = Arc::new(tokio::sync::Semaphore::new(LOGIN_WORKERS));
        let decided = Arc::new(LoginCache::default());
        while let Some((client_id, user, pass, answer)) = login_rx.recv().await {
            let Ok(worker) = workers.clone().acquire_owned().await else {
                break;
            };
            let (c, decided) = (checker.clone(), decided.clone());
            tokio::spawn(async move {
                let generation = c.known.generation();
                let ok = decided
                    .decide((&user, &client_id), &pass, generation, || {
                        mqtt_login(&c, &c.mqtt_secret, &client_id, &user, &pass)
                    })
                    .await;
                let _ = answer.send(ok);
                drop(worker);
            });
        }
    });
    let mut connections = ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: MAX_MESSAGE_BYTES,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
        topic_acl: None,
    };
    connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
        let login_tx = login_tx.clone();
        async move {
            let (tx, rx) = tokio::sync::oneshot::channel();
            login_tx.try_send((client_id, user, pass, tx)).is_ok() && rx.await.unwrap_or(false)
        }
    });
    connections.set_topic_acl(|client_id, user, access, topic| {
        let access = match access {
            rumqttd::TopicAccess::Publish => acl::Access::Publish,
            rumqttd::TopicAccess::Subscribe => acl::Access::Subscribe,
            rumqttd::TopicAccess::Will => acl::Access::Will,
        };
        let ok = acl::allowed(acl::Principal::of(client_id, user), access, topic);
        if !ok {
            tracing::warn!(
                "MQTT client {client_id} (user {user}) may not {access:?} on `{topic}`: disconnected"
            );
        }
        ok
    });
    let server = ServerSettings {
        name: "v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_000,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("wasmops-mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!("embedded MQTT broker stopped: {e}");
            }
        })?;
    // Ready when it answers a CONNECT, so nobody's first connect is refused.
    let started = std::time::Instant::now();
    let mut opts = MqttOptions::new(
        "wasmops-coordinator-readiness",
        listen.ip().to_string(),
        listen.port(),
    );
    opts.set_credentials(COORDINATOR_USER, c.mqtt_secret.clone());
    let (client, mut events) = AsyncClient::new(opts, 4);
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(_) => {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(10),
                    "embedded MQTT broker did not start on {listen}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    client.disconnect().await?;
    while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_millis(500), events.poll()).await {
        if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
    Ok(())
}

/// Subscribes to presence, install status and telemetry and keeps the tables
/// current, reconnecting with backoff and resubscribing after every reconnect
/// (and every minute, to be sent the retained state again). Its client is the
/// coordinator's publisher. Never returns.
pub async fn run_subscriber(
    c: Arc<Coordinator>,
    url: String,
    tls: wasmops_tls::ClientTls,
    login: Option<(String, String)>,
) {
    let client_id = format!("wasmops-coordinator-{}", std::process::id());
    let mut opts = match tls.mqtt_options(client_id, &url) {
        Ok(o) => o,
        Err(e) => {
            // Checked before the coordinator started: not reached.
            tracing::error!("the coordinator cannot subscribe: {e}");
            return;
        }
    };
    if let Some((user, pass)) = login {
        opts.set_credentials(user, pass);
    }
    opts.set_keep_alive(Duration::from_secs(10));
    // Read oversized messages and drop them here: refusing them at the packet
    // layer would drop the whole connection, and with it everyone's messages.
    opts.set_max_packet_size(64 << 20, MAX_MESSAGE_BYTES);
    let (client, mut events) = AsyncClient::new(opts, 4096);
    let _ = c.bus.set(client.clone());
    let telemetry = crate::telemetry::spawn_writer(c.clone());
    // Presence and status are recorded by their own task: the event loop only
    // reads, so a slow database never makes the broker queue (and a stock
    // Mosquitto drop) messages for us.
    let (state_tx, mut state_rx) = tokio::sync::mpsc::channel::<rumqttc::Publish>(100_000);
    {
        let c = c.clone();
        tokio::spawn(async move {
            while let Some(p) = state_rx.recv().await {
                let result = if p.topic.ends_with("/presence") {
                    crate::devices::record_presence(&c, &p.topic, &p.payload).await
                } else {
                    record_status(&c, &p.topic, &p.payload).await
                };
                if let Err(e) = result {
                    tracing::warn!("message on {} ignored: {e}", p.topic);
                }
            }
        });
    }
    // Re-subscribing makes the broker send every retained presence and status
    // again: whatever was lost on the way is repaired within a minute.
    let mut resync = tokio::time::interval(Duration::from_secs(60));
    resync.tick().await;
    let mut backoff = Duration::from_millis(100);
    loop {
        let polled = tokio::select! {
            e = events.poll() => e,
            _ = resync.tick() => {
                for t in [topics::ALL_PRESENCE, topics::ALL_STATUS] {
                    let _ = client.try_subscribe(t, QoS::AtLeastOnce);
                }
                continue;
            }
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = Duration::from_millis(100);
                let plugin = c.mosquitto.then_some(crate::mosquitto::RESPONSE_TOPIC);
                // The broker may have restarted empty: give it every desired state again.
                let c = c.clone();
                tokio::spawn(async move {
                    match crate::bus::republish_all(&c).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!("republished {n} desired states"),
                        Err(e) => tracing::warn!("{e}"),
                    }
                });
                for t in [
                    topics::ALL_PRESENCE,
                    topics::ALL_STATUS,
                    topics::ALL_TELEMETRY,
                ]
                .into_iter()
                .chain(plugin)
                {
                    if let Err(e) = client.try_subscribe(t, QoS::AtLeastOnce) {
                        tracing::error!("cannot subscribe to {t}: {e}");
                    }
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if p.payload.len() > MAX_MESSAGE_BYTES {
                    tracing::warn!(
                        "message on {} ignored: {} bytes, more than the {MAX_MESSAGE_BYTES} allowed",
                        p.topic,
                        p.payload.len()
                    );
                    continue;
                }
                if p.topic == crate::mosquitto::RESPONSE_TOPIC {
                    crate::mosquitto::log_response(&p.payload);
                    continue;
                }
                if p.topic.ends_with("/telemetry") {
                    match topics::device_of(&p.topic).filter(|d| topics::valid_device_id(d)) {
                        // Backpressure: only when the writer is 20,000 reports behind does
                        // reading wait (presence and status never wait on the database).
                        Some(d) => {
                            let _ = telemetry.send((d.to_string(), p.payload.clone())).await;
                        }
                        None => {
                            tracing::warn!("telemetry on {} ignored: no valid device id", p.topic)
                        }
                    }
                    continue;
                }
                if state_tx.try_send(p).is_err() {
                    tracing::warn!(
                        "presence/status backlog full: a message waits for the next resync"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("MQTT connection lost ({e}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A device's install status report: its deployment's or rollout's row, and
/// the model the device says it runs.
async fn record_status(c: &Coordinator, topic: &str, payload: &[u8]) -> anyhow::Result<()> {
    if payload.is_empty() {
        return Ok(());
    }
    let device = crate::devices::enrolled_sender(c, topic).await?;
    let mut s: Status = serde_json::from_slice(payload)?;
    s.check()
        .map_err(|e| anyhow::anyhow!("status from {device} refused: {e}"))?;
    // Only a row that changes counts: resent (retained) reports are no news.
    let changed = if let Some(rollout) = s.deployment.as_deref().filter(|d| d.starts_with("ro-")) {
        crate::rollouts::record_status(
            c,
            rollout,
            device,
            s.state,
            s.version.as_deref(),
            s.error.as_deref(),
        )
        .await?
    } else if let Some(dep) = &s.deployment {
        crate::deployments::record_status(c, dep, device, s.state, s.error.as_deref()).await?
    } else {
        false
    };
    if changed
        && s.state == InstallState::Active
        && let Some(a) = &s.active
    {
        crate::events::emit(
            c,
            "ModelDeployed",
            device.to_string(),
            serde_json::json!({"model": a.model, "version": a.version, "deployment": s.deployment}),
        );
    }
    crate::devices::record_active(c, device, &s).await?;
    Ok(())
}

/// The embedded broker's login check: the coordinator's own client, or a
/// device with its own credential (username = device id, client id
/// `wasmops-device-{id}`); [`crate::acl`] says what each may then do.
/// People's API tokens are refused: they watch events on `GET /v1/events`.
pub async fn mqtt_login(
    c: &Coordinator,
    internal_secret: &str,
    client_id: &str,
    username: &str,
    password: &str,
) -> bool {
    if username == COORDINATOR_USER {
        return password == internal_secret && acl::login_fits(client_id, username, None);
    }
    match crate::auth::authenticate(&c.db, password).await {
        Ok(Some(p)) if p.role == crate::auth::Role::Device => {
            p.name == crate::enrolment::credential_name(username)
                && acl::login_fits(client_id, username, Some(username))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::LoginCache;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn repeated_logins_cost_one_lookup_until_credentials_change() {
        let cache = LoginCache::default();
        let lookups = AtomicUsize::new(0);
        let lookup = |answer: bool| {
            let lookups = &lookups;
            move || async move {
                lookups.fetch_add(1, Ordering::SeqCst);
                answer
            }
        };
        // A flood of wrong passwords: one lookup.
        for _ in 0..1000 {
            assert!(
                !cache
                    .decide(("gw-1", "wasmops-device-gw-1"), "guess", 0, lookup(false))
                    .await
            );
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 1);
        // The right password is its own entry, admitted and remembered.
        for _ in 0..1000 {
            assert!(
                cache
                    .decide(("gw-1", "wasmops-device-gw-1"), "secret", 0, lookup(true))
                    .await
            );
        }
        assert_eq!(lookups.load(Ordering::SeqCst), 2);
        // A credential changed (generation 1): decided afresh.
        assert!(
            !cache
                .decide(("gw-1", "wasmops-device-gw-1"), "secret", 1, lookup(false))
                .await
        );
        assert_eq!(lookups.load(Ordering::SeqCst), 3);
    }
}
