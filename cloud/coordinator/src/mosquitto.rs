//! An external Mosquitto held to the same rules as the embedded broker
//! ([`crate::acl`]), through Mosquitto's dynamic-security plugin.
//!
//! `wasmops mosquitto-config --dir DIR` writes `DIR/mosquitto.conf` (no
//! anonymous logins, the plugin on, running as the files' owner, TLS with a
//! server certificate from the coordinator's CA in `DIR/server.pem` unless
//! asked for plain MQTT) and the plugin's starting state: the
//! coordinator as its only client (password in `DIR/coordinator.password`,
//! 0600) and a `wasmops-watcher` role (subscribe to `wasmops/v1/events/#`)
//! for clients an operator adds by hand to feed events to other systems;
//! wasmops itself watches events on the HTTP API. A coordinator started with
//! `--mosquitto-dir DIR` logs in with that password and, as devices enrol,
//! makes each one a client of its own: username = device id, client id
//! pinned to `wasmops-device-{id}`, and a role of literal topic ACLs
//! (Mosquitto 2.0's plugin does not substitute `%u`, measured on 2.0.11)
//! allowing its own presence, status and telemetry out and its own desired
//! state and acks in. `wasmops devices reset` deletes it. Everything else
//! is denied by the plugin's defaults (publish and subscribe: deny).
//!
//! Commands travel on `$CONTROL/dynamic-security/v1` over the coordinator's
//! own MQTT connection, published before the enrolment commits (a broker that
//! cannot be told makes the enrolment fail with 503, and nothing is used up);
//! the plugin's answers are logged.

use std::net::SocketAddr;
use std::path::Path;

use serde_json::{Value, json};
use wasmops_protocol::topics;

use crate::Coordinator;
use crate::acl::{COORDINATOR_USER, DEVICE_CLIENT_PREFIX};
use crate::error::CoordinatorError;

/// Where the plugin takes commands.
pub const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
/// Where it answers.
pub const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
/// The coordinator's password file in the config directory.
pub const PASSWORD_FILE: &str = "coordinator.password";
/// A role for event-reading clients an operator adds (wasmops creates none).
pub const WATCHER_ROLE: &str = "wasmops-watcher";

/// PBKDF2 rounds for the coordinator's client: Mosquitto 2.0's own default
/// for dynamic-security clients.
const ITERATIONS: u32 = 101;

/// Where Debian and most distributions install the plugin.
const PLUGIN_PATHS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
];

/// The broker's TLS: a server certificate from `ca` for `names` (besides
/// localhost, the loopback addresses, the listen address and the host's
/// name: [`crate::tls::server_names`]).
pub struct BrokerTls<'a> {
    pub ca: &'a wasmops_tls::Ca,
    pub names: &'a [String],
    /// Clients must present a certificate from `ca` (devices get theirs at
    /// enrolment). Mosquitto checks the chain; the login (password, client
    /// id) stays the dynamic-security plugin's, so the certificate is a
    /// second factor here, not bound to the device it names: Mosquitto
    /// binds it only with `use_identity_as_username`, which skips the
    /// plugin's password and client-id checks.
    pub client_certs: bool,
}

