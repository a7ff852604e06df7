//! Runs first (it has no build dependencies): makes sure the toolchain has the
//! wasm32-wasip2 target before anything is compiled, so a machine whose Rust
//! was installed before the clone does not fail 18 minutes into the build when
//! the guests start (guest/artifacts/build.rs checks again for its own builds).

#[path = "guest/artifacts/toolchain.rs"]
mod toolchain;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=guest/artifacts/toolchain.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let pinned = std::env::var("RUSTUP_TOOLCHAIN").ok();
    match toolchain::ensure_target(&rustc, "rustup", pinned.as_deref(), "wasm32-wasip2") {
        Ok(true) => println!(
            "cargo:warning=installed the wasm32-wasip2 target with rustup (needed for the model guests)"
        ),
        Ok(false) => {}
        Err(e) => panic!("{e}"),
    }
}
