//! Signatures: verify, refusal before compilation, tampering, interop with wasmsign2.

use crate::common::*;

#[test]
fn keygen_writes_a_private_secret_key() {
    use std::os::unix::fs::PermissionsExt;
    let (secret, public) = keys();
    assert_eq!(
        std::fs::metadata(secret).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read(public).unwrap().len(), 33);
}

#[test]
fn verify_accepts_signed_and_refuses_tampered_and_untrusted() {
    let wasm = component("scaler_logreg");
    let out = ok(&["verify", p(&wasm), "--trust", p(&keys().1)]);
    assert!(out.contains("valid signature"), "{out}");

    let other = scratch().join("other");
    ok(&["keygen", "--out", p(&other)]);
    let err = fails(&[
        "verify",
        p(&wasm),
        "--trust",
        p(&other.with_extension("pub")),
    ]);
    assert!(err.contains("no signature by a trusted key"), "{err}");

    let mut bytes = std::fs::read(&wasm).unwrap();
    let at = bytes.len() - 100;
    bytes[at] ^= 0x40;
    let tampered = scratch().join("tampered.wasm");
    std::fs::write(&tampered, &bytes).unwrap();
    let err = fails(&["verify", p(&tampered), "--trust", p(&keys().1)]);
    assert!(err.contains("modified after signing"), "{err}");
    let err = fails(&[
        "run",
        p(&tampered),
        "--trust",
        p(&keys().1),
        "--input",
        "/dev/null",
    ]);
    assert!(err.contains("modified after signing"), "{err}");
}

#[test]
fn run_refuses_unsigned_before_compiling_unless_allowed() {
    let unsigned = scratch().join("unsigned.wasm");
    ok(&[
        "build",
        p(&fixtures().join("scaler_logreg/model.onnx")),
        "--out",
        p(&unsigned),
    ]);
    let input = fixtures().join("scaler_logreg/input_b1.json");
    let cache = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmops"))
        .args([
            "run",
            p(&unsigned),
            "--trust",
            p(&keys().1),
            "--input",
            p(&input),
            "--cache-dir",
            p(cache.path()),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not signed"));
    assert_eq!(
        // The cache's sealing key may exist; no compiled entry may.
        std::fs::read_dir(cache.path())
            .map(|d| d.flatten().filter(|e| e.file_name() != "key").count())
            .unwrap_or(0),
        0,
        "nothing may be compiled before the signature check"
    );

    let out = wasmops(&[
        "run",
        p(&unsigned),
        "--allow-unsigned",
        "--input",
        p(&input),
    ]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("WARNING"),
        "--allow-unsigned must warn"
    );
}

/// `wasmsign2` (crates.io `wasmsign2-cli`) verifies our signatures: same layout,
/// same key encoding. `.ci/run` installs it; locally the test says when it is missing.
#[test]
fn wasmsign2_verifies_our_signature() {
    let Ok(status) = std::process::Command::new("wasmsign2")
        .arg("--version")
        .output()
    else {
        assert!(
            std::env::var_os("WASMOPS_REQUIRE_WASMSIGN2").is_none(),
            "wasmsign2 is required but not installed"
        );
        eprintln!("SKIPPED: wasmsign2 not installed (cargo install wasmsign2-cli)");
        return;
    };
    assert!(status.status.success());
    let wasm = component("scaler_logreg");
    let out = std::process::Command::new("wasmsign2")
        .args(["verify", "-K", p(&keys().1), "-i", p(&wasm)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wasmsign2 refused our signature: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // And a tampered copy is refused by wasmsign2 too.
    let mut bytes = std::fs::read(&wasm).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let tampered = scratch().join("tampered-for-wasmsign2.wasm");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = std::process::Command::new("wasmsign2")
        .args(["verify", "-K", p(&keys().1), "-i", p(&tampered)])
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "wasmsign2 accepted a tampered component"
    );

    // The other way round: wasmops verifies (and runs) a component signed by wasmsign2.
    let (ws_pub, ws_key) = (scratch().join("ws.pub"), scratch().join("ws.key"));
    let out = std::process::Command::new("wasmsign2")
        .args(["keygen", "-K", p(&ws_pub), "-k", p(&ws_key)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let theirs = scratch().join("signed-by-wasmsign2.wasm");
    let out = std::process::Command::new("wasmsign2")
        .args(["sign", "-k", p(&ws_key), "-i", p(&wasm), "-o", p(&theirs)])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ok(&["verify", p(&theirs), "--trust", p(&ws_pub)]);
    let input = fixtures().join("scaler_logreg/input_b1.json");
    ok(&[
        "run",
        p(&theirs),
        "--trust",
        p(&ws_pub),
        "--input",
        p(&input),
    ]);
}
