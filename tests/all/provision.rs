//! `wasmops provision` bundles, booted as a gateway would boot them: the
//! x86_64 agent natively, the aarch64 agent (cross-built with Debian's gcc)
//! under Debian's qemu-user. Each enrols with its one-time token, serves its
//! preinstalled model from the precompiled component (its status says where
//! the code came from: "precompiled", not compiled), and takes an update
//! from the coordinator.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::*;

/// A coordinator under a root of trust (root → release key for `churn`),
/// with its embedded broker and two releases registered: 1.0.0 and 1.1.0.
struct Fleet {
    dir: tempfile::TempDir,
    c: Coordinator,
    admin: String,
    root_pub: PathBuf,
}

fn fleet(tag: &str) -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let (root_key, root_pub) = keygen(&format!("{tag}-root"));
    let (rel_key, rel_pub) = keygen(&format!("{tag}-rel"));
    let team = dir.path().join("team-trust");
    churn_team_trust(&team, &root_key, &[(&rel_pub, "rel")]);
    let (c, admin) = rooted_coordinator(&dir.path().join("coordinator"), &root_pub, &team);
    for (version, seq) in [("1.0.0", "1"), ("1.1.0", "2")] {
        let release = scaler_release(
            &format!("{tag}-{version}.wasm"),
            "churn",
            version,
            &["--sequence", seq],
            &rel_key,
            None,
        );
        cli_ok(&c, &admin, &["model", "register", p(&release)]);
    }
    Fleet {
        dir,
        c,
        admin,
        root_pub,
    }
}

/// Provisions `devices` for `target` with churn 1.0.0 preinstalled; returns
/// the output directory.
fn provision(f: &Fleet, devices: &str, target: &str, binary: &Path, extra: &[&str]) -> PathBuf {
    let out = f.dir.path().join(format!("bundles-{target}"));
    let listen = free_addr();
    let mut args = vec![
        "provision",
        "--devices",
        devices,
        "--labels",
        "site=lab,tier=edge",
        "--target",
        target,
        "--agent-binary",
        p(binary),
        "--model",
        "churn@1.0.0",
        "--mqtt",
        &f.c.mqtt,
        "--trust-root",
        p(&f.root_pub),
        "--listen",
        &listen,
        "--out",
        p(&out),
    ];
    args.extend(extra);
    cli_ok(&f.c, &f.admin, &args);
    out
}

