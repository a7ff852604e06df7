//! Compiles `guest/component` for `wasm32-wasip2` with tract's wasm SIMD kernels,
//! in full and slim flavours, shrinks both with binaryen's `wasm-opt` (the
//! system's, installed when missing: binaryen.rs), and exposes the bytes
//! as `GENERIC_GUEST` and `SLIM_GUEST`; the wasi:http front (`guest/http`)
//! as `HTTP_FRONT`; and the browser's verifier
//! (`host/web/verifier`) for `wasm32-unknown-unknown` as `WEB_VERIFIER`. With the `test-programs` feature it also
//! builds the hostile guests of `guest/test-programs` for the sandbox tests (as
//! wasmtime's `test-programs/artifacts` does). A separate target directory
//! keeps the nested cargo from waiting on the outer build's lock.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "toolchain.rs"]
mod toolchain;

#[path = "binaryen.rs"]
mod binaryen;

/// LLVM settings that shrink the guest without slowing it. tract-core's ops are
/// monomorphised over every datum type and at O3 each copy inlines everything it
/// calls; capping the inliner for calls not marked `#[inline]` (hot iterator and
/// kernel code is) took the MobileNetV2-style component from 14.2 to 12.9 MB with
/// in-wasm latency unchanged within noise. Also capping vector interleaving and
/// runtime unrolling saved 0.3 MB more but cost ~3 %; a threshold of 25 cost ~20 %.
const SIZE_FLAGS: &[&str] = &["-Cllvm-args=-inline-threshold=75"];

/// `-Ctarget-feature=...` plus [`SIZE_FLAGS`], in cargo's 0x1f-separated form.
fn encoded_rustflags(target_features: &str) -> String {
    std::iter::once(format!("-Ctarget-feature={target_features}"))
        .chain(SIZE_FLAGS.iter().map(|f| f.to_string()))
        .collect::<Vec<_>>()
        .join("\x1f")
}

