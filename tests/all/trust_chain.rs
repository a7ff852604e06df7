//! The trust chain through the CLI, as a release team and a device use it:
//! root → delegation → signed component with claims; key rotation, revocation,
//! root rotation, expiry, scope, rollback protection.

use crate::common::*;

use std::path::{Path, PathBuf};

/// A build of the scaler fixture with the given name and claims flags, signed
/// by `key` with its delegation embedded when given.
fn release(
    out: &str,
    name: &str,
    extra: &[&str],
    key: &Path,
    delegation: Option<&Path>,
) -> PathBuf {
    scaler_release(out, name, "2.0.0", extra, key, delegation)
}

fn verify_with_root(
    wasm: &Path,
    root: &Path,
    dir: &Path,
    state: Option<&Path>,
) -> Result<String, String> {
    let mut args = vec!["verify", p(wasm), "--root", p(root), "--trust-dir", p(dir)];
    if let Some(s) = state {
        args.extend(["--state-dir", p(s)]);
    }
    let out = wasmops(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(stderr)
    }
}

#[test]
fn root_delegation_rotation_and_revocation() {
    let (root_key, root_pub) = keygen("root");
    let (rel1_key, rel1_pub) = keygen("rel1");
    let (rel2_key, rel2_pub) = keygen("rel2");
    let trust = scratch().join("trust");
    ok(&[
        "trust",
        "init",
        "--dir",
        p(&trust),
        "--root-key",
        p(&root_key),
    ]);
    ok(&delegate(
        &trust,
        &root_key,
        &rel1_pub,
        "rel1",
        &["--models", "scaler*"],
    ));
    let d1 = trust.join("delegations/rel1.json");

    // A component signed by the delegated key, carrying its delegation.
    let a = release(
        "chain-a.wasm",
        "scaler-churn",
        &["--sequence", "10"],
        &rel1_key,
        Some(&d1),
    );
    let out = verify_with_root(&a, &root_pub, &trust, None).unwrap();
    assert!(
        out.contains("delegation `rel1`") && out.contains("sequence 10"),
        "{out}"
    );
    // The device needs nothing but the root key: an empty metadata dir still
    // verifies it through the embedded delegation (root version 0 = the anchor).
    let bare = scratch().join("bare-trust");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(trust.join("root.1.json"), bare.join("root.1.json")).unwrap();
    verify_with_root(&a, &root_pub, &bare, None).unwrap();

    // The delegation is scoped to scaler*: another model name is out of scope.
    let b = release("chain-b.wasm", "fraud", &[], &rel1_key, Some(&d1));
    let err = verify_with_root(&b, &root_pub, &trust, None).unwrap_err();
    assert!(
        err.contains("may sign models [\"scaler*\"], not `fraud`"),
        "{err}"
    );

    // A key the root never delegated to is not trusted.
    let (rogue_key, _) = keygen("rogue");
    let c = release("chain-c.wasm", "scaler-churn", &[], &rogue_key, None);
    let err = verify_with_root(&c, &root_pub, &trust, None).unwrap_err();
    assert!(err.contains("no signature by a trusted key"), "{err}");

    // Key rotation: delegate rel2, revoke rel1. Old releases signed by rel1 stop verifying.
    ok(&delegate(&trust, &root_key, &rel2_pub, "rel2", &[]));
    ok(&[
        "trust",
        "revoke",
        "--dir",
        p(&trust),
        "--root-key",
        p(&root_key),
        "--key",
        p(&rel1_pub),
        "--reason",
        "laptop stolen",
    ]);
    let err = verify_with_root(&a, &root_pub, &trust, None).unwrap_err();
    assert!(err.contains("is revoked: laptop stolen"), "{err}");
    let d = release(
        "chain-d.wasm",
        "scaler-churn",
        &["--sequence", "11"],
        &rel2_key,
        None,
    );
    verify_with_root(&d, &root_pub, &trust, None).unwrap();

    // Root rotation: root v2 signed by old and new root. Delegations must be
    // re-issued by the new root; devices still hold only the v1 root key.
    let (root2_key, _) = keygen("root2");
    ok(&[
        "trust",
        "rotate-root",
        "--dir",
        p(&trust),
        "--root-key",
        p(&root_key),
        "--new-root-key",
        p(&root2_key),
    ]);
    let err = verify_with_root(&d, &root_pub, &trust, None).unwrap_err();
    assert!(
        err.contains("delegation `rel2`") || err.contains("not signed by enough root keys"),
        "{err}"
    );
    // The old root key can no longer sign delegations devices accept.
    let err = fails(&delegate(&trust, &root_key, &rel2_pub, "rel2", &[]));
    assert!(err.contains("is not a key of root version 2"), "{err}");
    ok(&delegate(&trust, &root2_key, &rel2_pub, "rel2", &[]));
    // The revocation list was signed by the old root: re-issue it too.
    let err = verify_with_root(&d, &root_pub, &trust, None).unwrap_err();
    assert!(err.contains("revocation list"), "{err}");
    ok(&[
        "trust",
        "revoke",
        "--dir",
        p(&trust),
        "--root-key",
        p(&root2_key),
        "--key",
        p(&rel1_pub),
    ]);
    let state = scratch().join("device-state");
    verify_with_root(&d, &root_pub, &trust, Some(&state)).unwrap();
    let shown = ok(&["trust", "show", "--dir", p(&trust), "--root", p(&root_pub)]);
    assert!(
        shown.contains("chain OK") && shown.contains("root version 2"),
        "{shown}"
    );

    // The device remembers root v2: metadata signed only by the old root (a
    // replay after the rotation) is refused even if root.2.json disappears.
    let replay = scratch().join("replay-trust");
    std::fs::create_dir_all(replay.join("delegations")).unwrap();
    std::fs::copy(trust.join("root.1.json"), replay.join("root.1.json")).unwrap();
    std::fs::copy(&d1, replay.join("delegations/rel1.json")).unwrap();
    let err = verify_with_root(&a, &root_pub, &replay, Some(&state)).unwrap_err();
    assert!(
        err.contains("revocation list") || err.contains("not signed by enough root keys"),
        "{err}"
    );

    // A gap in the root chain is refused.
    let gap = scratch().join("gap-trust");
    std::fs::create_dir_all(&gap).unwrap();
    std::fs::copy(trust.join("root.2.json"), gap.join("root.2.json")).unwrap();
    let err = verify_with_root(&d, &root_pub, &gap, None).unwrap_err();
    assert!(err.contains("root.1.json is missing"), "{err}");
}

