//! Replays every input kept in `tests/fuzz_regressions/TARGET/` (crashes the
//! fuzzers found, and seeds) through the same parsers as the fuzz targets in
//! `fuzz/`: each must return, never panic.

use std::path::Path;

use wasmops_sign::SecretKey;
use wasmops_trust::store::TrustMetadata;
use wasmops_trust::{Claims, Delegation, Revocations, Root, Signed, TrustPolicy};

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != ".gitkeep"))
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

#[test]
fn signature_inputs() {
    let key = SecretKey::from_seed([42; 32]).public();
    for (name, data) in inputs("signature") {
        eprintln!("{name}");
        let _ = wasmops_sign::sections(&data);
        let _ = wasmops_sign::verify(&data, std::slice::from_ref(&key));
    }
}

#[test]
fn claims_inputs() {
    for (name, data) in inputs("claims") {
        eprintln!("{name}");
        if let Ok(c) = Claims::parse(&data) {
            assert_eq!(
                Claims::parse(&c.to_json()).unwrap(),
                c,
                "{name}: claims round trip"
            );
        }
        let _ = Claims::read(&data);
        let _ = wasmops_trust::capabilities::imports(&data);
    }
}

#[test]
fn trust_metadata_inputs() {
    let anchor = SecretKey::from_seed([1; 32]).public();
    for (name, data) in inputs("trust_metadata") {
        eprintln!("{name}");
        let mut meta = TrustMetadata::default();
        meta.roots.extend(Signed::<Root>::parse(&data).ok());
        meta.delegations
            .extend(Signed::<Delegation>::parse(&data).ok());
        meta.revocations = Signed::<Revocations>::parse(&data).ok();
        let _ = TrustPolicy::root(vec![anchor.clone()], meta).check_metadata();
    }
}

#[test]
fn pipeline_toml_inputs() {
    for (name, data) in inputs("pipeline_toml") {
        eprintln!("{name}");
        let Ok(text) = std::str::from_utf8(&data) else {
            continue;
        };
        let Ok(p) = wasmops_pipeline::Pipeline::from_toml(text) else {
            continue;
        };
        let mut inputs = vec![wasmops_pipeline::Tensor::f32(
            "x",
            vec![2, 3],
            vec![0.5, f32::NAN, -1.0, 2.0, 3.0, 1e30],
        )];
        let _ = p.apply(&mut inputs, "x");
    }
}
