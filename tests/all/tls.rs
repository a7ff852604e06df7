//! TLS on the coordinator's API and embedded broker, as a fresh install gets
//! it: a private CA made on first start (checked by `openssl verify`, an
//! independent implementation), given certificates (made by `openssl`),
//! plain TCP only with `--insecure-plain`, and handshakes that cannot stall
//! the listeners. Agents, the CLI and fleets over TLS run in every other
//! area (their coordinators serve TLS under the tests' CA).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// `wasmops coordinator` on a data directory of its own (its own CA, not
/// the tests'), trusting the test release key, then `extra`.
fn own_ca_args<'a>(data: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "coordinator",
        "--data-dir",
        p(data),
        "--listen",
        "127.0.0.1:0",
        "--trust",
        p(&keys().1),
    ];
    args.extend_from_slice(extra);
    args
}

/// A coordinator on a data directory of its own, with its embedded broker.
fn own_ca_coordinator(data: &Path, extra: &[&str]) -> Served {
    let mqtt = free_addr();
    let mut args = own_ca_args(data, &["--mqtt-listen", &mqtt]);
    args.extend_from_slice(extra);
    serve(&args)
}

/// Asserts `path` is readable by its owner only.
fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{} is private", path.display());
}

/// An enrolment for `device`* and a real agent `device`-1 under it, online.
fn online_agent(dir: &Path, c: &Coordinator, admin: &str, device: &str) -> (Agent, String) {
    let enrolment = cli_ok(
        c,
        admin,
        &["enrolment", "--devices", &format!("{device}-*")],
    );
    let id = format!("{device}-1");
    let config = write_agent_config(dir, &id, "eu", c, &enrolment);
    let agent = start_agent(&config);
    wait_online(c, admin, &id);
    (agent, enrolment)
}

