//! Arbitrary bytes as claims, alone and inside a component.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wasmops_trust::Claims;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Claims::parse(data) {
        // Whatever parses must survive a round trip unchanged.
        assert_eq!(Claims::parse(&c.to_json()).unwrap(), c);
    }
    let _ = Claims::read(data);
    let _ = wasmops_trust::capabilities::imports(data);
});
