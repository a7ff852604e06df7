//! The guest build's first step on a machine whose Rust toolchain lacks the
//! wasm target: it runs `rustup target add` (here a stand-in that records its
//! arguments and installs a fake standard library), and only then.

#[path = "../toolchain.rs"]
mod toolchain;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// A fake `rustc` printing `sysroot`, and a fake `rustup` that logs its
/// arguments to `log` and creates the target's library folder.
fn fakes(dir: &Path, sysroot: &Path) -> (String, String) {
    let rustc = dir.join("rustc");
    std::fs::write(&rustc, format!("#!/bin/sh\necho {}\n", sysroot.display())).unwrap();
    let rustup = dir.join("rustup");
    let log = dir.join("log");
    std::fs::write(
        &rustup,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nfor t; do :; done\nmkdir -p {}/lib/rustlib/$t/lib\n",
            log.display(),
            sysroot.display()
        ),
    )
    .unwrap();
    for f in [&rustc, &rustup] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    (
        rustc.to_str().unwrap().into(),
        rustup.to_str().unwrap().into(),
    )
}

#[test]
fn a_missing_target_is_added_once_for_the_pinned_toolchain() {
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(sysroot.join("lib/rustlib/x86_64-unknown-linux-gnu/lib")).unwrap();
    let (rustc, rustup) = fakes(dir.path(), &sysroot);
    assert!(!toolchain::target_installed(&sysroot, "wasm32-wasip2"));
    assert_eq!(
        toolchain::ensure_target(&rustc, &rustup, Some("1.95.0"), "wasm32-wasip2"),
        Ok(true)
    );
    assert!(toolchain::target_installed(&sysroot, "wasm32-wasip2"));
    assert_eq!(
        toolchain::ensure_target(&rustc, &rustup, Some("1.95.0"), "wasm32-wasip2"),
        Ok(false),
        "present now: rustup is not run again"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("log")).unwrap(),
        "target add --toolchain 1.95.0 wasm32-wasip2\n"
    );
}

#[test]
fn no_rustup_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    let (rustc, _) = fakes(dir.path(), &sysroot);
    let err =
        toolchain::ensure_target(&rustc, "/nonexistent/rustup", None, "wasm32-wasip2").unwrap_err();
    assert!(err.contains("rustup target add wasm32-wasip2"), "{err}");
}

#[test]
fn the_real_toolchain_has_the_target_after_the_build() {
    // This test crate's build script ran ensure_target for real before the guests built.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let root = toolchain::sysroot(&rustc).unwrap();
    assert!(
        toolchain::target_installed(Path::new(&root), "wasm32-wasip2"),
        "{root} has no wasm32-wasip2"
    );
}