#[test]
fn expired_delegation_is_refused() {
    let (root_key, root_pub) = keygen("root-exp");
    let (rel_key, rel_pub) = keygen("rel-exp");
    let trust = scratch().join("trust-exp");
    ok(&[
        "trust",
        "init",
        "--dir",
        p(&trust),
        "--root-key",
        p(&root_key),
    ]);
    ok(&delegate(
        &trust,
        &root_key,
        &rel_pub,
        "old",
        &["--expires", "2021-01-01T00:00:00Z"],
    ));
    let a = release("exp-a.wasm", "scaler-churn", &[], &rel_key, None);
    let err = verify_with_root(&a, &root_pub, &trust, None).unwrap_err();
    assert!(
        err.contains("delegation `old`") && err.contains("expired at 2021-01-01T00:00:00Z"),
        "{err}"
    );
}

#[test]
fn rollback_is_refused_across_restarts() {
    let (key, public) = keys();
    let state = scratch().join("rollback-state");
    let v5 = release("seq5.wasm", "scaler-rb", &["--sequence", "5"], key, None);
    let v4 = release("seq4.wasm", "scaler-rb", &["--sequence", "4"], key, None);
    let input = fixtures().join("scaler_logreg/input_b1.json");
    let run = |wasm: &Path| {
        wasmops(&[
            "run",
            p(wasm),
            "--trust",
            p(public),
            "--state-dir",
            p(&state),
            "--input",
            p(&input),
        ])
    };

    assert!(run(&v4).status.success(), "first install of sequence 4");
    assert!(run(&v5).status.success(), "upgrade to 5");
    assert!(run(&v5).status.success(), "the same release again");
    // Each run is a new process: the state on disk is what refuses the rollback.
    let out = run(&v4);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rollback refused: `scaler-rb` sequence 4 is lower than 5"),
        "{err}"
    );
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("trust-state.json")).unwrap()).unwrap();
    assert_eq!(saved["models"]["scaler-rb"], 5);
    // Without claims there is nothing to protect against rollback: refused when a state dir is given.
    let unsigned_claims = scratch().join("no-claims.wasm");
    let bytes = wasmops_sign::set_custom_section(
        &std::fs::read(&v5).unwrap(),
        wasmops_trust::CLAIMS_SECTION,
        None,
    )
    .unwrap();
    let secret = wasmops_sign::SecretKey::from_bytes(&std::fs::read(key).unwrap()).unwrap();
    std::fs::write(
        &unsigned_claims,
        wasmops_sign::sign(&bytes, &secret).unwrap(),
    )
    .unwrap();
    let err = fails(&[
        "run",
        p(&unsigned_claims),
        "--trust",
        p(public),
        "--state-dir",
        p(&state),
        "--input",
        p(&input),
    ]);
    assert!(err.contains("carries no claims"), "{err}");
}