/// `POST /v1/enrol` for `device` with `key`'s public half: the answer.
fn enrol_with_key(
    c: &Coordinator,
    enrolment: &str,
    device: &str,
    key: &wasmops_tls::DeviceKey,
) -> serde_json::Value {
    http()
        .post(format!("{}/v1/enrol", c.url))
        .bearer_auth(enrolment)
        .json(&serde_json::json!({"device": device, "public_key": hex::encode(key.public_key())}))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// `wasmops coordinator` on `data` with `extra`, which must refuse to start: its stderr.
fn refused_start(data: &Path, extra: &[&str]) -> String {
    fails(&own_ca_args(data, extra))
}

/// The status of `GET /healthz` at `url` through `tls`.
fn health(tls: &wasmops_tls::ClientTls, url: &str) -> u16 {
    tls.http_blocking()
        .build()
        .unwrap()
        .get(format!("{url}/healthz"))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

fn host_port(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

/// The MQTT address in a coordinator's first line.
fn mqtt_url(line: &str) -> String {
    line.split_whitespace()
        .find(|w| w.starts_with("mqtts://") || w.starts_with("mqtt://"))
        .unwrap()
        .trim_end_matches([';', ')'])
        .to_string()
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The certificate chain a TLS server at `addr` presents, as `openssl
/// s_client` sees it with `ca` as its only trust, and its verdict.
fn s_client(addr: &str, ca: &Path, name: &str) -> String {
    let check = match name.parse::<std::net::IpAddr>() {
        Ok(_) => "-verify_ip",
        Err(_) => "-verify_hostname",
    };
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            addr,
            "-CAfile",
            p(ca),
            check,
            name,
            "-verify_return_error",
            "-brief",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_fresh_coordinator_serves_https_and_mqtts_under_a_private_ca_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("coordinator");
    let c = own_ca_coordinator(&data, &[]);
    assert!(c.url.starts_with("https://"), "{}", c.line);
    let mqtt = mqtt_url(&c.line);
    assert!(mqtt.starts_with("mqtts://"), "{}", c.line);
    let ca = data.join("tls/ca.pem");
    assert!(
        c.line.contains(p(&ca)),
        "the CA's path is announced: {}",
        c.line
    );
    assert_private(&data.join("tls/ca.key"));

    // openssl, trusting only that CA, verifies both listeners' chains for
    // the names a client uses.
    for addr in [host_port(&c.url), host_port(&mqtt)] {
        for name in ["127.0.0.1", "localhost"] {
            let seen = s_client(&addr, &ca, name);
            assert!(
                seen.contains("Verification: OK"),
                "{addr} as {name}: {seen}"
            );
        }
        let seen = s_client(&addr, &ca, "evil.example");
        assert!(
            !seen.contains("Verification: OK"),
            "{addr} as evil.example: {seen}"
        );
    }

    // A client that trusts the CA reaches the API; one that trusts only the
    // system's roots is refused at the handshake, and says why.
    let trusting = wasmops_tls::ClientTls::from_file(Some(&ca)).unwrap();
    assert_eq!(health(&trusting, &c.url), 200);
    let stranger = wasmops_tls::ClientTls::new(None).unwrap();
    let refused = stranger
        .http_blocking()
        .build()
        .unwrap()
        .get(format!("{}/healthz", c.url))
        .send()
        .unwrap_err();
    assert!(
        format!("{refused:?}").contains("UnknownIssuer"),
        "{refused:?}"
    );
    // The CLI without the CA (and none here to find) says what is wrong.
    let admin = admin_token(&data);
    let out = Command::new(env!("CARGO_BIN_EXE_wasmops"))
        .args(["model", "list", "--coordinator", &c.url, "--token", &admin])
        .env_remove("WASMOPS_CA_CERT")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_wasmops"))
        .args(["model", "list", "--coordinator", &c.url, "--token", &admin])
        .args(["--ca-cert", p(&ca)])
        .env_remove("WASMOPS_CA_CERT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Plain HTTP and plain MQTT on the TLS ports get nothing they can use.
    let mut plain = TcpStream::connect(host_port(&c.url)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = vec![];
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "plain HTTP answered");
    let mut plain = TcpStream::connect(host_port(&mqtt)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    // An MQTT 3.1.1 CONNECT with client id "x", clean session.
    plain
        .write_all(&[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'x',
        ])
        .unwrap();
    let mut answer = vec![];
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(&[0x20]),
        "plain MQTT got a CONNACK: {answer:?}"
    );

    // A device enrols over HTTPS and logs in over MQTTS.
    let http = trusting.http_blocking().build().unwrap();
    let enrolment: serde_json::Value = http
        .post(format!("{}/v1/enrolments", c.url))
        .bearer_auth(&admin)
        .json(&serde_json::json!({"devices": "gw-tls"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let credential: serde_json::Value = http
        .post(format!("{}/v1/enrol", c.url))
        .bearer_auth(enrolment["token"].as_str().unwrap())
        .json(&serde_json::json!({"device": "gw-tls"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let credential = credential["token"].as_str().unwrap().to_string();
    let mut opts = trusting
        .mqtt_options("wasmops-device-gw-tls".into(), &mqtt)
        .unwrap();
    opts.set_credentials("gw-tls", credential);
    let (_client, mut conn) = rumqttc::Client::new(opts, 8);
    let ack = conn
        .iter()
        .find_map(|e| match e {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => Some(Ok(a.code)),
            Err(e) => Some(Err(format!("{e:?}"))),
            _ => None,
        })
        .unwrap();
    assert_eq!(ack, Ok(rumqttc::ConnectReturnCode::Success));

    // Restarted, it keeps its CA: devices flashed with ca.pem still trust it.
    let before = std::fs::read(&ca).unwrap();
    drop(c);
    let again = own_ca_coordinator(&data, &[]);
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    assert_eq!(health(&trusting, &again.url), 200);
}

/// Connections that never finish a handshake (or never start one) hold no
/// one else up: the API and the broker answer while they hang.
#[test]
fn idle_and_half_open_connections_do_not_stall_the_listeners() {
    let dir = tempfile::tempdir().unwrap();
    let (c, admin) = trusting_coordinator(dir.path());
    let mut held = vec![];
    for addr in [host_port(&c.url), host_port(&c.mqtt)] {
        for i in 0..100 {
            let mut s = TcpStream::connect(&addr).unwrap();
            if i % 2 == 0 {
                // Half a TLS ClientHello record header, then silence.
                s.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
            }
            held.push(s);
        }
    }
    // Well inside the handshake timeout (10 s): an answer now means the
    // stuck handshakes were not in the way.
    let quick = test_tls()
        .http_blocking()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let health = quick.get(format!("{}/healthz", c.url)).send().unwrap();
    assert_eq!(health.status(), 200);
    let credential = enrol(&c, &admin, "gw-busy");
    let mut opts = mqtt_options("wasmops-device-gw-busy".into(), &c.mqtt);
    opts.set_credentials("gw-busy", credential);
    let (_client, mut conn) = rumqttc::Client::new(opts, 8);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for e in conn.iter() {
            if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) = e {
                let _ = tx.send(a.code);
                return;
            }
        }
    });
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5)),
        Ok(rumqttc::ConnectReturnCode::Success)
    );
    drop(held);
}

#[test]
fn given_certificates_are_served_and_plain_tcp_needs_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f);
    // An operator's own CA and server certificate, made by openssl.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        p(&d("ca.key")),
        "-out",
        p(&d("ca.pem")),
        "-days",
        "30",
        "-subj",
        "/CN=plant CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        p(&d("server.key")),
        "-out",
        p(&d("server.csr")),
        "-subj",
        "/CN=coordinator.plant",
    ]);
    std::fs::write(
        d("ext.cnf"),
        "subjectAltName=DNS:coordinator.plant,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        p(&d("server.csr")),
        "-CA",
        p(&d("ca.pem")),
        "-CAkey",
        p(&d("ca.key")),
        "-CAcreateserial",
        "-out",
        p(&d("server.pem")),
        "-days",
        "30",
        "-extfile",
        p(&d("ext.cnf")),
    ]);
    let data = d("coordinator");
    let c = own_ca_coordinator(
        &data,
        &[
            "--tls-cert",
            p(&d("server.pem")),
            "--tls-key",
            p(&d("server.key")),
            "--tls-ca",
            p(&d("ca.pem")),
        ],
    );
    assert!(c.line.contains(p(&d("ca.pem"))), "{}", c.line);
    assert!(
        !data.join("tls/ca.key").exists(),
        "no private CA when certificates are given"
    );
    let tls = wasmops_tls::ClientTls::from_file(Some(&d("ca.pem"))).unwrap();
    assert_eq!(health(&tls, &c.url), 200);
    // A plain external broker is refused without --insecure-plain, by name.
    let err = refused_start(&d("plain"), &["--mqtt", "mqtt://127.0.0.1:1883"]);
    assert!(err.contains("--insecure-plain"), "{err}");
    // A key without its certificate is refused, by name.
    let err = refused_start(&d("half"), &["--tls-key", p(&d("server.key"))]);
    assert!(err.contains("cert and key go together"), "{err}");
}