/// Every file the manifest names is there with its sha256; the agent.toml
/// (it holds the enrolment token) is private.
fn check_bundle(bundle: &Path, device: &str, target: &str) -> Value {
    let manifest = read_json(&bundle.join("MANIFEST.json"));
    assert_eq!(manifest["device"], device);
    assert_eq!(manifest["target"], target);
    assert_eq!(manifest["model"], "churn@1.0.0");
    let files = manifest["files"].as_object().unwrap();
    for want in [
        "usr/local/bin/wasmops",
        "etc/wasmops/agent.toml",
        "etc/wasmops/trust/root.pub",
        "etc/systemd/system/wasmops-agent.service",
        "var/lib/wasmops/preinstalled/churn-1.0.0.wasm",
    ] {
        assert!(files.contains_key(want), "{want} missing: {manifest}");
    }
    assert!(
        files
            .keys()
            .any(|f| f.starts_with("var/lib/wasmops/cache/precompiled/")),
        "no precompiled entry: {manifest}"
    );
    for (rel, sha) in files {
        let bytes = std::fs::read(bundle.join(rel)).unwrap();
        assert_eq!(
            &sha256_hex(&bytes),
            sha.as_str().unwrap(),
            "{rel} differs from the manifest"
        );
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |rel: &str| {
        std::fs::metadata(bundle.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("etc/wasmops/agent.toml"), 0o600);
    assert_eq!(mode("usr/local/bin/wasmops"), 0o755);
    let unit =
        std::fs::read_to_string(bundle.join("etc/systemd/system/wasmops-agent.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/wasmops agent --config /etc/wasmops/agent.toml"),
        "{unit}"
    );
    manifest
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Boots `bundle`'s agent (through `runner`, an emulator, if given), and
/// checks the whole first life of a gateway: enrolment, the preinstalled
/// model served from precompiled code, an update from the coordinator.
fn boot_and_update(f: &Fleet, bundle: &Path, device: &str, runner: &[&str]) {
    let bin = bundle.join("usr/local/bin/wasmops");
    let config = bundle.join("etc/wasmops/agent.toml");
    let mut cmd = match runner.split_first() {
        Some((emulator, args)) => {
            let mut c = Command::new(emulator);
            c.args(args).arg(&bin);
            c
        }
        None => Command::new(&bin),
    };
    cmd.args(["agent", "--config", p(&config)]);
    let agent = serve_command(cmd);

    // It serves at once, from the precompiled code (nothing compiled).
    let input = fixtures().join("scaler_logreg/input_b1.json");
    let (code, body) = predict(&agent, &input);
    assert_eq!(code, 200, "{body}");
    let status = agent_status(&agent);
    assert_eq!(status["active"]["model"], "churn", "{status}");
    assert_eq!(status["active"]["version"], "1.0.0", "{status}");
    assert_eq!(status["active_load"]["origin"], "precompiled", "{status}");
    let first_load_ms = status["active_load"]["compile_ms"].as_f64().unwrap();

    // It enrolled with the bundle's token, with the bundle's labels, and the
    // coordinator sees it serving the preinstalled version.
    wait_online(&f.c, &f.admin, device);
    let listed = devices(&f.c, &f.admin);
    let me = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device)
        .unwrap()
        .clone();
    assert_eq!(me["labels"]["site"], "lab", "{me}");
    assert_eq!(me["labels"]["tier"], "edge", "{me}");

    // An update from the coordinator: downloaded, verified, compiled on the
    // device (under emulation too), switched to.
    let out = cli(
        &f.c,
        &f.admin,
        &[
            "deploy", "churn", "1.1.0", "--device", device, "--wait", "600",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = agent_status(&agent);
    assert_eq!(status["active"]["version"], "1.1.0", "{status}");
    assert_eq!(status["active_load"]["origin"], "compiled", "{status}");
    eprintln!(
        "{device}: preinstalled code loaded in {first_load_ms:.0} ms; the update compiled on the device in {:.0} ms",
        status["active_load"]["compile_ms"].as_f64().unwrap()
    );
    let (code, body) = predict(&agent, &input);
    assert_eq!(code, 200, "{body}");
}

#[test]
fn an_x86_64_bundle_enrols_serves_its_precompiled_model_and_takes_an_update() {
    let f = fleet("prov-x86");
    let out = provision(
        &f,
        "gw-x[01-02]",
        "x86_64",
        Path::new(env!("CARGO_BIN_EXE_wasmops")),
        &["--image"],
    );
    let (one, two) = (out.join("gw-x01"), out.join("gw-x02"));
    check_bundle(&one, "gw-x01", "x86_64-unknown-linux-gnu");
    check_bundle(&two, "gw-x02", "x86_64-unknown-linux-gnu");
    // One token per device, each for its own id only.
    let token = |b: &Path| {
        let text = std::fs::read_to_string(b.join("etc/wasmops/agent.toml")).unwrap();
        let t: toml::Table = toml::from_str(&text).unwrap();
        t["enrolment_token"].as_str().unwrap().to_string()
    };
    assert_ne!(token(&one), token(&two));

    // The ext4 image holds the same tree (read back with e2fsprogs' debugfs).
    let image = out.join("gw-x01.ext4");
    let listed = Command::new("debugfs")
        .args(["-R", "cat /etc/wasmops/agent.toml"])
        .arg(&image)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        std::fs::read_to_string(one.join("etc/wasmops/agent.toml")).unwrap()
    );

    // A bundle is written once: a second run over it is refused (its tokens would be new).
    let again = cli(
        &f.c,
        &f.admin,
        &[
            "provision",
            "--devices",
            "gw-x01",
            "--trust-root",
            p(&f.root_pub),
            "--out",
            p(&out),
        ],
    );
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        !again.status.success() && err.contains("exists already"),
        "{err}"
    );

    // A model the bundle's trust does not accept is refused before any
    // bundle is written or any token issued.
    let (_, stranger) = keygen("prov-x86-stranger");
    let refused = f.dir.path().join("refused");
    let out = cli(
        &f.c,
        &f.admin,
        &[
            "provision",
            "--devices",
            "gw-x09",
            "--model",
            "churn@1.0.0",
            "--trust-key",
            p(&stranger),
            "--out",
            p(&refused),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("preinstalling churn 1.0.0")
            && err.contains("signature"),
        "{err}"
    );
    assert!(!refused.join("gw-x09").exists());

    boot_and_update(&f, &one, "gw-x01", &[]);
}

#[test]
fn an_aarch64_bundle_does_the_same_under_qemu_user() {
    // The aarch64 build of this checkout (incremental when .ci/run built it).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = Command::new("bash")
        .arg(root.join("scripts/cross-build.sh"))
        .env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_BIN_EXE_wasmops"))
                .ancestors()
                .nth(2)
                .unwrap(),
        )
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(built.status.success(), "the aarch64 build failed");
    let binary = PathBuf::from(String::from_utf8(built.stdout).unwrap().trim());

    let f = fleet("prov-arm");
    // A host binary is refused for aarch64 gateways, with the reason.
    let out = cli(
        &f.c,
        &f.admin,
        &[
            "provision",
            "--devices",
            "gw-a99",
            "--target",
            "aarch64",
            "--trust-root",
            p(&f.root_pub),
            "--agent-binary",
            env!("CARGO_BIN_EXE_wasmops"),
            "--out",
            p(&f.dir.path().join("wrong")),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("built for x86_64"),
        "{err}"
    );

    let out = provision(&f, "gw-a01", "aarch64", &binary, &[]);
    let bundle = out.join("gw-a01");
    check_bundle(&bundle, "gw-a01", "aarch64-unknown-linux-gnu");
    boot_and_update(
        &f,
        &bundle,
        "gw-a01",
        &["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"],
    );
}
