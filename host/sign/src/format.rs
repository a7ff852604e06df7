//! Section framing shared by core modules and components, and the signature payload.

use crate::SignError;

/// One top-level section, borrowed from the binary.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    pub id: u8,
    /// Offset of the section's id byte in the binary.
    pub offset: usize,
    /// The whole section: id, size and contents.
    pub raw: &'a [u8],
    pub contents: &'a [u8],
}

impl<'a> Section<'a> {
    pub fn custom_name(&self) -> Option<&'a str> {
        if self.id != 0 {
            return None;
        }
        let mut r = Reader {
            data: self.contents,
            pos: 0,
        };
        let len = r.leb().ok()? as usize;
        let name = r.take(len).ok()?;
        std::str::from_utf8(name).ok()
    }

    pub fn custom_payload(&self) -> Option<&'a [u8]> {
        self.custom_name()?;
        let mut r = Reader {
            data: self.contents,
            pos: 0,
        };
        let len = r.leb().ok()? as usize;
        r.take(len).ok()?;
        Some(&self.contents[r.pos..])
    }
}

pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn leb(&mut self) -> Result<u64, SignError> {
        let mut result = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = *self
                .data
                .get(self.pos)
                .ok_or_else(|| SignError::Malformed("truncated LEB128".into()))?;
            self.pos += 1;
            result |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(result);
            }
        }
        Err(SignError::Malformed("LEB128 longer than 5 bytes".into()))
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], SignError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| {
                SignError::Malformed(format!(
                    "{n} bytes wanted at offset {} but only {} remain",
                    self.pos,
                    self.data.len() - self.pos
                ))
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

const MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];

/// Splits a module or component into its top-level sections, refusing truncation.
pub fn sections(wasm: &[u8]) -> Result<Vec<Section<'_>>, SignError> {
    if wasm.len() < 8 || (wasm[..8] != MODULE_HEADER && wasm[..8] != COMPONENT_HEADER) {
        return Err(SignError::NotWasm);
    }
    let mut r = Reader { data: wasm, pos: 8 };
    let mut out = vec![];
    while r.pos < wasm.len() {
        let offset = r.pos;
        let id = wasm[offset];
        r.pos += 1;
        let size = r.leb()? as usize;
        let contents = r.take(size).map_err(|_| {
            SignError::Malformed(format!(
                "section {} at offset {offset} is truncated",
                out.len()
            ))
        })?;
        out.push(Section {
            id,
            offset,
            raw: &wasm[offset..r.pos],
            contents,
        });
    }
    Ok(out)
}

/// Appends `v` as an unsigned LEB128, the encoding of every wasm size and count.
pub fn put_leb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

