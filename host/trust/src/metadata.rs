//! TUF-style signed metadata: the root (which keys are the root, how many must
//! sign), delegations (root vouches for a release key, for some model names,
//! until a date) and the revocation list.
//!
//! Each document is `{"signed": {...}, "signatures": [{"keyid", "sig"}]}`. The
//! signature covers a domain tag and the canonical JSON of `signed` (serde's
//! output for the typed struct: fixed field order, no maps), so a document is
//! only ever checked in the form it was parsed into.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasmops_sign::{PublicKey, SecretKey};

use crate::{Timestamp, TrustError};

/// Trust documents are small; anything bigger is refused before parsing.
pub const MAX_METADATA_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySignature {
    pub keyid: String,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    pub signed: T,
    pub signatures: Vec<KeySignature>,
}

/// A kind of signed document; the tag separates their signature domains.
pub trait Document: Serialize + DeserializeOwned {
    const KIND: &'static str;
    /// A short description for error messages.
    fn describe(&self) -> String;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    pub version: u64,
    pub expires: Timestamp,
    pub threshold: usize,
    /// Public keys in wasmsign2's encoding, hex.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delegation {
    /// A name for people and for the revocation list, e.g. `release-2026q4`.
    pub name: String,
    /// The release key, wasmsign2 encoding, hex.
    pub key: String,
    /// Model names this key may sign; `*` matches any run of characters.
    pub models: Vec<String>,
    /// Capabilities components signed by this key may claim; `None` for any the host grants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    pub issued: Timestamp,
    pub expires: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedKey {
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub revoked_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocations {
    /// Increases with every change; a device never goes back to an older list.
    pub version: u64,
    pub issued: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    pub keys: Vec<RevokedKey>,
    /// Delegation names revoked as a whole.
    pub delegations: Vec<String>,
}

impl Document for Root {
    const KIND: &'static str = "root";
    fn describe(&self) -> String {
        format!("root version {}", self.version)
    }
}

impl Document for Delegation {
    const KIND: &'static str = "delegation";
    fn describe(&self) -> String {
        format!("delegation `{}`", self.name)
    }
}

impl Document for Revocations {
    const KIND: &'static str = "revocations";
    fn describe(&self) -> String {
        format!("revocation list version {}", self.version)
    }
}

pub fn key_from_hex(hex_key: &str) -> Result<PublicKey, String> {
    let bytes = hex::decode(hex_key).map_err(|e| format!("key `{hex_key}` is not hex: {e}"))?;
    PublicKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

pub fn key_to_hex(key: &PublicKey) -> String {
    hex::encode(key.to_bytes())
}

fn message<T: Document>(doc: &T) -> Vec<u8> {
    let mut m = format!("wasmops-trust-v1\0{}\0", T::KIND).into_bytes();
    m.extend_from_slice(&serde_json::to_vec(doc).expect("metadata serialises"));
    m
}

impl Root {
    pub fn public_keys(&self) -> Result<Vec<PublicKey>, TrustError> {
        self.keys
            .iter()
            .map(|k| {
                key_from_hex(k).map_err(|reason| TrustError::MalformedMetadata {
                    what: self.describe(),
                    reason,
                })
            })
            .collect()
    }

    fn validate(&self) -> Result<(), TrustError> {
        let keys = self.public_keys()?;
        if self.threshold == 0 || self.threshold > keys.len() {
            return Err(TrustError::MalformedMetadata {
                what: self.describe(),
                reason: format!("threshold {} with {} key(s)", self.threshold, keys.len()),
            });
        }
        Ok(())
    }
}

impl Delegation {
    pub fn public_key(&self) -> Result<PublicKey, TrustError> {
        key_from_hex(&self.key).map_err(|reason| TrustError::MalformedMetadata {
            what: self.describe(),
            reason,
        })
    }

    /// Whether this delegation covers the model `name`.
    pub fn covers(&self, name: &str) -> bool {
        self.models.iter().any(|p| glob(p, name))
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, rest)) => {
            let Some(tail) = name.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|i| tail.is_char_boundary(*i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

impl<T: Document> Signed<T> {
    /// Signs `doc` with each of `keys`.
    pub fn sign(doc: T, keys: &[&SecretKey]) -> Signed<T> {
        let msg = message(&doc);
        let signatures = keys
            .iter()
            .map(|k| KeySignature {
                keyid: k.public().key_id(),
                sig: hex::encode(k.sign(&msg)),
            })
            .collect();
        Signed {
            signed: doc,
            signatures,
        }
    }

    /// Adds a signature by `key` (e.g. the second root key of a threshold).
    pub fn add_signature(&mut self, key: &SecretKey) {
        let msg = message(&self.signed);
        self.signatures.retain(|s| s.keyid != key.public().key_id());
        self.signatures.push(KeySignature {
            keyid: key.public().key_id(),
            sig: hex::encode(key.sign(&msg)),
        });
    }

    pub fn parse(bytes: &[u8]) -> Result<Signed<T>, TrustError> {
        let what = || format!("({} document)", T::KIND);
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(TrustError::MalformedMetadata {
                what: what(),
                reason: format!("{} bytes, more than {MAX_METADATA_BYTES}", bytes.len()),
            });
        }
        serde_json::from_slice(bytes).map_err(|e| TrustError::MalformedMetadata {
            what: what(),
            reason: e.to_string(),
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("metadata serialises")
    }

    /// How many distinct keys of `keys` signed this document.
    pub fn valid_signatures(&self, keys: &[PublicKey]) -> usize {
        let msg = message(&self.signed);
        keys.iter()
            .filter(|k| {
                let id = k.key_id();
                self.signatures
                    .iter()
                    .filter(|s| s.keyid == id)
                    .any(|s| hex::decode(&s.sig).is_ok_and(|sig| k.verify(&msg, &sig)))
            })
            .count()
    }

    /// Refuses the document unless at least `threshold` of `keys` signed it.
    pub fn check_signed_by(&self, keys: &[PublicKey], threshold: usize) -> Result<(), TrustError> {
        let valid = self.valid_signatures(keys);
        if valid < threshold.max(1) {
            return Err(TrustError::MetadataSignature {
                what: self.signed.describe(),
                valid,
                threshold: threshold.max(1),
            });
        }
        Ok(())
    }
}

impl Signed<Root> {
    /// A root document must also be valid on its own terms.
    pub fn validate(&self) -> Result<(), TrustError> {
        self.signed.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_a_shell() {
        assert!(glob("*", "anything"));
        assert!(glob("fraud-*", "fraud-v2"));
        assert!(!glob("fraud-*", "churn"));
        assert!(glob("*-eu", "churn-eu"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact") && !glob("exact", "exact2"));
    }

    #[test]
    fn signatures_cover_every_field_and_the_kind() {
        let k = SecretKey::from_seed([7; 32]);
        let root = Root {
            version: 1,
            expires: Timestamp::from_unix(2_000_000_000),
            threshold: 1,
            keys: vec![key_to_hex(&k.public())],
        };
        let signed = Signed::sign(root, &[&k]);
        assert_eq!(signed.valid_signatures(&[k.public()]), 1);
        let mut edited = signed.clone();
        edited.signed.version = 2;
        assert_eq!(edited.valid_signatures(&[k.public()]), 0);
        // A key that did not sign does not count.
        let other = SecretKey::from_seed([8; 32]);
        assert_eq!(signed.valid_signatures(&[other.public()]), 0);
        let reparsed = Signed::<Root>::parse(&signed.to_json()).unwrap();
        assert_eq!(reparsed.valid_signatures(&[k.public()]), 1);
    }
}
