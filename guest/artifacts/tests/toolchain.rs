//! The guest build's first step on a machine whose Rust toolchain lacks the
//! wasm target: it runs `rustup target add` (here a stand-in that records its
//! arguments and installs a fake standard library), and only then.

#[path = "../toolchain.rs"]
mod toolchain;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Mutex;

/// One test at a time: a script written while another thread forks can fail
/// to execute (ETXTBSY), as the child briefly holds the write handle.
static SERIAL: Mutex<()> = Mutex::new(());

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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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

/// The root package's build script and guest/artifacts' may run at once: one
/// installs, the other waits for it and then finds the target there.
#[test]
fn two_builds_at_once_install_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    let (rustc, rustup) = fakes(dir.path(), &sysroot);
    // A slow rustup: the second caller arrives while the first installs.
    let slow = dir.path().join("slow-rustup");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nsleep 0.5\nexec {rustup} \"$@\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = format!("wasm32-test-{}", std::process::id());
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (rustc, slow, target) = (
                rustc.clone(),
                slow.to_str().unwrap().to_string(),
                target.clone(),
            );
            std::thread::spawn(move || toolchain::ensure_target(&rustc, &slow, None, &target))
        })
        .collect();
    let mut added: Vec<bool> = calls
        .into_iter()
        .map(|c| c.join().unwrap().unwrap())
        .collect();
    added.sort();
    assert_eq!(
        added,
        vec![false, true],
        "one installs, the other finds it installed"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("log"))
            .unwrap()
            .lines()
            .count(),
        1,
        "rustup ran once"
    );
}

#[test]
fn no_rustup_says_what_to_do() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
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
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // This test crate's build script ran ensure_target for real before the guests built.
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let root = toolchain::sysroot(&rustc).unwrap();
    assert!(
        toolchain::target_installed(Path::new(&root), "wasm32-wasip2"),
        "{root} has no wasm32-wasip2"
    );
}
