//! Embedded Ed25519 signatures for Wasm modules and components.
//!
//! The layout is the WebAssembly tool-conventions one (`Signatures.md`) that
//! `wasmsign2` implements, so `wasmsign2 verify` accepts our components and we
//! accept its signatures:
//!
//! * the first section after the 8-byte header is a custom section named `signature`;
//! * it holds the SHA-256 of every byte after it, signed over
//!   `"wasmsig" || version(1) || content_type(1) || hash_fn(1) || hash`.
//!
//! Key files use wasmsign2's raw encodings: public `0x01 || 32 bytes`,
//! secret `0x81 || seed(32) || public(32)`.

mod format;
mod keys;

pub use format::{Section, put_leb, sections, signature_section_payload, write_section};
pub use keys::{PublicKey, SecretKey};

use sha2::{Digest, Sha256};
use thiserror::Error;

pub const SIGNATURE_SECTION: &str = "signature";
const DOMAIN: &[u8] = b"wasmsig";
const SPEC_VERSION: u8 = 0x01;
const CONTENT_TYPE_MODULE: u8 = 0x01;
const HASH_SHA256: u8 = 0x01;
const ALG_ED25519: u8 = 0x01;
/// Ed25519 checks spent finding out whether a refused component was tampered
/// with rather than signed by a stranger.
const MAX_STALE_CHECKS: usize = 16;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SignError {
    #[error("not a WebAssembly module or component (bad magic/version header)")]
    NotWasm,
    #[error("malformed WebAssembly: {0}")]
    Malformed(String),
    #[error("the component is not signed (no `signature` section first)")]
    Unsigned,
    #[error("malformed signature section: {0}")]
    MalformedSignature(String),
    #[error(
        "no signature by a trusted key ({signatures} signature(s) present; trusted key ids {trusted:?})"
    )]
    UntrustedKey {
        signatures: usize,
        trusted: Vec<String>,
    },
    #[error("signature does not match the content: the component was modified after signing")]
    Tampered,
    #[error("invalid key file: {0}")]
    BadKey(String),
}

/// The signed payload of one component: its content hash and who vouched for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub content_sha256: [u8; 32],
    pub key_id: String,
}

fn message(hash: &[u8; 32]) -> Vec<u8> {
    let mut msg = DOMAIN.to_vec();
    msg.extend_from_slice(&[SPEC_VERSION, CONTENT_TYPE_MODULE, HASH_SHA256]);
    msg.extend_from_slice(hash);
    msg
}

/// Signs `wasm`, replacing any signature it already had. The result is one file.
pub fn sign(wasm: &[u8], key: &SecretKey) -> Result<Vec<u8>, SignError> {
    let secs = sections(wasm)?;
    let mut body = Vec::with_capacity(wasm.len());
    for s in secs
        .iter()
        .filter(|s| s.custom_name() != Some(SIGNATURE_SECTION))
    {
        body.extend_from_slice(s.raw);
    }
    let hash = content_hash(&body);
    let signature = key.sign(&message(&hash));
    // No key id, like `wasmsign2 sign` without `--public-key-id`: its verifier skips
    // signatures whose key id differs from the id it derives, so an id we choose
    // would make wasmsign2 refuse us. Verifiers try each trusted key instead.
    let payload = signature_section_payload(&hash, &[], &signature);
    let mut out = Vec::with_capacity(wasm.len() + payload.len() + 32);
    out.extend_from_slice(&wasm[..8]);
    format::write_custom_section(&mut out, SIGNATURE_SECTION, &payload);
    out.extend_from_slice(&body);
    Ok(out)
}

/// Returns `wasm` without its signature and with `payload` as the only custom
/// section called `name`, placed first so readers find it without a full scan.
/// (`None` removes the section.) Sign the result afterwards: the signature covers it.
pub fn set_custom_section(
    wasm: &[u8],
    name: &str,
    payload: Option<&[u8]>,
) -> Result<Vec<u8>, SignError> {
    let secs = sections(wasm)?;
    let mut out = Vec::with_capacity(wasm.len() + payload.map_or(0, |p| p.len() + 16));
    out.extend_from_slice(&wasm[..8]);
    if let Some(payload) = payload {
        format::write_custom_section(&mut out, name, payload);
    }
    for s in secs
        .iter()
        .filter(|s| !matches!(s.custom_name(), Some(n) if n == name || n == SIGNATURE_SECTION))
    {
        out.extend_from_slice(s.raw);
    }
    Ok(out)
}

