// Shared by build.rs and tests/toolchain.rs (included with #[path]).
//
// Makes sure the Rust toolchain building the guests has the wasm target. rustup
// installs a `rust-toolchain.toml`'s targets only when it installs the toolchain
// itself; on a machine whose toolchain was there before the clone, the target is
// missing and the guest build used to fail after the host's 18-minute compile.

use std::path::Path;
use std::process::Command;

/// Whether `sysroot` (from `rustc --print sysroot`) has the standard library for `target`.
pub fn target_installed(sysroot: &Path, target: &str) -> bool {
    sysroot
        .join("lib/rustlib")
        .join(target)
        .join("lib")
        .is_dir()
}

/// The sysroot of the `rustc` at `rustc`.
pub fn sysroot(rustc: &str) -> Result<String, String> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {rustc}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{rustc} --print sysroot failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Adds `target` with `rustup` (for `toolchain` when known) unless the sysroot
/// already has it. Returns whether it had to add it.
pub fn ensure_target(
    rustc: &str,
    rustup: &str,
    toolchain: Option<&str>,
    target: &str,
) -> Result<bool, String> {
    let root = sysroot(rustc)?;
    if target_installed(Path::new(&root), target) {
        return Ok(false);
    }
    // Two build scripts may ask at once (the root package's and guest/artifacts');
    // one installs while the other waits here, then finds the target installed.
    let lock_path = std::env::temp_dir().join(format!("wasmops-rustup-{target}.lock"));
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    if target_installed(Path::new(&root), target) {
        return Ok(false);
    }
    let mut cmd = Command::new(rustup);
    cmd.args(["target", "add"]);
    if let Some(t) = toolchain {
        cmd.args(["--toolchain", t]);
    }
    cmd.arg(target);
    let status = cmd.status().map_err(|e| {
        format!("the Rust target {target} is not installed and rustup could not be run ({e}); install it with `rustup target add {target}` or your toolchain's equivalent")
    })?;
    if !status.success() {
        return Err(format!(
            "`rustup target add {target}` failed; the guests need it to build"
        ));
    }
    if !target_installed(Path::new(&root), target) {
        return Err(format!(
            "`rustup target add {target}` ran but {root} still has no {target} standard library"
        ));
    }
    Ok(true)
}