/// `--client-certs`: devices enrol with a key made on the device, get a
/// certificate from the coordinator's CA, and the embedded broker admits
/// only logins that match their certificate. Without one, with another
/// device's, or with a stranger CA's, nobody logs in.
#[test]
fn with_client_certificates_a_device_logs_in_only_as_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (c, admin) = trusting_coordinator_with(dir.path(), &["--client-certs"]);

    // A real agent: enrols, gets its certificate, goes online.
    let (_agent, enrolment) = online_agent(dir.path(), &c, &admin, "gw-cert");
    let state = dir.path().join("gw-cert-1-state/tls");
    assert_private(&state.join("device.key"));
    // openssl, independently: the certificate chains to the CA, is for
    // client authentication, and names the device.
    let cert = state.join("device.pem");
    let verdict = openssl(&[
        "verify",
        "-CAfile",
        p(test_ca()),
        "-purpose",
        "sslclient",
        p(&cert),
    ]);
    assert!(verdict.contains(": OK"), "{verdict}");
    let subject = openssl(&["x509", "-in", p(&cert), "-noout", "-subject"]);
    assert!(
        subject.contains("CN = gw-cert-1") || subject.contains("CN=gw-cert-1"),
        "{subject}"
    );

    // Another device, enrolled by hand with a key of its own.
    let key2 = wasmops_tls::DeviceKey::load_or_create(&dir.path().join("gw-cert-2.key")).unwrap();
    let credential2 = enrol_with_key(&c, &enrolment, "gw-cert-2", &key2);
    let cert2 = credential2["client_cert"]
        .as_str()
        .expect("a certificate")
        .to_string();
    let token2 = credential2["token"].as_str().unwrap().to_string();
    let with_cert2 = test_tls()
        .with_identity(cert2.as_bytes(), key2.pem().as_bytes())
        .unwrap();

    let login = |tls: &wasmops_tls::ClientTls, client_id: &str, user: &str| {
        let mut opts = tls.mqtt_options(client_id.into(), &c.mqtt).unwrap();
        opts.set_credentials(user, token2.clone());
        let (client, mut conn) = rumqttc::Client::new(opts, 8);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _client = client;
            for e in conn.iter() {
                let seen = match e {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(a))) => Ok(a.code),
                    Ok(_) => continue,
                    // rumqttc reports a refusing CONNACK as an error.
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => Ok(code),
                    Err(e) => Err(format!("{e:?}")),
                };
                let _ = tx.send(seen);
                return;
            }
        });
        rx.recv_timeout(Duration::from_secs(15)).unwrap()
    };
    // Its own certificate and login: in.
    assert_eq!(
        login(&with_cert2, "wasmops-device-gw-cert-2", "gw-cert-2"),
        Ok(rumqttc::ConnectReturnCode::Success)
    );
    // The right credential without a certificate: refused at the handshake.
    let bare = login(&test_tls(), "wasmops-device-gw-cert-2", "gw-cert-2");
    assert!(bare.is_err(), "{bare:?}");
    // gw-cert-2's certificate carrying a login as gw-cert-1: not authorised.
    assert_eq!(
        login(&with_cert2, "wasmops-device-gw-cert-1", "gw-cert-1"),
        Ok(rumqttc::ConnectReturnCode::NotAuthorized)
    );
    // A certificate from another CA (the coordinator's own key, certified
    // by a stranger): refused at the handshake.
    let stranger = wasmops_tls::Ca::load_or_create(&dir.path().join("stranger-ca")).unwrap();
    let forged = stranger
        .issue_client("gw-cert-2", key2.public_key())
        .unwrap();
    let with_forged = test_tls()
        .with_identity(forged.as_bytes(), key2.pem().as_bytes())
        .unwrap();
    let refused = login(&with_forged, "wasmops-device-gw-cert-2", "gw-cert-2");
    assert!(refused.is_err(), "{refused:?}");
    // An enrolment without a public key is refused, saying why.
    let enrolment3 = cli_ok(&c, &admin, &["enrolment", "--devices", "gw-old"]);
    let old = http()
        .post(format!("{}/v1/enrol", c.url))
        .bearer_auth(&enrolment3)
        .json(&serde_json::json!({"device": "gw-old"}))
        .send()
        .unwrap();
    assert_eq!(old.status(), 400);
    assert!(old.text().unwrap().contains("public_key"));
    // The agent is still online: nothing above disturbed it.
    assert!(is_online(&c, &admin, "gw-cert-1"));
}

