//! Arbitrary text as a pipeline; what parses is run on a small input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wasmops_pipeline::{Pipeline, Tensor};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(p) = Pipeline::from_toml(text) else { return };
    let _ = p.describe();
    let mut inputs = vec![Tensor::f32("x", vec![2, 3], vec![0.5, f32::NAN, -1.0, 2.0, 3.0, 1e30])];
    let _ = p.apply(&mut inputs, "x");
});
