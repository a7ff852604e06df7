//! The security suite: every way of damaging a signed component is refused with
//! a specific error, never a panic. Works on real components built by the CLI.

use crate::common::*;

use wasmops_sign::{PublicKey, SecretKey, SignError, sections, verify};
use wasmops_trust::capabilities::DEFAULT_GRANTED;
use wasmops_trust::{Claims, Timestamp, TrustError, TrustPolicy};

fn release_key() -> (SecretKey, PublicKey) {
    let secret = SecretKey::from_bytes(&std::fs::read(&keys().0).unwrap()).unwrap();
    let public = secret.public();
    (secret, public)
}

/// Re-assembles a binary from section byte ranges.
fn assemble(header: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out = header.to_vec();
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

#[test]
fn a_flipped_byte_in_any_section_is_refused() {
    let wasm = std::fs::read(component("scaler_logreg")).unwrap();
    let (_, key) = release_key();
    verify(&wasm, std::slice::from_ref(&key)).expect("the intact component verifies");
    let secs = sections(&wasm).unwrap();
    assert!(secs.len() > 5, "a component has many sections");
    for (i, s) in secs.iter().enumerate() {
        let mut bad = wasm.clone();
        // A byte inside the contents (past the name of a custom section).
        let at = s.offset + s.raw.len() - s.contents.len() + s.contents.len() / 2 + 1;
        let at = at.min(s.offset + s.raw.len() - 1);
        bad[at] ^= 0x5a;
        let err = verify(&bad, std::slice::from_ref(&key))
            .expect_err(&format!("flipped byte in section {i} accepted"));
        if i == 0 {
            assert!(
                matches!(
                    err,
                    SignError::UntrustedKey { .. }
                        | SignError::MalformedSignature(_)
                        | SignError::Unsigned
                        | SignError::Tampered
                ),
                "section 0 (signature): {err}"
            );
        } else {
            assert!(
                matches!(err, SignError::Tampered | SignError::Malformed(_)),
                "section {i} (id {}): {err}",
                s.id
            );
        }
    }
    // The header too.
    let mut bad = wasm.clone();
    bad[4] ^= 1;
    assert_eq!(verify(&bad, &[key]).unwrap_err(), SignError::NotWasm);
}

#[test]
fn truncation_anywhere_is_refused() {
    let wasm = std::fs::read(component("scaler_logreg")).unwrap();
    let (_, key) = release_key();
    let sig_end = sections(&wasm).unwrap()[0].raw.len() + 8;
    for len in [
        0,
        3,
        8,
        9,
        20,
        sig_end - 1,
        sig_end,
        sig_end + 1,
        wasm.len() / 2,
        wasm.len() - 1,
    ] {
        let err = verify(&wasm[..len], std::slice::from_ref(&key))
            .expect_err(&format!("truncated to {len} accepted"));
        let expected = match len {
            0..8 => matches!(err, SignError::NotWasm),
            8 => matches!(err, SignError::Unsigned),
            _ if len == sig_end => matches!(err, SignError::Tampered),
            _ => matches!(err, SignError::Malformed(_)),
        };
        assert!(expected, "truncated to {len}: unexpected error {err}");
    }
}

#[test]
fn signature_section_duplicated_moved_or_padded_is_refused() {
    let wasm = std::fs::read(component("scaler_logreg")).unwrap();
    let (_, key) = release_key();
    let secs = sections(&wasm).unwrap();
    let sig = secs[0].raw;
    let body: Vec<&[u8]> = secs[1..].iter().map(|s| s.raw).collect();

    let mut dup = vec![sig, sig];
    dup.extend(&body);
    let err = verify(&assemble(&wasm[..8], &dup), std::slice::from_ref(&key)).unwrap_err();
    assert!(
        matches!(&err, SignError::MalformedSignature(m) if m.contains("more than one")),
        "duplicated: {err}"
    );

    let mut moved = body.clone();
    moved.push(sig);
    let err = verify(&assemble(&wasm[..8], &moved), std::slice::from_ref(&key)).unwrap_err();
    assert!(
        matches!(&err, SignError::MalformedSignature(m) if m.contains("must be the first")),
        "moved: {err}"
    );

    // Trailing bytes after the whole binary: not a valid section.
    let mut trailing = wasm.clone();
    trailing.extend_from_slice(&[0x00, 0x7f]);
    let err = verify(&trailing, std::slice::from_ref(&key)).unwrap_err();
    assert!(
        matches!(err, SignError::Malformed(_)),
        "trailing bytes: {err}"
    );
    // A well-formed extra section after signing: the content changed.
    let mut appended = wasm.clone();
    appended.extend_from_slice(&[0x00, 0x04, 0x03, b'x', b'y', b'z']);
    assert_eq!(
        verify(&appended, std::slice::from_ref(&key)).unwrap_err(),
        SignError::Tampered
    );

    // Trailing bytes inside the signature section, after the signed hash sets.
    let payload = secs[0].custom_payload().unwrap();
    let mut padded_payload = payload.to_vec();
    padded_payload.push(0);
    let mut padded = wasm[..8].to_vec();
    padded.push(0);
    let name = b"signature";
    let size = 1 + name.len() + padded_payload.len();
    assert!(size < 128);
    padded.push(size as u8);
    padded.push(name.len() as u8);
    padded.extend_from_slice(name);
    padded.extend_from_slice(&padded_payload);
    padded.extend(body.iter().flat_map(|b| b.iter().copied()));
    let err = verify(&padded, &[key]).unwrap_err();
    assert!(
        matches!(&err, SignError::MalformedSignature(m) if m.contains("trailing")),
        "padded signature section: {err}"
    );
}

/// Two components of the same model with different pipelines: swapping the
/// claims, the code+data (which holds model and pipeline) or the signature
/// between them always breaks verification.
#[test]
fn mix_and_match_is_refused() {
    let model = fixtures().join("scaler_logreg/model.onnx");
    let pipeline = scratch().join("clip.toml");
    std::fs::write(
        &pipeline,
        "[[step]]\nop = \"clip\"\nmin = -5.0\nmax = 5.0\n",
    )
    .unwrap();
    let b_path = scratch().join("mix-b.wasm");
    ok(&[
        "build",
        p(&model),
        "--out",
        p(&b_path),
        "--name",
        "scaler_logreg",
        "--version",
        "1.2.3",
        "--pipeline",
        p(&pipeline),
    ]);
    ok(&["sign", p(&b_path), "--key", p(&keys().0)]);
    let a = std::fs::read(component("scaler_logreg")).unwrap();
    let b = std::fs::read(&b_path).unwrap();
    let (_, key) = release_key();
    verify(&b, std::slice::from_ref(&key)).unwrap();

    // The claims bind both parts by hash (checked against hashes computed here).
    use sha2::Digest;
    let (ca, cb) = (
        Claims::read(&a).unwrap().unwrap(),
        Claims::read(&b).unwrap().unwrap(),
    );
    let sha = |bytes: &[u8]| hex::encode(sha2::Sha256::digest(bytes));
    assert_eq!(ca.model_sha256, sha(&std::fs::read(&model).unwrap()));
    assert_eq!(cb.model_sha256, ca.model_sha256);
    assert_eq!(cb.pipeline_sha256, sha(&std::fs::read(&pipeline).unwrap()));
    assert_ne!(ca.pipeline_sha256, cb.pipeline_sha256);

    let (sa, sb) = (sections(&a).unwrap(), sections(&b).unwrap());
    assert_eq!(sa.len(), sb.len(), "same guest, same layout");
    let mut swapped_any = 0;
    for i in 1..sa.len() {
        if sa[i].raw == sb[i].raw {
            continue;
        }
        swapped_any += 1;
        let parts: Vec<&[u8]> = sa
            .iter()
            .enumerate()
            .map(|(j, s)| if j == i { sb[j].raw } else { s.raw })
            .collect();
        let mixed = assemble(&a[..8], &parts);
        let what = sa[i]
            .custom_name()
            .map(|n| format!("custom section `{n}`"))
            .unwrap_or(format!("section id {}", sa[i].id));
        assert_eq!(
            verify(&mixed, std::slice::from_ref(&key)).unwrap_err(),
            SignError::Tampered,
            "A with B's {what}"
        );
    }
    assert!(
        swapped_any >= 2,
        "claims and the core module must differ between A and B"
    );
    // B's signature on A's body.
    let parts: Vec<&[u8]> = std::iter::once(sb[0].raw)
        .chain(sa[1..].iter().map(|s| s.raw))
        .collect();
    assert_eq!(
        verify(&assemble(&a[..8], &parts), &[key]).unwrap_err(),
        SignError::Tampered
    );
}

fn policy_at(key: PublicKey, now: Timestamp) -> TrustPolicy {
    TrustPolicy {
        now: Some(now),
        ..TrustPolicy::keys(vec![key])
    }
}

#[test]
fn expired_claims_are_refused() {
    let (secret, key) = release_key();
    let wasm = std::fs::read(component("scaler_logreg")).unwrap();
    let mut claims = Claims::read(&wasm).unwrap().unwrap();
    claims.expires_at = Some(claims.created_at.plus(std::time::Duration::from_secs(3600)));
    let signed = wasmops_sign::sign(&claims.embed(&wasm).unwrap(), &secret).unwrap();
    policy_at(key.clone(), claims.created_at)
        .check(&signed)
        .expect("valid before expiry");
    let later = claims.created_at.plus(std::time::Duration::from_secs(7200));
    let err = policy_at(key, later).check(&signed).unwrap_err();
    assert!(matches!(err, TrustError::ClaimsExpired { .. }), "{err}");
}

#[test]
fn two_claims_sections_are_refused() {
    let (secret, key) = release_key();
    let wasm = std::fs::read(component("scaler_logreg")).unwrap();
    let claims = Claims::read(&wasm).unwrap().unwrap();
    let mut doubled = claims.embed(&wasm).unwrap();
    // Append a second claims section by hand, then sign the result.
    let json = claims.to_json();
    let name = wasmops_trust::CLAIMS_SECTION.as_bytes();
    let mut sec = vec![name.len() as u8];
    sec.extend_from_slice(name);
    sec.extend_from_slice(&json);
    doubled.push(0);
    let mut n = sec.len();
    while n >= 0x80 {
        doubled.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    doubled.push(n as u8);
    doubled.extend_from_slice(&sec);
    let signed = wasmops_sign::sign(&doubled, &secret).unwrap();
    let err = TrustPolicy::keys(vec![key]).check(&signed).unwrap_err();
    assert!(
        matches!(&err, TrustError::MalformedClaims(m) if m.contains("2 `wasmops-claims` sections")),
        "{err}"
    );
}

/// A component that imports the filesystem: claiming it is refused by a host
/// that does not grant it; hiding it from the claims is refused too.
#[test]
fn capability_escalation_is_refused() {
    let (secret, key) = release_key();
    let guest = std::fs::read(wasmops_guest_artifacts::test_programs::HOSTILE_FS).unwrap();
    let mut claims = Claims::new("hostile-fs", "1.0.0", 1, b"none", "");
    // Grant everything the guest needs except the filesystem.
    let needed = wasmops_trust::capabilities::required(&guest).unwrap();
    assert!(needed.iter().any(|c| c == "filesystem"), "{needed:?}");
    let granted: Vec<String> = needed
        .iter()
        .filter(|c| *c != "filesystem")
        .cloned()
        .collect();
    let policy = TrustPolicy {
        granted: granted.clone(),
        ..TrustPolicy::keys(vec![key.clone()])
    };

    claims.capabilities = needed.clone();
    let honest = wasmops_sign::sign(&claims.embed(&guest).unwrap(), &secret).unwrap();
    let err = policy.check(&honest).unwrap_err();
    assert!(
        matches!(&err, TrustError::CapabilityDenied { capability, .. } if capability == "filesystem"),
        "{err}"
    );

    claims.capabilities = granted.clone();
    let sneaky = wasmops_sign::sign(&claims.embed(&guest).unwrap(), &secret).unwrap();
    let err = policy.check(&sneaky).unwrap_err();
    assert!(
        matches!(&err, TrustError::UndeclaredImport { capability, .. } if capability == "filesystem"),
        "{err}"
    );

    // Hosts grant only random, clocks and stdio by default.
    assert_eq!(DEFAULT_GRANTED, ["random", "clocks", "stdio"]);

    // And through the CLI: refused before compiling, naming the capability.
    let path = scratch().join("hostile-fs-claims.wasm");
    std::fs::write(&path, &honest).unwrap();
    let mut args = vec![
        "run",
        p(&path),
        "--trust",
        p(&keys().1),
        "--input",
        "/dev/null",
    ];
    for g in &granted {
        args.extend(["--grant", g.as_str()]);
    }
    let err = fails(&args);
    assert!(err.contains("capability `filesystem`"), "{err}");
}