/// Writes a Mosquitto configuration for a broker on `listen` into `dir`
/// (see the module docs). `plugin` overrides the plugin's path; `tls: None`
/// is plain MQTT. Returns the path of `mosquitto.conf`.
pub fn write_config(
    dir: &Path,
    listen: SocketAddr,
    plugin: Option<&Path>,
    tls: Option<BrokerTls<'_>>,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let plugin = match plugin {
        Some(p) => p.to_path_buf(),
        None => PLUGIN_PATHS
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map(Path::to_path_buf)
            .context(
                "Mosquitto's dynamic-security plugin is not in a usual place; give its path with --plugin",
            )?,
    };
    std::fs::create_dir_all(dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let password = crate::auth::random_token("mq")?;
    let state = json!({
        "clients": [{
            "username": COORDINATOR_USER,
            "textName": "the wasmops coordinator",
            "roles": [{"rolename": "wasmops-coordinator"}],
        } ],
        "roles": [
            {
                "rolename": "wasmops-coordinator",
                "acls": [
                    {"acltype": "publishClientSend", "topic": "#", "allow": true},
                    {"acltype": "publishClientReceive", "topic": "#", "allow": true},
                    {"acltype": "subscribePattern", "topic": "#", "allow": true},
                    {"acltype": "unsubscribePattern", "topic": "#", "allow": true},
                    {"acltype": "publishClientSend", "topic": "$CONTROL/dynamic-security/#", "allow": true},
                    {"acltype": "publishClientReceive", "topic": "$CONTROL/dynamic-security/#", "allow": true},
                    {"acltype": "subscribePattern", "topic": "$CONTROL/dynamic-security/#", "allow": true},
                ],
            },
            {
                "rolename": WATCHER_ROLE,
                "acls": [
                    {"acltype": "subscribePattern", "topic": format!("{}/events/#", topics::PREFIX), "allow": true},
                ],
            },
        ],
        "defaultACLAccess": {
            "publishClientSend": false,
            "publishClientReceive": true,
            "subscribe": false,
            "unsubscribe": true,
        },
    });
    let mut state = state;
    let hashed = hash_password(&password)?;
    let client = &mut state["clients"][0];
    for (k, v) in hashed {
        client[k] = v;
    }
    let state_file = dir.join("dynamic-security.json");
    wasmops_trust::write_atomic_mode(
        &state_file,
        &serde_json::to_vec_pretty(&state)?,
        Some(0o600),
    )?;
    wasmops_trust::write_atomic_mode(&dir.join(PASSWORD_FILE), password.as_bytes(), Some(0o600))?;
    let conf = dir.join("mosquitto.conf");
    // Mosquitto started as root switches to `user` (default `mosquitto`),
    // which could then not read or save the plugin's 0600 state: it runs as
    // whoever owns these files.
    let user = owner_name(&dir)?;
    let tls = match tls {
        Some(t) => {
            let names = crate::tls::server_names(t.names, &[listen]);
            let (chain, key) = t.ca.issue_server(&names)?;
            let (cert_file, key_file) = (dir.join("server.pem"), dir.join("server.key"));
            wasmops_trust::write_atomic_mode(&cert_file, chain.as_bytes(), Some(0o644))?;
            wasmops_trust::write_atomic_mode(&key_file, key.as_bytes(), Some(0o600))?;
            let clients = if t.client_certs {
                let ca_file = dir.join("client-ca.pem");
                wasmops_trust::write_atomic_mode(
                    &ca_file,
                    t.ca.cert_pem().as_bytes(),
                    Some(0o644),
                )?;
                format!(
                    "# Devices present the certificate the coordinator's CA gave them.\n\
                     cafile {}\nrequire_certificate true\n",
                    ca_file.display()
                )
            } else {
                String::new()
            };
            format!(
                "# TLS: a certificate from the coordinator's CA (devices check it).\n\
                 certfile {}\nkeyfile {}\ntls_version tlsv1.2\n{clients}",
                cert_file.display(),
                key_file.display()
            )
        }
        None => "# Plain MQTT (--insecure-plain): credentials cross the network in clear.\n".into(),
    };
    let text = format!(
        "# Written by `wasmops mosquitto-config`: only the coordinator and the devices\n\
         # it enrols log in, each limited to its own topics (dynamic-security plugin).\n\
         user {user}\n\
         per_listener_settings false\n\
         allow_anonymous false\n\
         listener {port} {ip}\n\
         {tls}\
         plugin {plugin}\n\
         plugin_opt_config_file {state}\n\
         # Telemetry bursts from a large fleet queue rather than drop.\n\
         max_queued_messages 100000\n",
        port = listen.port(),
        ip = listen.ip(),
        plugin = plugin.display(),
        state = state_file.display(),
    );
    wasmops_trust::write_atomic_mode(&conf, text.as_bytes(), Some(0o644))?;
    Ok(conf)
}

/// The name of the user owning `path` (from `/etc/passwd`).
fn owner_name(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(path)?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
        })
        .next()
        .ok_or_else(|| anyhow::anyhow!("no user with uid {uid} in /etc/passwd"))
}

/// The fields the plugin stores for a password: PBKDF2-HMAC-SHA512 over a
/// random 12-byte salt, base64.
fn hash_password(password: &str) -> anyhow::Result<Vec<(&'static str, Value)>> {
    use base64::Engine;
    let mut salt = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    let hash = pbkdf2_sha512(password.as_bytes(), &salt, ITERATIONS);
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(vec![
        ("password", Value::String(b64.encode(hash))),
        ("salt", Value::String(b64.encode(salt))),
        ("iterations", Value::from(ITERATIONS)),
    ])
}

