//! Derives the compiled-component cache key's codegen part from the bytes of
//! the patches in `host/vendor` (the patched Cranelift changes generated code
//! while wasmtime's version string stays the same), so a changed patch can
//! never load a stale `.cwasm`, and nobody has to remember to bump a string.

use std::path::Path;

use sha2::{Digest, Sha256};

fn main() {
    // The checkout being built, read when the script runs: `env!` would fix
    // the path of whichever checkout first compiled this script, and a target
    // dir shared by two checkouts then hashed no patches once that one was
    // gone (session 41: a device's cache missed the precompiled entry).
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let vendor = Path::new(&manifest_dir).join("../vendor");
    println!("cargo:rerun-if-changed={}", vendor.display());
    let mut patches: Vec<_> = std::fs::read_dir(&vendor)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", vendor.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "patch"))
        .collect();
    assert!(
        !patches.is_empty(),
        "no .patch files in {}",
        vendor.display()
    );
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