#[test]
fn inspect_prints_the_signed_claims() {
    let (key, public) = keys();
    let claims = scratch().join("claims.toml");
    std::fs::write(
        &claims,
        "sequence = 42\nexpires = \"3650d\"\n[lineage]\ndataset_id = \"churn-2026-10\"\ntraining_run = \"run-17\"\n[metrics]\nauc = 0.91\n",
    )
    .unwrap();
    let wasm = release(
        "claims.wasm",
        "scaler-claims",
        &[
            "--claims",
            p(&claims),
            "--code-commit",
            "abc123",
            "--metric",
            "f1=0.8",
        ],
        key,
        None,
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", p(&wasm), "--json", "--trust", p(public)])).unwrap();
    let c = &json["claims"];
    assert_eq!(c["name"], "scaler-claims");
    assert_eq!(c["version"], "2.0.0");
    assert_eq!(c["sequence"], 42);
    assert_eq!(c["lineage"]["dataset_id"], "churn-2026-10");
    assert_eq!(c["lineage"]["training_run"], "run-17");
    assert_eq!(c["lineage"]["code_commit"], "abc123");
    assert_eq!(c["metrics"]["auc"], 0.91);
    assert_eq!(c["metrics"]["f1"], 0.8);
    assert!(c["expires_at"].is_string());
    let caps: Vec<&str> = c["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        caps.iter()
            .all(|c| ["random", "clocks", "stdio"].contains(c)),
        "{caps:?}"
    );
    let text = ok(&["inspect", p(&wasm), "--trust", p(public)]);
    assert!(
        text.contains("training run     run-17") && text.contains("sequence         42"),
        "{text}"
    );
    // Without trust flags: the claims, read without running anything, marked unverified.
    let text = ok(&["inspect", p(&wasm)]);
    assert!(
        text.contains("UNVERIFIED")
            && text.contains("scaler-claims 2.0.0")
            && text.contains("sequence         42"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["inspect", p(&wasm), "--json"])).unwrap();
    assert_eq!(json["verified"], false);
    assert_eq!(json["signed"], true);
    assert_eq!(json["claims"]["sequence"], 42);

    // Bad claims input is refused by name before any work.
    let err = fails(&[
        "build",
        p(&fixtures().join("scaler_logreg/model.onnx")),
        "--out",
        p(&scratch().join("x.wasm")),
        "--version",
        "banana",
    ]);
    assert!(err.contains("not semver"), "{err}");
    let err = fails(&[
        "build",
        p(&fixtures().join("scaler_logreg/model.onnx")),
        "--out",
        p(&scratch().join("x.wasm")),
        "--metric",
        "auc=high",
    ]);
    assert!(err.contains("not a number"), "{err}");
    assert!(!scratch().join("x.wasm").exists());
}
