//! Shared helpers for the end-to-end tests: run the real `wasmops` binary,
//! build fixture components once per test binary, compare with onnxruntime.
#![allow(dead_code)]

mod agents;
pub use agents::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use std::time::{Duration, Instant};

use serde_json::Value;

/// This test binary's scratch space.
fn scratch_root() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A scratch directory per test area (the module a test lives in: keys, built
/// components), so areas running side by side in this one binary do not share
/// file names. Threads that are not a test's fall back to a shared area.
pub fn scratch() -> PathBuf {
    let base = scratch_root();
    let current = std::thread::current();
    let area = current
        .name()
        .and_then(|n| n.split_once("::"))
        .map(|(area, _)| area)
        .unwrap_or("shared");
    let dir = base.join(area);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Compiled components are cached across test binaries and runs in the target dir.
pub fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wasmops-cache")
}

pub fn wasmops(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmops"))
        .args(args)
        .env("WASMOPS_CACHE_DIR", cache_dir())
        .env("WASMOPS_CA_CERT", test_ca())
        .output()
        .expect("wasmops runs")
}

/// The private CA every test coordinator serves TLS under (its data
/// directory is seeded with it, see [`start_coordinator_at`]), so one
/// `WASMOPS_CA_CERT` serves every `wasmops` the tests run, and [`http`] and
/// [`api`] reach every coordinator. Made once per test binary; the
/// coordinator's own CA generation is tested in `tls.rs`.
pub fn test_ca() -> &'static Path {
    static CA: OnceLock<PathBuf> = OnceLock::new();
    CA.get_or_init(|| {
        let dir = scratch_root().join("test-ca");
        wasmops_tls::Ca::load_or_create(&dir).unwrap();
        dir.join(wasmops_tls::CA_CERT)
    })
}

/// What the tests' own clients trust: the system's roots and [`test_ca`].
pub fn test_tls() -> wasmops_tls::ClientTls {
    static TLS: OnceLock<wasmops_tls::ClientTls> = OnceLock::new();
    TLS.get_or_init(|| wasmops_tls::ClientTls::from_file(Some(test_ca())).unwrap())
        .clone()
}

/// A blocking HTTP client that trusts the test coordinators.
pub fn http() -> reqwest::blocking::Client {
    test_tls().http_blocking().build().unwrap()
}

/// An API client for `url` as `token`, trusting the test coordinators.
pub fn api(url: &str, token: &str) -> wasmops_api::Client {
    wasmops_api::Client::with_tls(url, token, test_tls()).unwrap()
}

/// MQTT options for `client_id` at `url` (mqtts:// or mqtt://).
pub fn mqtt_options(client_id: String, url: &str) -> rumqttc::MqttOptions {
    test_tls().mqtt_options(client_id, url).unwrap()
}

pub fn ok(args: &[&str]) -> String {
    let out = wasmops(args);
    assert!(
        out.status.success(),
        "wasmops {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail; returns its stderr.
pub fn fails(args: &[&str]) -> String {
    let out = wasmops(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "wasmops {args:?} should have failed; stdout:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !stderr.contains("panicked"),
        "wasmops {args:?} panicked:\n{stderr}"
    );
    stderr
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `wasmops trust delegate` arguments: `root_key` delegates to `key` as
/// `name` in the trust directory `trust`, with `extra` flags after.
pub fn delegate<'a>(
    trust: &'a Path,
    root_key: &'a Path,
    key: &'a Path,
    name: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "trust",
        "delegate",
        "--dir",
        p(trust),
        "--root-key",
        p(root_key),
        "--key",
        p(key),
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    args
}

/// The test key pair, made once.
pub fn keys() -> &'static (PathBuf, PathBuf) {
    static KEYS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let prefix = scratch().join("release");
        ok(&["keygen", "--out", p(&prefix)]);
        (prefix.with_extension("key"), prefix.with_extension("pub"))
    })
}