pub(crate) fn put_slice(out: &mut Vec<u8>, s: &[u8]) {
    put_leb(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends a section: its id, its size and `contents`.
pub fn write_section(out: &mut Vec<u8>, id: u8, contents: &[u8]) {
    out.push(id);
    put_slice(out, contents);
}

pub(crate) fn write_custom_section(out: &mut Vec<u8>, name: &str, payload: &[u8]) {
    let mut contents = vec![];
    put_slice(&mut contents, name.as_bytes());
    contents.extend_from_slice(payload);
    write_section(out, 0, &contents);
}

/// The `signature` section payload for one hash signed by one key.
pub fn signature_section_payload(hash: &[u8; 32], key_id: &[u8], signature: &[u8; 64]) -> Vec<u8> {
    let mut sig = vec![];
    put_slice(&mut sig, key_id);
    sig.push(crate::ALG_ED25519);
    put_slice(&mut sig, signature);

    let mut signed_hashes = vec![];
    put_leb(&mut signed_hashes, 1);
    signed_hashes.extend_from_slice(hash);
    put_leb(&mut signed_hashes, 1);
    put_slice(&mut signed_hashes, &sig);

    let mut out = vec![];
    for b in [
        crate::SPEC_VERSION,
        crate::CONTENT_TYPE_MODULE,
        crate::HASH_SHA256,
    ] {
        put_leb(&mut out, b.into());
    }
    put_leb(&mut out, 1);
    put_slice(&mut out, &signed_hashes);
    out
}

pub(crate) struct SignatureEntry {
    pub key_id: Vec<u8>,
    pub signature: Vec<u8>,
}

pub(crate) struct SignedHashes {
    pub hashes: Vec<[u8; 32]>,
    pub signatures: Vec<SignatureEntry>,
}

/// Bounds over the whole section (wasmsign2 bounds each set the same way, but
/// 64 sets of 64 hashes and 256 signatures each would still be ~10^6
/// Ed25519 checks). A real section has one set, one hash and a few
/// signatures; more than this is an attack, not a signature.
pub(crate) const MAX_HASHES: u64 = 64;
pub(crate) const MAX_SIGNATURES: u64 = 64;

pub(crate) fn parse_signature_payload(payload: &[u8]) -> Result<Vec<SignedHashes>, SignError> {
    let bad = |m: &str| SignError::MalformedSignature(m.to_string());
    let wrap = |e: SignError| SignError::MalformedSignature(e.to_string());
    let mut r = Reader {
        data: payload,
        pos: 0,
    };
    let (version, content, hash_fn) = (
        r.leb().map_err(wrap)?,
        r.leb().map_err(wrap)?,
        r.leb().map_err(wrap)?,
    );
    if version != u64::from(crate::SPEC_VERSION)
        || content != u64::from(crate::CONTENT_TYPE_MODULE)
        || hash_fn != u64::from(crate::HASH_SHA256)
    {
        return Err(SignError::MalformedSignature(format!(
            "unsupported version/content type/hash function {version}/{content}/{hash_fn}"
        )));
    }
    let sets = r.leb().map_err(wrap)?;
    if sets > MAX_HASHES {
        return Err(bad("too many signed hash sets"));
    }
    let mut out = vec![];
    let (mut all_hashes, mut all_signatures) = (0, 0);
    for _ in 0..sets {
        let len = r.leb().map_err(wrap)? as usize;
        let mut s = Reader {
            data: r.take(len).map_err(wrap)?,
            pos: 0,
        };
        let n_hashes = s.leb().map_err(wrap)?;
        all_hashes += n_hashes;
        if all_hashes > MAX_HASHES {
            return Err(bad(&format!("more than {MAX_HASHES} hashes")));
        }
        let mut hashes = vec![];
        for _ in 0..n_hashes {
            hashes.push(<[u8; 32]>::try_from(s.take(32).map_err(wrap)?).unwrap());
        }
        let n_sigs = s.leb().map_err(wrap)?;
        all_signatures += n_sigs;
        if all_signatures > MAX_SIGNATURES {
            return Err(bad(&format!("more than {MAX_SIGNATURES} signatures")));
        }
        let mut signatures = vec![];
        for _ in 0..n_sigs {
            let len = s.leb().map_err(wrap)? as usize;
            let mut e = Reader {
                data: s.take(len).map_err(wrap)?,
                pos: 0,
            };
            let key_len = e.leb().map_err(wrap)? as usize;
            let key_id = e.take(key_len).map_err(wrap)?.to_vec();
            let alg = e.take(1).map_err(wrap)?[0];
            let sig_len = e.leb().map_err(wrap)? as usize;
            let signature = e.take(sig_len).map_err(wrap)?.to_vec();
            // Like wasmsign2, skip algorithms we do not know rather than fail the whole section.
            if alg == crate::ALG_ED25519 {
                signatures.push(SignatureEntry { key_id, signature });
            }
        }
        out.push(SignedHashes { hashes, signatures });
    }
    if r.pos != payload.len() {
        return Err(bad("trailing bytes after the signed hash sets"));
    }
    Ok(out)
}
