//! What the coordinator asks of a device ([`Desired`], retained on
//! `wasmops/v1/devices/{id}/desired`) and what the device answers ([`Status`],
//! retained on `…/status`) after every install state change.

use serde::{Deserialize, Serialize};

/// What to do with a version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Serve it.
    #[default]
    Active,
    /// Install and probe it, keep it ready beside the active model.
    Staged,
    /// Run it beside the active model and report agreement and latency.
    Shadow,
}

/// What the coordinator wants this device to run (retained on the desired topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    /// The deployment or rollout this belongs to.
    pub deployment: String,
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// A sample for the health probe, inline: `{"inputs":[…]}` (small ones,
    /// hand-written desired states).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<serde_json::Value>,
    /// The probe's sample as an artifact the agent downloads like the model
    /// (what the coordinator sends: a sample of any size keeps this message small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_artifact: Option<ArtifactRef>,
    #[serde(default)]
    pub mode: Mode,
    /// Do not raise the rollback floor yet (canary in progress).
    #[serde(default)]
    pub provisional: bool,
}

/// An artifact by content: what `GET /v1/artifacts/{sha256}` serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactRef {
    pub sha256: String,
    pub size_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallState {
    Downloading,
    Verifying,
    Probing,
    /// Installed and probed, waiting beside the active model (blue-green).
    Staged,
    /// Running as a shadow of the active model.
    Shadow,
    Active,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveInfo {
    pub model: String,
    pub version: String,
    pub sha256: String,
    pub sequence: u64,
}

/// One install state change (retained on the status topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub deployment: Option<String>,
    pub state: InstallState,
    pub model: Option<String>,
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is serving predictions now.
    pub active: Option<ActiveInfo>,
    /// What runs as a shadow, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ActiveInfo>,
}

impl InstallState {
    pub const ALL: [InstallState; 7] = [
        InstallState::Downloading,
        InstallState::Verifying,
        InstallState::Probing,
        InstallState::Staged,
        InstallState::Shadow,
        InstallState::Active,
        InstallState::Failed,
    ];

    /// The state named `s` (as [`InstallState::as_str`] writes it).
    pub fn parse(s: &str) -> Option<InstallState> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The state as it travels and is stored (`downloading`, …, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            InstallState::Downloading => "downloading",
            InstallState::Verifying => "verifying",
            InstallState::Probing => "probing",
            InstallState::Staged => "staged",
            InstallState::Shadow => "shadow",
            InstallState::Active => "active",
            InstallState::Failed => "failed",
        }
    }
}

/// A field of a payload that breaks the contract; the payload is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {problem}")]
pub struct BadField {
    pub field: &'static str,
    pub problem: String,
}

/// Longest model, version or deployment name a payload may carry.
pub const MAX_NAME: usize = 128;

/// Longest free-text error a status may carry; longer ones are cut (the rest is
/// in the device's log).
pub const MAX_ERROR: usize = 2048;

/// A model name or version (they name files and database keys): 1–128 of
/// `[A-Za-z0-9._+-]`, not starting with a dot.
pub fn check_name(field: &'static str, value: &str) -> Result<(), BadField> {
    check_chars(field, value, "._+-")
}

/// A deployment or rollout id (`dep-…`, `ro-…`, `ro-…/rollback`): like a name,
/// and `/` may separate its parts.
pub fn check_deployment(value: &str) -> Result<(), BadField> {
    check_chars("deployment", value, "._+-/")
}

fn check_chars(field: &'static str, value: &str, extra: &str) -> Result<(), BadField> {
    let bad = |problem: String| Err(BadField { field, problem });
    if value.is_empty() || value.len() > MAX_NAME {
        return bad(format!(
            "must be 1-{MAX_NAME} characters, not {}",
            value.len()
        ));
    }
    if value.starts_with('.') {
        return bad("must not start with a dot".into());
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || extra.contains(*c)))
    {
        return bad(format!(
            "has `{}`; allowed are letters, digits and `{extra}`",
            c.escape_debug()
        ));
    }
    Ok(())
}

/// A SHA-256 as 64 lowercase hex digits (it names files on devices).
pub fn check_sha256(field: &'static str, value: &str) -> Result<(), BadField> {
    if value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(BadField {
            field,
            problem: "must be 64 lowercase hex digits".into(),
        })
    }
}

impl ActiveInfo {
    pub fn check(&self) -> Result<(), BadField> {
        check_name("model", &self.model)?;
        check_name("version", &self.version)?;
        check_sha256("sha256", &self.sha256)
    }
}

