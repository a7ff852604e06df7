//! The page's Rust. First, the browser's trust check: the same
//! [`wasmops_trust::TrustPolicy`] the host applies before it runs a
//! component, compiled to
//! `wasm32-unknown-unknown` (`guest/artifacts` builds it; `wasmops web` ships
//! it as `verifier.wasm`).
//!
//! Data path in the page: the worker fetches the signed component, copies it
//! and the trust document ([`wasmops_trust::PortableTrust`]) into this
//! module's memory, calls [`wasmops_verify`] with the clock, and reads back a
//! JSON [`Verdict`]. When it is accepted, the verdict lists where the core
//! modules lie inside the *verified* bytes: the page compiles those slices,
//! so what runs is what was checked.
//!
//! The same module carries the page's telemetry ([`telemetry`]): the
//! agent's counting code, so a browser reports as a device does.
//!
//! The ABI is plain C (no bindgen): `wasmops_alloc`/`wasmops_free` for
//! buffers, and a result buffer of a little-endian `u32` length and the JSON.

pub mod telemetry;

use serde::Serialize;
use wasmops_trust::{Claims, PortableTrust, Timestamp, TrustPolicy};

/// What the page learns: accepted with the facts to show, or refused with the
/// reason, worded as the host words it.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Verdict {
    Accepted {
        /// SHA-256 of the signed content (the component without its signature).
        content_sha256: String,
        /// The key id of the signature that checked out.
        signer: String,
        delegation: Option<String>,
        claims: Option<Box<Claims>>,
        /// `[offset, length]` of each top-level core module, in order.
        modules: Vec<[usize; 2]>,
    },
    Refused {
        reason: String,
    },
}

/// Checks `wasm` against `trust` as of `now` (seconds since the epoch: the
/// browser has no system clock to ask from inside wasm).
pub fn verify(wasm: &[u8], trust: &[u8], now: u64) -> Verdict {
    match check(wasm, trust, now) {
        Ok(v) => v,
        Err(reason) => Verdict::Refused { reason },
    }
}

fn check(wasm: &[u8], trust: &[u8], now: u64) -> Result<Verdict, String> {
    let policy = TrustPolicy {
        now: Some(Timestamp::from_unix(now)),
        ..PortableTrust::parse(trust)
            .and_then(|t| t.policy())
            .map_err(|e| e.to_string())?
    };
    let accepted = policy.check(wasm).map_err(|e| e.to_string())?;
    let sections = wasmops_sign::sections(wasm).map_err(|e| e.to_string())?;
    let base = wasm.as_ptr() as usize;
    // Component-model section id 1: a core module.
    let modules = sections
        .iter()
        .filter(|s| s.id == 1)
        .map(|s| [s.contents.as_ptr() as usize - base, s.contents.len()])
        .collect();
    Ok(Verdict::Accepted {
        content_sha256: hex::encode(accepted.verified.content_sha256),
        signer: accepted.verified.key_id,
        delegation: accepted.delegation,
        claims: accepted.claims.map(Box::new),
        modules,
    })
}

/// A buffer of `len` bytes in this module's memory, for the page to fill.
#[unsafe(no_mangle)]
pub extern "C" fn wasmops_alloc(len: usize) -> *mut u8 {
    let mut buf = Vec::<u8>::with_capacity(len);
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr
}

/// Frees a buffer from [`wasmops_alloc`] or [`wasmops_verify`].
///
/// # Safety
/// `ptr` and `len` must be exactly what one of those returned or was given.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wasmops_free(ptr: *mut u8, len: usize) {
    drop(unsafe { Vec::from_raw_parts(ptr, 0, len) });
}

