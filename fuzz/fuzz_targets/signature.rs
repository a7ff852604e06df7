//! Arbitrary bytes as a signed component: section framing, the signature
//! section and verification must return errors, never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wasmops_sign::{SecretKey, sections, verify};

fuzz_target!(|data: &[u8]| {
    let key = SecretKey::from_seed([42; 32]).public();
    let _ = sections(data);
    let _ = verify(data, &[key]);
    let _ = wasmops_sign::custom_sections(data, "signature");
});