/// A new key pair in the scratch directory: (secret, public).
pub fn keygen(name: &str) -> (PathBuf, PathBuf) {
    let prefix = scratch().join(name);
    ok(&["keygen", "--out", p(&prefix)]);
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// Builds and signs fixture `name` once; returns the component path.
pub fn component(name: &str) -> PathBuf {
    built(name).out
}

/// Which generic guest `build` baked fixture `name` from (`slim` or `full`).
pub fn guest_flavour(name: &str) -> String {
    built(name).flavour
}

/// What `build` printed building fixture `name`.
pub fn build_log(name: &str) -> String {
    built(name).log
}

#[derive(Clone)]
struct Built {
    name: String,
    out: PathBuf,
    flavour: String,
    log: String,
}

fn built(name: &str) -> Built {
    static BUILT: Mutex<Vec<Built>> = Mutex::new(vec![]);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = built.iter().find(|b| b.name == name) {
        return b.clone();
    }
    let out = scratch().join(format!("{name}.wasm"));
    let dir = fixtures().join(name);
    let model = dir.join("model.onnx");
    let mut args = vec![
        "build",
        p(&model),
        "--out",
        p(&out),
        "--name",
        name,
        "--version",
        "1.2.3",
    ];
    let pipeline = dir.join("pipeline.toml");
    if pipeline.exists() {
        args.extend(["--pipeline", p(&pipeline)]);
    }
    let result = wasmops(&args);
    let stderr = String::from_utf8_lossy(&result.stderr).into_owned();
    assert!(
        result.status.success(),
        "wasmops {args:?} failed:\n{stderr}"
    );
    // "built X (12.34 MB, slim guest; ...)"
    let flavour = stderr
        .split(" guest;")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .unwrap_or("?")
        .to_string();
    ok(&["sign", p(&out), "--key", p(&keys().0)]);
    let b = Built {
        name: name.to_string(),
        out,
        flavour,
        log: stderr,
    };
    built.push(b.clone());
    b
}

/// The scaler + logistic regression fixture built as `name` `version` with
/// `extra` build flags (claims), signed by `key`, its delegation embedded when given.
pub fn scaler_release(
    out: &str,
    name: &str,
    version: &str,
    extra: &[&str],
    key: &Path,
    delegation: Option<&Path>,
) -> PathBuf {
    let out = scratch().join(out);
    let model = fixtures().join("scaler_logreg/model.onnx");
    let mut args = vec![
        "build",
        p(&model),
        "--out",
        p(&out),
        "--name",
        name,
        "--version",
        version,
    ];
    args.extend(extra);
    ok(&args);
    let mut args = vec!["sign", p(&out), "--key", p(key)];
    if let Some(d) = delegation {
        args.extend(["--delegation", p(d)]);
    }
    ok(&args);
    out
}

/// Builds the iris logistic regression as `iris` VERSION with the reference
/// profile of its training data (`--training-data`) in its claims, signed
/// with the tests' release key, at `out`.
pub fn profiled_iris(out: &Path, version: &str) {
    ok(&[
        "build",
        p(&fixtures().join("scaler_logreg/model.onnx")),
        "--out",
        p(out),
        "--name",
        "iris",
        "--version",
        version,
        "--training-data",
        p(&fixtures().join("drift/iris_training.csv")),
        "--label-column",
        "species",
    ]);
    ok(&["sign", p(out), "--key", p(&keys().0)]);
}

/// Ten iris rows (4 columns, row-major), two with a petal width far above
/// the training maximum.
pub fn iris_rows() -> Vec<f64> {
    let mut rows = vec![];
    for i in 0..10 {
        let width = if i < 2 { 9.0 } else { 0.2 + i as f64 * 0.2 };
        rows.extend([5.0 + i as f64 * 0.1, 3.0, 1.5 + i as f64 * 0.5, width]);
    }
    rows
}

/// Where column `j` of `rows` (4 columns, row-major, sent as float32) falls
/// among a profile column's own edges (`column`, as `inspect --json` shows
/// it), each row counted `times`: the bins a device must report.
pub fn expected_bins(column: &Value, rows: &[f64], j: usize, times: u64) -> Vec<u64> {
    let edges: Vec<f64> = column["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_f64().unwrap())
        .collect();
    let mut want = vec![0u64; edges.len() + 1];
    for row in rows.chunks(4) {
        let x = row[j] as f32 as f64;
        // Within float32 rounding of an edge is on it (the training value
        // was exactly there).
        want[edges.partition_point(|e| *e <= x + f64::from(f32::EPSILON) * e.abs().max(1.0))] +=
            times;
    }
    want
}

/// `GET path` on the coordinator's API as `token`, as JSON.
pub fn api_get(c: &Coordinator, token: &str, path: &str) -> Value {
    http()
        .get(format!("{}{path}", c.url))
        .bearer_auth(token)
        .send()
        .unwrap()
        .json()
        .unwrap()
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Compares outputs by name: integers exactly, floats within `tol` relative
/// (with an absolute floor of `tol` for values near zero).
pub fn assert_outputs_match(got: &Value, expected: &Value, tol: f64, what: &str) {
    let got = got["outputs"].as_array().expect("outputs array");
    let expected = expected["outputs"].as_array().unwrap();
    assert_eq!(got.len(), expected.len(), "{what}: output count");
    for e in expected {
        let name = e["name"].as_str().unwrap();
        let g = got
            .iter()
            .find(|g| g["name"] == e["name"])
            .unwrap_or_else(|| panic!("{what}: no output `{name}` in {got:?}"));
        assert_eq!(g["shape"], e["shape"], "{what}: shape of `{name}`");
        let (gd, ed) = (g["data"].as_array().unwrap(), e["data"].as_array().unwrap());
        assert_eq!(gd.len(), ed.len());
        let mut worst = 0.0f64;
        for (i, (a, b)) in gd.iter().zip(ed).enumerate() {
            if b.is_i64() || b.is_u64() {
                assert_eq!(a.as_i64(), b.as_i64(), "{what}: `{name}`[{i}]");
                continue;
            }
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
            let err = (a - b).abs() / b.abs().max(1.0);
            worst = worst.max(err);
            assert!(
                err <= tol,
                "{what}: `{name}`[{i}] = {a}, onnxruntime says {b} (relative error {err:e} > {tol:e})"
            );
        }
        eprintln!("{what}: `{name}` matches onnxruntime, worst relative error {worst:e}");
    }
}

/// A `wasmops coordinator` process on a free port; killed on drop.
pub struct Coordinator {
    pub process: Served,
    pub url: String,
    pub mqtt: String,
}

/// A free 127.0.0.1 port, as `127.0.0.1:PORT`.
pub fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string()
}

/// Starts `wasmops coordinator --data-dir DIR --listen 127.0.0.1:0 EXTRA…` and
/// waits for the line that says where it listens. Its TLS is the tests'
/// private CA ([`test_ca`]), unless DIR has a CA already.
pub fn start_coordinator(data_dir: &Path, extra: &[String]) -> Coordinator {
    start_coordinator_at(data_dir, "127.0.0.1:0", extra)
}

/// Like [`start_coordinator`], on a given address (to restart it where devices expect it).
pub fn start_coordinator_at(data_dir: &Path, listen: &str, extra: &[String]) -> Coordinator {
    let tls = data_dir.join("tls");
    if !tls.join(wasmops_tls::CA_KEY).exists() {
        std::fs::create_dir_all(&tls).unwrap();
        let from = test_ca().parent().unwrap();
        for f in [wasmops_tls::CA_CERT, wasmops_tls::CA_KEY] {
            std::fs::copy(from.join(f), tls.join(f)).unwrap();
        }
    }
    let mut args = vec!["coordinator", "--data-dir", p(data_dir), "--listen", listen];
    args.extend(extra.iter().map(String::as_str));
    // The tests' plain Mosquittos (mqtt://) are allowed only in clear.
    let plain_broker = extra
        .windows(2)
        .any(|w| w[0] == "--mqtt" && w[1].starts_with("mqtt://"));
    if plain_broker && !extra.iter().any(|a| a == "--insecure-plain") {
        args.push("--insecure-plain");
    }
    let process = serve(&args);
    // "wasmops coordinator listening on https://ADDR (MQTT: mqtts://HOST:PORT; CA: PATH)"
    let mqtt = process
        .line
        .split_whitespace()
        .find(|w| w.starts_with("mqtt://") || w.starts_with("mqtts://"))
        .map(|s| s.trim_end_matches([')', ';']).to_string());
    let mqtt =
        mqtt.unwrap_or_else(|| panic!("coordinator did not say where MQTT is: {:?}", process.line));
    Coordinator {
        url: process.url.clone(),
        mqtt,
        process,
    }
}

/// `wasmops ARGS --coordinator URL --token TOKEN`.
pub fn cli(c: &Coordinator, token: &str, args: &[&str]) -> std::process::Output {
    let mut all = args.to_vec();
    all.extend(["--coordinator", &c.url, "--token", token]);
    wasmops(&all)
}

/// The first admin token a coordinator wrote into its data directory.
pub fn admin_token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string()
}

/// [`cli`] that must succeed: its standard output, trimmed.
pub fn cli_ok(c: &Coordinator, token: &str, args: &[&str]) -> String {
    let out = cli(c, token, args);
    assert!(
        out.status.success(),
        "wasmops {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// Every fleet event from now on, read from the coordinator at `url`'s
/// event stream (`GET /v1/events`) with `token`; subscribed on return. The
/// stream is opened again when the coordinator restarts (events in between
/// are not replayed), until the test drops what it returns.
pub fn event_listener(url: &str, token: &str) -> Seen {
    let client = api(url, token);
    let mut stream = Some(client.events(&[]).expect("subscribed to events"));
    let seen: Seen = Default::default();
    let store = seen.clone();
    std::thread::spawn(move || {
        loop {
            let events = match stream.take() {
                Some(s) => s,
                None => match client.events(&[]) {
                    Ok(s) => s,
                    Err(_) if std::sync::Arc::strong_count(&store) > 1 => {
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                    Err(_) => return,
                },
            };
            for e in events {
                match e {
                    Ok(e) => store.lock().unwrap().push(serde_json::to_value(e).unwrap()),
                    Err(wasmops_api::ApiError::Missed(n)) => panic!("the test missed {n} events"),
                    // The coordinator stopped.
                    Err(_) => break,
                }
            }
            if std::sync::Arc::strong_count(&store) == 1 {
                return;
            }
        }
    });
    seen
}

/// Everything the coordinator publishes under `wasmops/v1/events/#` on an
/// open external broker (as an integration listening there would see it):
/// unlike the HTTP stream, it outlives a coordinator's restart.
pub fn broker_events(mqtt: &str) -> Seen {
    let (host, port) = wasmops_protocol::parse_mqtt_url(mqtt).unwrap();
    let opts = rumqttc::MqttOptions::new(format!("events-{}", std::process::id()), host, port);
    let (client, mut conn) = rumqttc::Client::new(opts, 64);
    client
        .subscribe("wasmops/v1/events/#", rumqttc::QoS::AtLeastOnce)
        .unwrap();
    let seen: Seen = Default::default();
    let store = seen.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for ev in conn.iter() {
            match ev {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice(&p.payload) {
                        store.lock().unwrap().push(v);
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed to events");
    seen
}

pub fn count(seen: &Seen, kind: &str, subject: Option<&str>) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind && subject.is_none_or(|s| e["subject"] == s))
        .count()
}

/// Enrols `device` (an enrolment token for exactly it, then `POST /v1/enrol`); returns its own credential.
pub fn enrol(c: &Coordinator, admin: &str, device: &str) -> String {
    let http = http();
    let e: Value = http
        .post(format!("{}/v1/enrolments", c.url))
        .bearer_auth(admin)
        .json(&serde_json::json!({"devices": device}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let r: Value = http
        .post(format!("{}/v1/enrol", c.url))
        .bearer_auth(e["token"].as_str().unwrap())
        .json(&serde_json::json!({"device": device}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    r["token"]
        .as_str()
        .unwrap_or_else(|| panic!("enrolment of {device} failed: {r}"))
        .to_string()
}

/// A `wasmops` process that serves HTTP (agent, fleet simulator); killed on drop.
pub struct Served {
    pub child: std::process::Child,
    /// The first `http://…` or `https://…` word of its first stdout line.
    pub url: String,
    pub line: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `wasmops ARGS` and waits for the line that says where it serves.
pub fn serve(args: &[&str]) -> Served {
    serve_to(args, std::process::Stdio::inherit())
}

/// [`serve`] with its log (stderr) appended to `log`.
pub fn serve_logged(args: &[&str], log: &Path) -> Served {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    serve_to(args, file.into())
}

fn serve_to(args: &[&str], stderr: std::process::Stdio) -> Served {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmops"));
    cmd.args(args)
        .env("WASMOPS_CACHE_DIR", cache_dir())
        .env("WASMOPS_CA_CERT", test_ca())
        .stderr(stderr);
    serve_command(cmd)
}

/// Starts `cmd` (some `wasmops` that serves HTTP: another build, under an
/// emulator…) and waits for the line that says where it serves.
pub fn serve_command(mut cmd: Command) -> Served {
    use std::io::{BufRead, BufReader};
    let args = format!("{cmd:?}");
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .unwrap_or_else(|| panic!("{args} did not start: {line:?}"))
        .to_string();
    Served { child, url, line }
}

/// A fresh database on the real PostgreSQL (127.0.0.1:5432, trust auth), dropped with the guard.
pub struct Postgres {
    pub url: String,
    name: String,
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "test",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    pub fn fresh(tag: &str) -> Postgres {
        let name = format!("wasmops_{tag}_{}", std::process::id());
        psql(&format!("DROP DATABASE IF EXISTS {name}"));
        psql(&format!("CREATE DATABASE {name}"));
        Postgres {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Makes sure python3 has the reference packages (onnxruntime, scikit-learn,
/// skl2onnx, scipy): `scripts/python-deps.sh` installs them once.
pub fn python_deps() {
    static DEPS: Mutex<bool> = Mutex::new(false);
    let mut ready = DEPS.lock().unwrap_or_else(|e| e.into_inner());
    if !*ready {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("bash")
            .arg(root.join("scripts/python-deps.sh"))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "scripts/python-deps.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        *ready = true;
    }
}

/// Installs what the browser checks need once: Debian's chromium,
/// playwright-core and `wasmops web`'s npm tools (`scripts/browser-deps.sh`).
pub fn browser_deps() {
    static DEPS: Mutex<bool> = Mutex::new(false);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ready = DEPS.lock().unwrap_or_else(|e| e.into_inner());
    if !*ready {
        let out = Command::new("bash")
            .arg(root.join("scripts/browser-deps.sh"))
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "scripts/browser-deps.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        *ready = true;
    }
}

/// Runs `node tests/browser/SCRIPT ARGS` (after [`browser_deps`]) and
/// returns the JSON it printed.
pub fn node_json(script: &str, args: &[&str]) -> Value {
    browser_deps();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("node")
        .arg(root.join("tests/browser").join(script))
        .args(args)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{script} {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Opens `page` in headless Chromium (Debian's, via playwright-core) and
/// returns what `tests/browser/check_page.mjs` saw: title, summary, plots,
/// errors, requests.
pub fn browse(page: &Path) -> Value {
    node_json("check_page.mjs", &[p(page)])
}

/// A minimal HTTP server that records every POSTed JSON body (a webhook sink).
pub fn webhook_sink() -> (String, Seen) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Seen = Default::default();
    let store = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_ok()
                && let Ok(v) = serde_json::from_slice(&body)
            {
                store.lock().unwrap().push(v);
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, seen)
}
