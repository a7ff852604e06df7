//! How the guest build finds binaryen's `wasm-opt`: the one given, else the
//! one on PATH, else Debian's package installed with apt-get (here stand-in
//! scripts that print a version, and an apt-get that records its arguments).

#[path = "../binaryen.rs"]
mod binaryen;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One test at a time: a script written while another thread forks can fail
/// to execute (ETXTBSY), as the child briefly holds the write handle.
static SERIAL: Mutex<()> = Mutex::new(());

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn fake_wasm_opt(dir: &Path, version: &str) -> PathBuf {
    let p = dir.join("wasm-opt");
    script(&p, &format!("echo 'wasm-opt version {version}'"));
    p
}

#[test]
fn versions_are_read_from_both_spellings() {
    assert_eq!(binaryen::parse_version("wasm-opt version 108\n"), Some(108));
    assert_eq!(
        binaryen::parse_version("wasm-opt version 116 (version_116)"),
        Some(116)
    );
    assert_eq!(binaryen::parse_version("wasm-tools 1.0"), None);
    assert_eq!(binaryen::parse_version("wasm-opt version x"), None);
}

#[test]
fn an_old_or_foreign_wasm_opt_is_refused_with_its_version() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let old = fake_wasm_opt(dir.path(), "90");
    let e = binaryen::check(&old).unwrap_err();
    assert!(e.contains("binaryen 90") && e.contains("108"), "{e}");
    let other = dir.path().join("other");
    script(&other, "echo 'something else'");
    let e = binaryen::check(&other).unwrap_err();
    assert!(e.contains("something else"), "{e}");
    let e = binaryen::check(&dir.path().join("missing")).unwrap_err();
    assert!(e.contains("cannot run"), "{e}");
}

#[test]
fn the_given_one_then_path_then_apt_get() {
    let _serial = SERIAL.lock().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (given, bin) = (dir.path().join("given"), dir.path().join("bin"));
    std::fs::create_dir_all(&given).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.path().join("apt.log");
    // apt-get: records its arguments; `install` puts a wasm-opt on PATH.
    let apt = dir.path().join("apt-get");
    script(
        &apt,
        &format!(
            "echo \"$@\" >> {log}\ncase \"$*\" in *install*) printf '#!/bin/sh\\necho wasm-opt version 108\\n' > {w}; chmod +x {w};; esac",
            log = log.display(),
            w = bin.join("wasm-opt").display()
        ),
    );
    let apt = apt.to_str().unwrap();
    let path = bin.as_os_str();

    // Given explicitly: used as it is, nothing installed.
    let explicit = fake_wasm_opt(&given, "116");
    let (p, installed) = binaryen::find_or_install(Some(explicit.clone()), path, apt).unwrap();
    assert_eq!((p, installed), (explicit, false));
    assert!(!log.exists(), "apt-get ran with a wasm-opt given");

    // None anywhere: apt-get installs binaryen, and its wasm-opt is used.
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        .trim_ascii()
        == b"0";
    if root {
        let (p, installed) = binaryen::find_or_install(None, path, apt).unwrap();
        assert_eq!((p, installed), (bin.join("wasm-opt"), true));
        let calls = std::fs::read_to_string(&log).unwrap();
        assert!(
            calls.contains("install --no-install-recommends binaryen"),
            "{calls}"
        );
        std::fs::remove_file(&log).unwrap();
    } else {
        fake_wasm_opt(&bin, "108");
    }

    // On PATH: found there, nothing installed.
    let (p, installed) = binaryen::find_or_install(None, path, apt).unwrap();
    assert_eq!((p, installed), (bin.join("wasm-opt"), false));
    assert!(!log.exists(), "apt-get ran with a wasm-opt on PATH");

    // An apt-get that installs nothing: the error says what to do.
    std::fs::remove_file(bin.join("wasm-opt")).unwrap();
    let failing = dir.path().join("apt-fails");
    script(&failing, "exit 100");
    let e = binaryen::find_or_install(None, path, failing.to_str().unwrap()).unwrap_err();
    assert!(
        e.contains("WASMOPS_WASM_OPT") && e.contains("install binaryen"),
        "{e}"
    );
}