/// Runs binaryen's `wasm-opt -Oz` (`wasm_opt`) over the component's core
/// module (the largest nested module; the WASI adapter shims are tiny) and
/// splices it back. On the slim guest this took 8.80 → 7.47 MB with the same
/// MobileNet latency and byte-identical outputs on every fixture (binaryen 116,
/// ~35 s per guest). `WASMOPS_GUEST_NO_WASM_OPT=1` skips it while iterating on
/// guest code.
fn shrink(wasm_opt: Option<&Path>, component: &Path, target_features: &str) {
    let Some(wasm_opt) = wasm_opt else { return };
    let bytes = std::fs::read(component).unwrap();
    let sections =
        wasmops_sign::sections(&bytes).unwrap_or_else(|e| panic!("{}: {e}", component.display()));
    // Component-model section id 1: a core module.
    let core_ix = (0..sections.len())
        .filter(|&i| sections[i].id == 1)
        .max_by_key(|&i| sections[i].contents.len())
        .expect("the component holds no core module");
    let dir = component.with_extension("wasm-opt");
    std::fs::create_dir_all(&dir).unwrap();
    let (input, output) = (dir.join("core.wasm"), dir.join("core.opt.wasm"));
    std::fs::write(&input, sections[core_ix].contents).unwrap();

    // Exactly the features rustc's wasm32-wasip2 target emits, plus the guest's own.
    let mut features = vec![];
    if target_features.contains("+simd128") {
        features.push("--enable-simd");
    }
    if target_features.contains("+relaxed-simd") {
        features.push("--enable-relaxed-simd");
    }
    optimise_for_size(wasm_opt, &input, &output, &features);

    let core = std::fs::read(&output).unwrap();
    let mut out = bytes[..8].to_vec();
    for (i, section) in sections.iter().enumerate() {
        if i == core_ix {
            wasmops_sign::write_section(&mut out, 1, &core);
        } else {
            out.extend_from_slice(section.raw);
        }
    }
    std::fs::write(component, out).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `wasm-opt -Oz` from `input` to `output`, with the features rustc's wasm32
/// targets emit by default plus `extra`.
fn optimise_for_size(wasm_opt: &Path, input: &Path, output: &Path, extra: &[&str]) {
    let status = Command::new(wasm_opt)
        .args([
            "-Oz",
            "--mvp-features",
            "--enable-mutable-globals",
            "--enable-sign-ext",
            "--enable-nontrapping-float-to-int",
            "--enable-bulk-memory",
            "--enable-multivalue",
            "--enable-reference-types",
        ])
        .args(extra)
        .arg(input)
        .arg("-o")
        .arg(output)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", wasm_opt.display()));
    assert!(
        status.success(),
        "{} -Oz on {} failed",
        wasm_opt.display(),
        input.display()
    );
}

/// `wasm-opt -Oz` over a plain core module in place (the browser verifier:
/// 405 → 349 KB).
fn shrink_module(wasm_opt: Option<&Path>, module: &Path) {
    let Some(wasm_opt) = wasm_opt else { return };
    let tmp = module.with_extension("opt.wasm");
    optimise_for_size(wasm_opt, module, &tmp, &[]);
    std::fs::rename(&tmp, module).unwrap();
}

/// binaryen's `wasm-opt` (see binaryen.rs), or `None` under
/// `WASMOPS_GUEST_NO_WASM_OPT`.
fn wasm_opt() -> Option<PathBuf> {
    if env::var_os("WASMOPS_GUEST_NO_WASM_OPT").is_some() {
        return None;
    }
    let path = env::var_os("PATH").unwrap_or_default();
    match binaryen::find_or_install(
        env::var_os("WASMOPS_WASM_OPT").map(PathBuf::from),
        &path,
        "apt-get",
    ) {
        Ok((p, installed)) => {
            if installed {
                println!(
                    "cargo:warning=installed binaryen (Debian's package) for wasm-opt, which shrinks the guests"
                );
            }
            Some(p)
        }
        Err(e) => panic!("{e}"),
    }
}

/// Builds one wasm32-wasip2 package and copies its `.wasm` to `OUT_DIR/dest`.
fn build(
    root: &Path,
    target_dir: &Path,
    package: &str,
    features: &[&str],
    rustflags: &str,
    dest: &str,
) -> PathBuf {
    build_for(
        root,
        target_dir,
        "wasm32-wasip2",
        package,
        features,
        &encoded_rustflags(rustflags),
        dest,
    )
}

/// Builds `package` for `target` with `encoded_rustflags` (cargo's
/// 0x1f-separated form) and copies its `.wasm` to `OUT_DIR/dest`.
fn build_for(
    root: &Path,
    target_dir: &Path,
    target: &str,
    package: &str,
    features: &[&str],
    encoded_rustflags: &str,
    dest: &str,
) -> PathBuf {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root)
        .args([
            "build",
            "-p",
            package,
            "--target",
            target,
            "--profile",
            "guest",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    // Do not leak the outer build's settings into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("failed to run cargo for a wasm guest");
    assert!(
        status.success(),
        "building `{package}` for {target} failed (if the error above says the target is missing: rustup target add {target})"
    );
    let wasm = target_dir
        .join(target)
        .join("guest")
        .join(format!("{}.wasm", package.replace('-', "_")));
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join(dest);
    std::fs::copy(&wasm, &out).unwrap_or_else(|e| panic!("copy {}: {e}", wasm.display()));
    out
}

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.join("../..").canonicalize().unwrap();
    let target_dir = env::var_os("WASMOPS_GUEST_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/guest"));

    for path in [
        "guest/component",
        "guest/pipeline",
        "guest/batching",
        "guest/quant",
        "guest/test-programs",
        "guest/http",
        "guest/vendor",
        "host/web/verifier",
        "host/sign",
        "host/trust",
        "host/profile",
        "devices/counting",
        "host/predict-json",
        "devices/protocol",
        "wit",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    println!("cargo:rerun-if-changed=toolchain.rs");
    println!("cargo:rerun-if-changed=binaryen.rs");
    println!("cargo:rerun-if-env-changed=WASMOPS_WASM_OPT");
    println!("cargo:rerun-if-env-changed=WASMOPS_GUEST_FEATURES");
    println!("cargo:rerun-if-env-changed=WASMOPS_GUEST_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=WASMOPS_GUEST_NO_WASM_OPT");

    // Before anything compiles for wasm: the target must be there (rustup adds a
    // toolchain file's targets only when it installs the toolchain itself).
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let toolchain = env::var("RUSTUP_TOOLCHAIN").ok();
    for target in ["wasm32-wasip2", "wasm32-unknown-unknown"] {
        match toolchain::ensure_target(&rustc, "rustup", toolchain.as_deref(), target) {
            Ok(true) => println!(
                "cargo:warning=installed the {target} target with rustup (needed for the model guests and the browser verifier)"
            ),
            Ok(false) => {}
            Err(e) => panic!("{e}"),
        }
    }

    let wasm_opt = wasm_opt();

    // The browser's verifier: the host's trust check, with getrandom pointed
    // at the verifier's own (refusing) source, since a browser has no WASI.
    let verifier = build_for(
        &root,
        &target_dir,
        "wasm32-unknown-unknown",
        "wasmops-web-verifier",
        &[],
        "--cfg\x1fgetrandom_backend=\"custom\"",
        "wasmops_web_verifier.wasm",
    );
    shrink_module(wasm_opt.as_deref(), &verifier);
    println!(
        "cargo:rustc-env=WASMOPS_WEB_VERIFIER={}",
        verifier.display()
    );

    // The wasi:http front of `build --http`: JSON and calls, no kernels.
    let front = build_for(
        &root,
        &target_dir,
        "wasm32-wasip2",
        "wasmops-http-guest",
        &[],
        "",
        "wasmops_http_guest.wasm",
    );
    println!("cargo:rustc-env=WASMOPS_HTTP_FRONT={}", front.display());

    let rustflags = env::var("WASMOPS_GUEST_FEATURES").unwrap_or_else(|_| "+simd128".into());
    let guest = build(
        &root,
        &target_dir,
        "wasmops-guest",
        &[],
        &rustflags,
        "wasmops_guest.wasm",
    );
    shrink(wasm_opt.as_deref(), &guest, &rustflags);
    println!("cargo:rustc-env=WASMOPS_GENERIC_GUEST={}", guest.display());
    let slim = build(
        &root,
        &target_dir,
        "wasmops-guest",
        &["slim"],
        &rustflags,
        "wasmops_guest_slim.wasm",
    );
    shrink(wasm_opt.as_deref(), &slim, &rustflags);
    println!("cargo:rustc-env=WASMOPS_SLIM_GUEST={}", slim.display());
    println!("cargo:rustc-env=WASMOPS_GUEST_TARGET_FEATURES={rustflags}");

    if env::var_os("CARGO_FEATURE_TEST_PROGRAMS").is_some() {
        let hostile = build(
            &root,
            &target_dir,
            "wasmops-test-programs",
            &[],
            "+simd128",
            "hostile.wasm",
        );
        println!("cargo:rustc-env=WASMOPS_TEST_HOSTILE={}", hostile.display());
        for (feature, var) in [
            ("filesystem", "FS"),
            ("environment", "ENV"),
            ("sockets", "SOCKETS"),
        ] {
            let wasm = build(
                &root,
                &target_dir,
                "wasmops-test-programs",
                &[feature],
                "+simd128",
                &format!("hostile_{feature}.wasm"),
            );
            println!(
                "cargo:rustc-env=WASMOPS_TEST_HOSTILE_{var}={}",
                wasm.display()
            );
        }
    }
}
