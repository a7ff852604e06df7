//! Arbitrary bytes as root, delegation and revocation documents, then through
//! the policy's chain walk.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wasmops_sign::SecretKey;
use wasmops_trust::store::TrustMetadata;
use wasmops_trust::{Delegation, Revocations, Root, Signed, TrustPolicy};

fuzz_target!(|data: &[u8]| {
    let anchor = SecretKey::from_seed([1; 32]).public();
    let mut meta = TrustMetadata::default();
    if let Ok(r) = Signed::<Root>::parse(data) {
        meta.roots.push(r);
    }
    if let Ok(d) = Signed::<Delegation>::parse(data) {
        meta.delegations.push(d);
    }
    if let Ok(r) = Signed::<Revocations>::parse(data) {
        meta.revocations = Some(r);
    }
    let _ = TrustPolicy::root(vec![anchor], meta).check_metadata();
});