/// PBKDF2 (RFC 8018) with HMAC-SHA512, one 64-byte block.
fn pbkdf2_sha512(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 64] {
    use hmac::{Hmac, Mac};
    type H = Hmac<sha2::Sha512>;
    let prf = |data: &[&[u8]]| -> [u8; 64] {
        let mut m = H::new_from_slice(password).expect("HMAC takes any key length");
        for d in data {
            m.update(d);
        }
        m.finalize().into_bytes().into()
    };
    let mut u = prf(&[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..rounds {
        u = prf(&[&u]);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

/// The role that holds `device`'s ACLs.
fn role(device: &str) -> String {
    format!("wasmops-device-{device}")
}

/// Commands that (re)make `device` a client with `password` and only its
/// own topics (the embedded broker's [`crate::acl::allowed`] for a device,
/// written out literally).
pub fn device_commands(device: &str, password: &str) -> Vec<Value> {
    let allow =
        |acltype: &str, topic: String| json!({"acltype": acltype, "topic": topic, "allow": true});
    let mut commands = forget_commands(device);
    commands.push(json!({
        "command": "createRole",
        "rolename": role(device),
        "acls": [
            allow("publishClientSend", topics::presence(device)),
            allow("publishClientSend", topics::status(device)),
            allow("publishClientSend", topics::telemetry(device)),
            allow("subscribeLiteral", topics::desired(device)),
            allow("subscribeLiteral", topics::telemetry_ack(device)),
        ],
    }));
    commands.push(json!({
        "command": "createClient",
        "username": device,
        "password": password,
        "clientid": format!("{DEVICE_CLIENT_PREFIX}{device}"),
        "roles": [{"rolename": role(device)}],
    }));
    commands
}

/// Commands that remove `device`'s client and role (each answered "not
/// found" when there is none, which is harmless).
pub fn forget_commands(device: &str) -> Vec<Value> {
    vec![
        json!({"command": "deleteClient", "username": device}),
        json!({"command": "deleteRole", "rolename": role(device)}),
    ]
}

/// Sends `commands` to the broker's plugin, if this coordinator manages one.
pub async fn send(c: &Coordinator, commands: Vec<Value>) -> Result<(), CoordinatorError> {
    if !c.mosquitto {
        return Ok(());
    }
    let bus = c.bus.get().ok_or_else(|| {
        CoordinatorError::Unavailable("the MQTT connection is not up yet; retry".into())
    })?;
    let payload = serde_json::to_vec(&json!({ "commands": commands })).expect("JSON");
    bus.publish(CONTROL_TOPIC, rumqttc::QoS::AtLeastOnce, false, payload)
        .await
        .map_err(|e| CoordinatorError::Bus(format!("cannot reach the broker's plugin: {e}")))
}

/// Logs what the plugin says went wrong (answers to deletes of what is not
/// there are expected and quiet).
pub fn log_response(payload: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(payload) else {
        return;
    };
    for r in v["responses"].as_array().into_iter().flatten() {
        if let Some(error) = r["error"].as_str() {
            let command = r["command"].as_str().unwrap_or("?");
            if command.starts_with("delete") && error.contains("not found") {
                continue;
            }
            tracing::warn!("Mosquitto's dynamic-security plugin refused {command}: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values from Python's `hashlib.pbkdf2_hmac("sha512", …)`.
    #[test]
    fn pbkdf2_matches_pythons() {
        let out = pbkdf2_sha512(b"passwd", b"salt", 1);
        assert_eq!(hex::encode(&out[..16]), "c74319d99499fc3e9013acff597c23c5");
        let salt: Vec<u8> = (0..12).collect();
        let out = pbkdf2_sha512(b"mq_secret", &salt, ITERATIONS);
        assert_eq!(
            hex::encode(out),
            "5f7c572ca9fda96735fb7fc74ed660fa09b35e64b82aee6c9ccc5c9f0f699118\
             8e45971bf0a142a5bc499804bef9ff697889b54b5d56b48f6925627533284638"
        );
    }

    #[test]
    fn a_device_gets_exactly_its_own_topics() {
        let commands = device_commands("gw-1", "secret");
        let text = serde_json::to_string(&commands).unwrap();
        assert!(text.contains("wasmops-device-gw-1"));
        assert!(!text.contains('+') && !text.contains('#'), "{text}");
        let create = commands
            .iter()
            .find(|c| c["command"] == "createClient")
            .unwrap();
        assert_eq!(create["clientid"], "wasmops-device-gw-1");
        assert_eq!(create["username"], "gw-1");
    }
}
