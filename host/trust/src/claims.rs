//! Signed claims: what a component says it is, in a custom section that the
//! component's signature covers, so claims cannot be swapped or edited.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Timestamp, TrustError};

pub const CLAIMS_SECTION: &str = "wasmops-claims";
/// Anything bigger is refused before parsing. Room for the largest claims
/// `build` writes: a profile of 4096 feature columns (19 edges, 20 counts and
/// 7 quantiles each, ≈ 850 bytes of JSON a column: ≈ 3.5 MB).
pub const MAX_CLAIMS_BYTES: usize = 4 << 20;
const FORMAT: u32 = 1;

/// Where a model came from (MLflow-style lineage), all optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_run: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub format: u32,
    pub name: String,
    /// Semantic version, for people.
    pub version: String,
    /// Monotonically increasing per name, for machines: rollback protection.
    pub sequence: u64,
    /// SHA-256 of the source model (the ONNX file) and of the pipeline TOML text.
    pub model_sha256: String,
    pub pipeline_sha256: String,
    #[serde(default)]
    pub lineage: Lineage,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// Host capabilities the component needs (`random`, `clocks`, `stdio`, ...).
    #[serde(default)]
    pub capabilities: Vec<String>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// The training data's reference profile (`build --training-data`):
    /// devices count live values into its bins and categories, and the
    /// coordinator judges drift and data quality against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<wasmops_profile::Profile>,
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

impl Claims {
    pub fn new(name: &str, version: &str, sequence: u64, model: &[u8], pipeline: &str) -> Claims {
        Claims {
            format: FORMAT,
            name: name.into(),
            version: version.into(),
            sequence,
            model_sha256: crate::sha256_hex(model),
            pipeline_sha256: crate::sha256_hex(pipeline.as_bytes()),
            lineage: Lineage::default(),
            metrics: BTreeMap::new(),
            capabilities: vec![],
            created_at: Timestamp::now(),
            expires_at: None,
            profile: None,
        }
    }

    /// Every rule a claims document must follow, whoever wrote it.
    pub fn validate(&self) -> Result<(), TrustError> {
        let bad = |m: String| Err(TrustError::MalformedClaims(m));
        if self.format != FORMAT {
            return bad(format!(
                "unknown claims format {} (this wasmops reads {FORMAT})",
                self.format
            ));
        }
        if self.name.is_empty()
            || self.name.len() > 128
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return bad(format!(
                "model name `{}` must be 1-128 characters of [A-Za-z0-9-_.]",
                self.name
            ));
        }
        if let Err(e) = semver::Version::parse(&self.version) {
            return bad(format!("version `{}` is not semver: {e}", self.version));
        }
        for (what, h) in [
            ("model_sha256", &self.model_sha256),
            ("pipeline_sha256", &self.pipeline_sha256),
        ] {
            if !is_sha256_hex(h) {
                return bad(format!("{what} must be 64 lowercase hex digits"));
            }
        }
        if let Some(h) = &self.lineage.dataset_sha256
            && !is_sha256_hex(h)
        {
            return bad("lineage.dataset_sha256 must be 64 lowercase hex digits".into());
        }
        if let Some(p) = &self.profile
            && let Err(e) = p.validate()
        {
            return bad(format!("profile: {e}"));
        }
        if let Some((k, v)) = self.metrics.iter().find(|(_, v)| !v.is_finite()) {
            return bad(format!("metric `{k}` is {v}; metrics must be finite"));
        }
        if let Some(c) = self
            .capabilities
            .iter()
            .find(|c| c.is_empty() || !c.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
        {
            return bad(format!(
                "capability `{c}` must be lowercase letters and dashes"
            ));
        }
        if let Some(exp) = self.expires_at
            && exp <= self.created_at
        {
            return bad(format!(
                "expires_at {exp} is not after created_at {}",
                self.created_at
            ));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("claims serialise")
    }

    /// Parses and validates one claims payload.
    pub fn parse(bytes: &[u8]) -> Result<Claims, TrustError> {
        if bytes.len() > MAX_CLAIMS_BYTES {
            return Err(TrustError::MalformedClaims(format!(
                "{} bytes, more than the {MAX_CLAIMS_BYTES} allowed",
                bytes.len()
            )));
        }
        let claims: Claims = serde_json::from_slice(bytes)
            .map_err(|e| TrustError::MalformedClaims(e.to_string()))?;
        claims.validate()?;
        Ok(claims)
    }

    /// The claims embedded in `wasm`: `None` without a claims section, an error
    /// for more than one or for malformed ones.
    pub fn read(wasm: &[u8]) -> Result<Option<Claims>, TrustError> {
        match wasmops_sign::custom_sections(wasm, CLAIMS_SECTION)?.as_slice() {
            [] => Ok(None),
            [one] => Claims::parse(one).map(Some),
            many => Err(TrustError::MalformedClaims(format!(
                "{} `{CLAIMS_SECTION}` sections; there must be one",
                many.len()
            ))),
        }
    }

    /// `wasm` with these claims in place of any it had, and without a signature
    /// (sign it next).
    pub fn embed(&self, wasm: &[u8]) -> Result<Vec<u8>, TrustError> {
        self.validate()?;
        Ok(wasmops_sign::set_custom_section(
            wasm,
            CLAIMS_SECTION,
            Some(&self.to_json()),
        )?)
    }

    /// Whether the claims have expired at `now`.
    pub fn check_expiry(&self, now: Timestamp) -> Result<(), TrustError> {
        match self.expires_at {
            Some(exp) if now >= exp => Err(TrustError::ClaimsExpired {
                name: self.name.clone(),
                expired: exp,
            }),
            _ => Ok(()),
        }
    }
}

/// The optional parts of claims as a user writes them (`wasmops build --claims FILE`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsFile {
    pub sequence: Option<u64>,
    /// RFC 3339 time or a duration from the build time (`90d`).
    pub expires: Option<String>,
    #[serde(default)]
    pub lineage: Lineage,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl ClaimsFile {
    pub fn from_toml(text: &str) -> Result<ClaimsFile, TrustError> {
        toml::from_str(text).map_err(|e| TrustError::MalformedClaims(format!("claims file: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Claims {
        let mut c = Claims::new("churn", "1.2.0", 7, b"onnx", "");
        c.created_at = Timestamp::from_unix(1_800_000_000);
        c
    }

    #[test]
    fn round_trip_and_independent_hashes() {
        let c = sample();
        // sha256("") is the well-known e3b0c442... digest.
        assert_eq!(
            c.pipeline_sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Claims::parse(&c.to_json()).unwrap(), c);
    }

    #[test]
    fn refuses_bad_fields_by_name() {
        type Case = (fn(&mut Claims), &'static str);
        let cases: Vec<Case> = vec![
            (|c| c.version = "one".into(), "not semver"),
            (|c| c.name = "../etc".into(), "model name"),
            (|c| c.model_sha256 = "abc".into(), "model_sha256"),
            (
                |c| {
                    c.metrics.insert("auc".into(), f64::NAN);
                },
                "metric `auc`",
            ),
            (
                |c| c.capabilities = vec!["File System".into()],
                "capability",
            ),
            (
                |c| c.expires_at = Some(Timestamp::from_unix(1)),
                "expires_at",
            ),
        ];
        for (edit, want) in cases {
            let mut c = sample();
            edit(&mut c);
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains(want), "{err} should mention {want}");
        }
        let err = Claims::parse(br#"{"format":1,"name":"x","extra":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
