//! Derives the compiled-component cache key's codegen part from the bytes of
//! the patches in `host/vendor` (the patched Cranelift changes generated code
//! while wasmtime's version string stays the same), so a changed patch can
//! never load a stale `.cwasm`, and nobody has to remember to bump a string.

use std::path::Path;

use sha2::{Digest, Sha256};

fn main() {
    let vendor = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vendor");
    println!("cargo:rerun-if-changed={}", vendor.display());
    let mut patches: Vec<_> = std::fs::read_dir(&vendor)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "patch"))
                .collect()
        })
        .unwrap_or_default();
    patches.sort();
    let mut h = Sha256::new();
    for p in &patches {
        println!("cargo:rerun-if-changed={}", p.display());
        h.update(p.file_name().expect("a file").as_encoded_bytes());
        h.update(std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())));
    }
    let digest = h.finalize();
    let key: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    println!(
        "cargo:rustc-env=WASMOPS_CODEGEN_PATCHES=patches-{}-{key}",
        patches.len()
    );
}
