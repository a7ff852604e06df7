// Shared by build.rs and tests/binaryen.rs (included with #[path]).
//
// binaryen's `wasm-opt`, which shrinks the guests' core modules (`-Oz`), run
// as the system's native binary: Debian's `binaryen` package, installed here
// when missing, as toolchain.rs adds the wasm target. Until session 40 the
// build compiled binaryen 116 from source (the `wasm-opt` crate): ~200 C++
// files at -O3, which on a new 2-core machine took 28 minutes (minutes 20–48
// of the CI run) and were the first link of the chain to the guests. Debian's
// binaryen 108 makes the MobileNet guest's core module 9.35 MB where 116 made
// 9.32 (0.25 % larger).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The oldest binaryen whose `-Oz` and feature flags the build relies on.
pub const MIN_VERSION: u32 = 108;

/// The version in `wasm-opt --version`'s output: `wasm-opt version 108`, or
/// `wasm-opt version 116 (version_116)`.
pub fn parse_version(out: &str) -> Option<u32> {
    let rest = out.trim().strip_prefix("wasm-opt version ")?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `wasm_opt`'s version, or why it cannot be used.
pub fn check(wasm_opt: &Path) -> Result<u32, String> {
    let out = Command::new(wasm_opt)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", wasm_opt.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = parse_version(&text).ok_or_else(|| {
        format!(
            "{} --version printed {:?}, not binaryen's `wasm-opt version N`",
            wasm_opt.display(),
            text.trim()
        )
    })?;
    if version < MIN_VERSION {
        return Err(format!(
            "{} is binaryen {version}; the guests need {MIN_VERSION} or newer",
            wasm_opt.display()
        ));
    }
    Ok(version)
}

/// `name` in one of `path`'s folders (a `PATH` value).
pub fn on_path(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The `wasm-opt` to run: `explicit` (`WASMOPS_WASM_OPT`) when given, else
/// the one on `path`; when there is none, Debian's `binaryen` is installed
/// with `apt_get` first (through `sudo -n` unless root). Returns it and
/// whether it was installed.
pub fn find_or_install(
    explicit: Option<PathBuf>,
    path: &std::ffi::OsStr,
    apt_get: &str,
) -> Result<(PathBuf, bool), String> {
    if let Some(p) = explicit {
        check(&p)?;
        return Ok((p, false));
    }
    if let Some(p) = on_path("wasm-opt", path) {
        check(&p)?;
        return Ok((p, false));
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let install = |update: bool| -> Result<bool, String> {
        let mut cmd = if root {
            Command::new(apt_get)
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", apt_get]);
            c
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd.args(["-o", "DPkg::Lock::Timeout=300", "-y", "-qq"]);
        if update {
            cmd.arg("update");
        } else {
            cmd.args(["install", "--no-install-recommends", "binaryen"]);
        }
        cmd.status()
            .map(|s| s.success())
            .map_err(|e| format!("cannot run {apt_get}: {e}"))
    };
    // A new machine may have no package lists yet: update, then try again.
    let installed = install(false)? || (install(true)? && install(false)?);
    let found = on_path("wasm-opt", path).filter(|_| installed);
    let p = found.ok_or_else(|| {
        format!(
            "binaryen's wasm-opt ({MIN_VERSION} or newer) is not installed and `{apt_get} install binaryen` did not install it; install binaryen, or set WASMOPS_WASM_OPT to a wasm-opt, or WASMOPS_GUEST_NO_WASM_OPT=1 to build the guests unshrunk"
        )
    })?;
    check(&p)?;
    Ok((p, true))
}
