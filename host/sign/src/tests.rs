use super::*;

/// A tiny valid core module: header, a type section and a custom section.
fn module() -> Vec<u8> {
    let mut m = vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
    m.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
    format::write_custom_section(&mut m, "name-ish", b"hello");
    m
}

#[test]
fn sign_then_verify() {
    let key = SecretKey::from_seed([7; 32]);
    let signed = sign(&module(), &key).unwrap();
    let v = verify(&signed, &[key.public()]).unwrap();
    assert_eq!(v.key_id, key.public().key_id());
    // Re-signing replaces, never stacks, signatures.
    let twice = sign(&signed, &key).unwrap();
    assert_eq!(twice, signed);
}

#[test]
fn every_flipped_byte_after_the_signature_is_caught() {
    let key = SecretKey::from_seed([1; 32]);
    let signed = sign(&module(), &key).unwrap();
    let body_start = sections(&signed).unwrap()[1].offset;
    for i in body_start..signed.len() {
        let mut bad = signed.clone();
        bad[i] ^= 0x01;
        assert!(
            verify(&bad, &[key.public()]).is_err(),
            "flip at {i} accepted"
        );
    }
}

#[test]
fn refusals_are_specific() {
    let key = SecretKey::from_seed([2; 32]);
    let other = SecretKey::from_seed([3; 32]);
    let signed = sign(&module(), &key).unwrap();
    assert_eq!(verify(&module(), &[key.public()]), Err(SignError::Unsigned));
    assert!(matches!(
        verify(&signed, &[other.public()]),
        Err(SignError::UntrustedKey { .. })
    ));
    assert_eq!(
        verify(b"\x7fELF....", &[key.public()]),
        Err(SignError::NotWasm)
    );
    assert!(matches!(
        verify(&signed[..signed.len() - 1], &[key.public()]),
        Err(SignError::Malformed(_))
    ));
    let mut extra = signed.clone();
    extra.extend_from_slice(&[0x00, 0x02, 0x01, b'x']);
    assert_eq!(verify(&extra, &[key.public()]), Err(SignError::Tampered));
}

#[test]
fn key_files_round_trip_and_refuse_the_wrong_half() {
    let key = SecretKey::from_seed([9; 32]);
    let sk = SecretKey::from_bytes(&key.to_bytes()).unwrap();
    assert_eq!(sk.public(), key.public());
    assert_eq!(
        PublicKey::from_bytes(&key.public().to_bytes()).unwrap(),
        key.public()
    );
    assert!(PublicKey::from_bytes(&key.to_bytes()).is_err());
    assert!(SecretKey::from_bytes(&key.public().to_bytes()).is_err());
}

/// A `signature` section payload with the given hash sets, each with `sigs`
/// signatures of junk by no particular key (empty key id: every trusted key is tried).
fn crafted_payload(sets: &[Vec<[u8; 32]>], sigs: usize) -> Vec<u8> {
    let mut out = vec![];
    for b in [SPEC_VERSION, CONTENT_TYPE_MODULE, HASH_SHA256] {
        put_leb(&mut out, b.into());
    }
    put_leb(&mut out, sets.len() as u64);
    for hashes in sets {
        let mut set = vec![];
        put_leb(&mut set, hashes.len() as u64);
        for h in hashes {
            set.extend_from_slice(h);
        }
        put_leb(&mut set, sigs as u64);
        for i in 0..sigs {
            let mut sig = vec![];
            format::put_slice(&mut sig, &[]);
            sig.push(ALG_ED25519);
            format::put_slice(&mut sig, &[i as u8; 64]);
            format::put_slice(&mut set, &sig);
        }
        format::put_slice(&mut out, &set);
    }
    out
}

fn with_signature_section(payload: &[u8]) -> Vec<u8> {
    let body = module();
    let mut out = body[..8].to_vec();
    format::write_custom_section(&mut out, SIGNATURE_SECTION, payload);
    out.extend_from_slice(&body[8..]);
    out
}

/// Issue 24.9: a crafted section cannot make verification cost more than its
/// signatures times the trusted keys (the old loop tried every signature
/// against every hash: ~10^6 Ed25519 checks for a 64×64×256 section).
#[test]
fn crafted_signature_sections_cost_a_bounded_number_of_checks() {
    let keys: Vec<PublicKey> = (10..13)
        .map(|n| SecretKey::from_seed([n; 32]).public())
        .collect();
    let content: [u8; 32] = Sha256::digest(&module()[8..]).into();
    let checks = |wasm: &[u8]| {
        keys::CHECKS.with(|c| c.set(0));
        let r = verify(wasm, &keys);
        (r, keys::CHECKS.with(|c| c.get()))
    };
    // The most the parser admits, one set naming the real content hash.
    let mut sets = vec![vec![[9u8; 32]; 31]; 2];
    sets[1][30] = content;
    let wasm = with_signature_section(&crafted_payload(&sets, 32));
    let (r, n) = checks(&wasm);
    assert!(
        matches!(r, Err(SignError::UntrustedKey { signatures: 64, .. })),
        "{r:?}"
    );
    assert!(n <= 32 * keys.len() + MAX_STALE_CHECKS, "{n} checks");
    // Without the real hash: only the bounded tamper probe runs.
    let wasm = with_signature_section(&crafted_payload(&[vec![[9u8; 32]; 64]], 64));
    let (r, n) = checks(&wasm);
    assert!(r.is_err());
    assert!(n <= MAX_STALE_CHECKS, "{n} checks");
    // Past the bounds, over all sets together: refused before any check.
    for (sets, sigs, what) in [
        (vec![vec![[9u8; 32]; 33]; 2], 0, "hashes"),
        (vec![vec![[9u8; 32]; 1]; 2], 33, "signatures"),
    ] {
        let (r, n) = checks(&with_signature_section(&crafted_payload(&sets, sigs)));
        assert!(
            matches!(&r, Err(SignError::MalformedSignature(m)) if m.contains(what)),
            "{r:?}"
        );
        assert_eq!(n, 0);
    }
}
