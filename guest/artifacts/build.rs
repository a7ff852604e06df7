//! Compiles `guest/component` for `wasm32-wasip2` with tract's wasm SIMD kernels
//! and exposes the bytes as `GENERIC_GUEST`. A separate target directory keeps
//! the nested cargo from waiting on the outer build's lock.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_dir = env::var_os("WASMOPS_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guest"));

    for path in ["guest/component", "guest/pipeline", "wit", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=WASMOPS_GUEST_FEATURES");
    println!("cargo:rerun-if-env-changed=WASMOPS_GUEST_TARGET_DIR");

    let rustflags = env::var("WASMOPS_GUEST_FEATURES").unwrap_or_else(|_| "+simd128".into());
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "-p", "wasmops-guest", "--target", "wasm32-wasip2", "--profile", "guest"])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", format!("-Ctarget-feature={rustflags}"));
    // Do not leak the outer build's settings into the guest build.
    for var in ["RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_PROFILE_RELEASE_DEBUG", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for the guest");
    assert!(status.success(), "building the wasm32-wasip2 guest failed");

    let wasm = target_dir.join("wasm32-wasip2/guest/wasmops_guest.wasm");
    let dest = out_dir.join("wasmops_guest.wasm");
    std::fs::copy(&wasm, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
    println!("cargo:rustc-env=WASMOPS_GENERIC_GUEST={}", dest.display());
    println!("cargo:rustc-env=WASMOPS_GUEST_TARGET_FEATURES={rustflags}");
}
