//! A trust policy as one JSON document, for hosts that have no files: the
//! browser bundle `wasmops web` writes carries it, and the page hands it to the
//! verifier compiled to `wasm32-unknown-unknown`.
//!
//! ```json
//! {"keys": ["01ab…"]}                                  plain release keys
//! {"root": ["01cd…"], "metadata": {"roots": […], …}}   a root and what it signs
//! ```
//!
//! Keys are hex of the `.pub` file's bytes; `metadata` is what
//! `GET /v1/trust` serves. Rollback state does not travel: a page has none.

use serde::{Deserialize, Serialize};

use crate::metadata::{key_from_hex, key_to_hex};
use crate::{KeySource, TrustError, TrustMetadata, TrustPolicy};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortableTrust {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TrustMetadata>,
}

fn malformed(reason: impl Into<String>) -> TrustError {
    TrustError::MalformedMetadata {
        what: "trust document".into(),
        reason: reason.into(),
    }
}

impl PortableTrust {
    /// What `policy` trusts, without its state directory or clock.
    pub fn from_policy(policy: &TrustPolicy) -> PortableTrust {
        match &policy.keys {
            KeySource::Keys(keys) => PortableTrust {
                keys: keys.iter().map(key_to_hex).collect(),
                root: vec![],
                metadata: None,
            },
            KeySource::Root { anchor, .. } => PortableTrust {
                keys: vec![],
                root: anchor.iter().map(key_to_hex).collect(),
                metadata: policy.metadata(),
            },
        }
    }

    pub fn parse(bytes: &[u8]) -> Result<PortableTrust, TrustError> {
        serde_json::from_slice(bytes).map_err(|e| malformed(e.to_string()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("trust documents serialise")
    }

    /// The policy this document describes: either keys, or a root with its
    /// metadata; never both, never neither.
    pub fn policy(&self) -> Result<TrustPolicy, TrustError> {
        let hex_keys = |keys: &[String]| -> Result<Vec<_>, TrustError> {
            keys.iter()
                .map(|k| key_from_hex(k).map_err(malformed))
                .collect()
        };
        match (self.keys.is_empty(), self.root.is_empty(), &self.metadata) {
            (false, true, None) => Ok(TrustPolicy::keys(hex_keys(&self.keys)?)),
            (true, false, Some(metadata)) => {
                Ok(TrustPolicy::root(hex_keys(&self.root)?, metadata.clone()))
            }
            (true, false, None) => Err(malformed("a root key needs the metadata it signs")),
            (true, true, _) => Err(malformed(
                "it trusts no key: give `keys`, or `root` with `metadata`",
            )),
            (false, false, _) | (false, true, Some(_)) => Err(malformed(
                "give either release `keys` or a `root` with its `metadata`, not both",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_sign::SecretKey;

    #[test]
    fn keys_round_trip_and_half_documents_are_refused() {
        let key = SecretKey::from_seed([7; 32]).public();
        let doc = PortableTrust::from_policy(&TrustPolicy::keys(vec![key.clone()]));
        let back = PortableTrust::parse(doc.to_json().as_bytes()).unwrap();
        assert_eq!(back, doc);
        match back.policy().unwrap().keys {
            KeySource::Keys(keys) => assert_eq!(keys[0].key_id(), key.key_id()),
            other => panic!("expected keys, got {other:?}"),
        }
        for bad in [
            r#"{}"#,
            r#"{"root": ["01"]}"#,
            r#"{"keys": ["zz"]}"#,
            r#"{"keys": [], "extra": 1}"#,
        ] {
            let err = PortableTrust::parse(bad.as_bytes()).and_then(|d| d.policy());
            assert!(err.is_err(), "{bad} was accepted");
        }
    }
}
