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