/// The payloads of every custom section called `name`, in order.
pub fn custom_sections<'a>(wasm: &'a [u8], name: &str) -> Result<Vec<&'a [u8]>, SignError> {
    Ok(sections(wasm)?
        .into_iter()
        .filter(|s| s.custom_name() == Some(name))
        .filter_map(|s| s.custom_payload())
        .collect())
}

/// Checks that `wasm` carries a valid signature by one of `trusted`, over all of its content.
pub fn verify(wasm: &[u8], trusted: &[PublicKey]) -> Result<Verified, SignError> {
    let secs = sections(wasm)?;
    let first = secs.first().ok_or(SignError::Unsigned)?;
    if first.custom_name() != Some(SIGNATURE_SECTION) {
        return match secs
            .iter()
            .position(|s| s.custom_name() == Some(SIGNATURE_SECTION))
        {
            Some(i) => Err(SignError::MalformedSignature(format!(
                "the `signature` section must be the first section, found it at section {i}"
            ))),
            None => Err(SignError::Unsigned),
        };
    }
    if secs[1..]
        .iter()
        .any(|s| s.custom_name() == Some(SIGNATURE_SECTION))
    {
        return Err(SignError::MalformedSignature(
            "more than one `signature` section".into(),
        ));
    }
    let signed = format::parse_signature_payload(first.custom_payload().unwrap_or_default())?;
    let body_start = first.offset + first.raw.len();
    let hash = content_hash(&wasm[body_start..]);
    // Only a set that names this content's hash can accept it, so each of its
    // signatures is checked once per trusted key: at most MAX_SIGNATURES × keys
    // Ed25519 checks, whatever the section holds.
    let signatures: usize = signed.iter().map(|s| s.signatures.len()).sum();
    let content = message(&hash);
    for set in signed.iter().filter(|s| s.hashes.contains(&hash)) {
        for (sig, key) in candidates(set, trusted) {
            if key.verify(&content, &sig.signature) {
                return Ok(Verified {
                    content_sha256: hash,
                    key_id: key.key_id(),
                });
            }
        }
    }
    // Was it signed by a trusted key, over other content? Then it was modified
    // after signing (a clearer error than "untrusted"). Checked on the first
    // hash of each set only, and for a bounded number of pairs.
    let genuine_but_stale = signed
        .iter()
        .filter_map(|set| set.hashes.first().map(|h| (set, message(h))))
        .flat_map(|(set, msg)| candidates(set, trusted).map(move |c| (c, msg.clone())))
        .take(MAX_STALE_CHECKS)
        .any(|((sig, key), msg)| key.verify(&msg, &sig.signature));
    // A trusted key really signed a hash, just not this content's: it was modified.
    if genuine_but_stale {
        return Err(SignError::Tampered);
    }
    Err(SignError::UntrustedKey {
        signatures,
        trusted: trusted.iter().map(PublicKey::key_id).collect(),
    })
}

/// SHA-256 of `content`, fed in 64 KiB pieces: the same digest, but a
/// browser engine (V8 runs wasm in a baseline tier first and uses optimised
/// code only from the next call of a function) reaches the optimised
/// compression function after a few pieces instead of hashing a whole
/// component in baseline code: the page's first verification of a 6 MB
/// component took 229 ms in one call.
fn content_hash(content: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for piece in content.chunks(64 << 10) {
        hasher.update(piece);
    }
    hasher.finalize().into()
}

/// Each (signature, trusted key) pair worth an Ed25519 check: well-formed
/// signatures, and keys their key id (if any) names.
fn candidates<'a>(
    set: &'a format::SignedHashes,
    trusted: &'a [PublicKey],
) -> impl Iterator<Item = (&'a format::SignatureEntry, &'a PublicKey)> {
    set.signatures
        .iter()
        .filter(|sig| sig.signature.len() == 64)
        .flat_map(move |sig| {
            trusted
                .iter()
                .filter(|k| sig.key_id.is_empty() || sig.key_id == k.key_id_bytes())
                .map(move |k| (sig, k))
        })
}

#[cfg(test)]
mod tests;