impl Desired {
    /// Every field checked before anything acts on it: the sha names a file,
    /// the names go into paths and reports.
    pub fn check(&self) -> Result<(), BadField> {
        check_deployment(&self.deployment)?;
        check_name("model", &self.model)?;
        check_name("version", &self.version)?;
        check_sha256("sha256", &self.sha256)?;
        if self.size_bytes == 0 {
            return Err(BadField {
                field: "size_bytes",
                problem: "must be more than 0".into(),
            });
        }
        if let Some(p) = &self.probe
            && !p.get("inputs").is_some_and(|i| i.is_array())
        {
            return Err(BadField {
                field: "probe",
                problem: "must be {\"inputs\": [...]}".into(),
            });
        }
        if let Some(a) = &self.probe_artifact {
            check_sha256("probe_artifact.sha256", &a.sha256)?;
            if a.size_bytes == 0 || a.size_bytes > crate::MAX_PROBE_BYTES as u64 {
                return Err(BadField {
                    field: "probe_artifact.size_bytes",
                    problem: format!("must be in 1..={}", crate::MAX_PROBE_BYTES),
                });
            }
        }
        Ok(())
    }
}

impl Status {
    /// Names and hashes checked; a long error text is cut to [`MAX_ERROR`]
    /// bytes and control characters (NUL included: databases refuse it) become
    /// spaces, so a device's own words never cost it its report.
    pub fn check(&mut self) -> Result<(), BadField> {
        if let Some(d) = &self.deployment {
            check_deployment(d)?;
        }
        if let Some(m) = &self.model {
            check_name("model", m)?;
        }
        if let Some(v) = &self.version {
            check_name("version", v)?;
        }
        for a in [&self.active, &self.shadow].into_iter().flatten() {
            a.check()?;
        }
        if let Some(e) = &mut self.error {
            *e = clean_text(e, MAX_ERROR);
        }
        Ok(())
    }
}

/// `text` cut to at most `max` bytes (on a character boundary) with control
/// characters replaced by spaces.
pub fn clean_text(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end]
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_states_serialise_as_their_names() {
        for s in InstallState::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::Value::String(s.as_str().into())
            );
            assert_eq!(InstallState::parse(s.as_str()), Some(s));
        }
    }

    fn desired() -> Desired {
        Desired {
            deployment: "dep-1".into(),
            model: "churn".into(),
            version: "1.0.0".into(),
            sha256: "ab".repeat(32),
            size_bytes: 10,
            probe: None,
            probe_artifact: None,
            mode: Mode::Active,
            provisional: false,
        }
    }

    #[test]
    fn desired_fields_are_checked_before_use() {
        desired().check().unwrap();
        for id in [
            "dep-1796083209246-a74422b4d11d",
            "ro-17960832-ab12/rollback",
        ] {
            let d = Desired {
                deployment: id.into(),
                ..desired()
            };
            d.check().unwrap();
        }
        for (sha, why) in [
            ("../../etc/passwd", "path"),
            (&"AB".repeat(32), "uppercase"),
            (&"ab".repeat(31), "short"),
            (&format!("{}/x", "a".repeat(62)), "slash"),
        ] {
            let d = Desired {
                sha256: sha.to_string(),
                ..desired()
            };
            let e = d.check().unwrap_err();
            assert_eq!(e.field, "sha256", "{why}");
        }
        for bad in ["", "..", ".hidden", "a/b", "a\0b", &"x".repeat(129)] {
            let d = Desired {
                model: bad.to_string(),
                ..desired()
            };
            assert_eq!(d.check().unwrap_err().field, "model", "{bad:?}");
        }
        let d = Desired {
            size_bytes: 0,
            ..desired()
        };
        assert_eq!(d.check().unwrap_err().field, "size_bytes");
        let d = Desired {
            probe: Some(serde_json::json!("zeros")),
            ..desired()
        };
        assert_eq!(d.check().unwrap_err().field, "probe");
        let artifact = |sha256: String, size_bytes| Desired {
            probe_artifact: Some(ArtifactRef { sha256, size_bytes }),
            ..desired()
        };
        artifact("cd".repeat(32), 3 << 20).check().unwrap();
        let e = artifact("../x".into(), 10).check().unwrap_err();
        assert_eq!(e.field, "probe_artifact.sha256");
        let e = artifact("cd".repeat(32), 1 << 30).check().unwrap_err();
        assert_eq!(e.field, "probe_artifact.size_bytes");
    }

    #[test]
    fn status_errors_are_cut_and_cleaned_not_refused() {
        let mut s = Status {
            deployment: Some("dep-1".into()),
            state: InstallState::Failed,
            model: Some("churn".into()),
            version: Some("1.0.0".into()),
            error: Some(format!("nul\0here é{}", "x".repeat(5000))),
            active: None,
            shadow: None,
        };
        s.check().unwrap();
        let e = s.error.unwrap();
        assert!(
            e.len() <= MAX_ERROR && e.starts_with("nul here é"),
            "{e:.40}"
        );
        let mut s = Status {
            deployment: Some("dep-1'; DROP TABLE devices; --".into()),
            state: InstallState::Active,
            model: None,
            version: None,
            error: None,
            active: None,
            shadow: None,
        };
        assert_eq!(s.check().unwrap_err().field, "deployment");
    }
}