/// Verifies the component at `wasm` against the trust document at `trust`;
/// returns a buffer: `u32` length (little-endian), then the [`Verdict`] JSON.
/// `now` is seconds since the epoch (a JS number).
///
/// # Safety
/// Both ranges must be readable buffers from [`wasmops_alloc`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wasmops_verify(
    wasm: *const u8,
    wasm_len: usize,
    trust: *const u8,
    trust_len: usize,
    now: f64,
) -> *mut u8 {
    let (wasm, trust) = unsafe {
        (
            std::slice::from_raw_parts(wasm, wasm_len),
            std::slice::from_raw_parts(trust, trust_len),
        )
    };
    result_buffer(
        &serde_json::to_vec(&verify(wasm, trust, now.max(0.0) as u64)).expect("verdicts serialise"),
    )
}

/// A result buffer for the page: `u32` length (little-endian), then `json`;
/// the page frees it with [`wasmops_free`] (length + 4).
fn result_buffer(json: &[u8]) -> *mut u8 {
    let mut out = Vec::with_capacity(4 + json.len());
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json);
    let ptr = wasmops_alloc(out.len());
    unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), ptr, out.len()) };
    ptr
}

/// getrandom's source on `wasm32-unknown-unknown` (built with
/// `--cfg getrandom_backend="custom"`): verification needs no randomness,
/// and key generation, the one user, is not reachable from here.
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
#[unsafe(no_mangle)]
unsafe extern "Rust" fn __getrandom_v03_custom(
    _dest: *mut u8,
    _len: usize,
) -> Result<(), getrandom::Error> {
    Err(getrandom::Error::UNSUPPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_sign::SecretKey;

    /// A component with one core module and a custom section, signed.
    fn component(key: &SecretKey) -> Vec<u8> {
        let module = b"\0asm\x01\0\0\0";
        let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
        wasmops_sign::write_section(&mut wasm, 1, module);
        wasmops_sign::sign(&wasm, key).unwrap()
    }

    fn trust(key: &SecretKey) -> Vec<u8> {
        PortableTrust::from_policy(&TrustPolicy::keys(vec![key.public()]))
            .to_json()
            .into_bytes()
    }

    #[test]
    fn accepts_what_the_key_signed_and_points_at_its_core_module() {
        let key = SecretKey::from_seed([3; 32]);
        let wasm = component(&key);
        let json = serde_json::to_value(verify(&wasm, &trust(&key), 1_800_000_000)).unwrap();
        assert_eq!(json["status"], "accepted", "{json}");
        assert_eq!(json["signer"], key.public().key_id());
        let [offset, len] = [
            json["modules"][0][0].as_u64().unwrap() as usize,
            json["modules"][0][1].as_u64().unwrap() as usize,
        ];
        assert_eq!(&wasm[offset..offset + len], b"\0asm\x01\0\0\0");
    }

    #[test]
    fn refuses_a_flipped_byte_and_another_key_with_the_reason() {
        let key = SecretKey::from_seed([3; 32]);
        let mut wasm = component(&key);
        let other = SecretKey::from_seed([4; 32]);
        let reason = |v: Verdict| match v {
            Verdict::Refused { reason } => reason,
            accepted => panic!("accepted: {accepted:?}"),
        };
        let untrusted = reason(verify(&wasm, &trust(&other), 0));
        assert!(untrusted.contains("key"), "{untrusted}");
        wasm[12] ^= 1;
        let tampered = reason(verify(&wasm, &trust(&key), 0));
        assert!(!tampered.is_empty());
        let no_trust = reason(verify(&wasm, b"{}", 0));
        assert!(no_trust.contains("trusts no key"), "{no_trust}");
    }

    #[test]
    fn the_c_abi_round_trips() {
        let key = SecretKey::from_seed([3; 32]);
        let (wasm, trust) = (component(&key), trust(&key));
        let out =
            unsafe { wasmops_verify(wasm.as_ptr(), wasm.len(), trust.as_ptr(), trust.len(), 0.0) };
        let len = u32::from_le_bytes(
            unsafe { std::slice::from_raw_parts(out, 4) }
                .try_into()
                .unwrap(),
        ) as usize;
        let json: serde_json::Value =
            serde_json::from_slice(unsafe { std::slice::from_raw_parts(out.add(4), len) }).unwrap();
        assert_eq!(json["status"], "accepted");
        unsafe { wasmops_free(out, 4 + len) };
    }
}