/// A Mosquitto from `wasmops mosquitto-config --client-certs`: TLS with a
/// certificate from the coordinator's CA, and no client without one of its
/// certificates (the coordinator presents its own).
#[test]
fn a_configured_mosquitto_demands_certificates_from_devices_and_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mosquitto");
    let port: u16 = free_addr().rsplit(':').next().unwrap().parse().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let conf = ok(&[
        "mosquitto-config",
        "--dir",
        p(&config),
        "--listen",
        &listen,
        "--ca-dir",
        p(test_ca().parent().unwrap()),
        "--client-certs",
    ]);
    let _broker =
        wasmops_fleet::mosquitto::Mosquitto::start_with(conf.trim().into(), port).unwrap();
    let url = format!("mqtts://{listen}");
    let data = dir.path().join("coordinator");
    let c = start_coordinator(
        &data,
        &[
            "--trust".into(),
            p(&keys().1).into(),
            "--mqtt".into(),
            url.clone(),
            "--mosquitto-dir".into(),
            p(&config).into(),
            "--client-certs".into(),
        ],
    );
    let admin = admin_token(&data);
    // Online: the agent's presence crossed Mosquitto (its certificate) and
    // reached the coordinator (its own).
    let (_agent, enrolment) = online_agent(dir.path(), &c, &admin, "gw-mq");
    // The right credential without a certificate gets no MQTT session.
    let key = wasmops_tls::DeviceKey::load_or_create(&dir.path().join("gw-mq-2.key")).unwrap();
    let credential = enrol_with_key(&c, &enrolment, "gw-mq-2", &key)["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut opts = mqtt_options("wasmops-device-gw-mq-2".into(), &url);
    opts.set_credentials("gw-mq-2", credential);
    let (_client, mut conn) = rumqttc::Client::new(opts, 8);
    let first = conn.iter().next().unwrap();
    assert!(
        !matches!(
            first,
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)))
        ),
        "{first:?}"
    );
}
