//! Who may steer this device: only messages signed by the coordinator's
//! control key (see `wasmops_protocol::signed`) are acted on, and a desired
//! state only if its counter is not below the last one accepted — so neither
//! another client of the broker, nor the broker, nor a replay of an old
//! capture can make the device install something or drop its telemetry.
//!
//! The key comes from `control_key` in agent.toml, else from enrolment (or,
//! for a device given a token rather than enrolled, from `/v1/whoami` the
//! first time: trust on first use). It and the last counter are kept in
//! `state_dir/control.json`, so a restart neither forgets the key nor
//! accepts an older desired state again.

use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use wasmops_protocol::device::Desired;
use wasmops_protocol::signed::{self, DesiredState, Envelope, Refused};
use wasmops_protocol::telemetry::Ack;
use wasmops_sign::PublicKey;

/// What `control.json` keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    /// Hex of the control key's `.pub` bytes.
    key: Option<String>,
    /// The highest desired-state counter accepted.
    counter: u64,
}

/// This device's view of its controller.
pub struct Control {
    device: String,
    file: PathBuf,
    saved: Mutex<Saved>,
    /// `control_key` from agent.toml: wins over anything learnt.
    pinned: bool,
}

/// Why a desired state was not acted on.
#[derive(Debug, thiserror::Error)]
pub enum NotAccepted {
    #[error(
        "no control key known yet (the coordinator gives it at enrolment, or set control_key in agent.toml), so nothing can be trusted"
    )]
    NoKey,
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("a replay: its counter {got} is below {seen}, the last one accepted")]
    Replayed { got: u64, seen: u64 },
    #[error("{0}")]
    BadField(#[from] wasmops_protocol::device::BadField),
}

impl Control {
    /// The saved state in `state_dir`, with agent.toml's `control_key` (hex) if given.
    pub fn open(
        device: &str,
        state_dir: &std::path::Path,
        pinned: Option<&str>,
    ) -> Result<Control> {
        let file = state_dir.join("control.json");
        let mut saved: Saved = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is corrupt", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
        };
        if let Some(k) = pinned {
            parse_key(k).context("agent.toml control_key")?;
            saved.key = Some(k.to_string());
        }
        Ok(Control {
            device: device.to_string(),
            file,
            saved: Mutex::new(saved),
            pinned: pinned.is_some(),
        })
    }

    /// Takes `key` (hex) as the control key: from enrolment it replaces
    /// any earlier one (`replace`), from `/v1/whoami` only fills a gap. A
    /// pinned key is never replaced. Returns whether the key changed.
    pub fn learn(&self, key: &str, replace: bool) -> Result<bool> {
        parse_key(key)?;
        let mut saved = self.saved.lock().unwrap();
        if self.pinned || saved.key.as_deref() == Some(key) || (saved.key.is_some() && !replace) {
            return Ok(false);
        }
        saved.key = Some(key.to_string());
        self.save(&saved)?;
        Ok(true)
    }

    pub fn knows_key(&self) -> bool {
        self.saved.lock().unwrap().key.is_some()
    }

    /// The desired state in `payload` if the coordinator signed it for this
    /// device and it is not older than the last one accepted (an equal
    /// counter is the same message delivered again: acting on it twice is
    /// harmless). `None`: the desired state was withdrawn.
    pub fn desired(&self, payload: &[u8]) -> Result<Option<Desired>, NotAccepted> {
        let mut saved = self.saved.lock().unwrap();
        let key = saved.key.as_deref().and_then(|k| parse_key(k).ok());
        let key = key.ok_or(NotAccepted::NoKey)?;
        let state: DesiredState =
            Envelope::open(payload, signed::DESIRED, &self.device, |m, s| {
                key.verify(m, s)
            })?;
        if state.counter < saved.counter {
            return Err(NotAccepted::Replayed {
                got: state.counter,
                seen: saved.counter,
            });
        }
        if let Some(d) = &state.desired {
            d.check()?;
        }
        if state.counter > saved.counter {
            saved.counter = state.counter;
            if let Err(e) = self.save(&saved) {
                // Acting on it is still right; a restart might accept this
                // counter's predecessors again until the disk takes writes.
                tracing::error!("cannot record the desired-state counter: {e:#}");
            }
        }
        Ok(state.desired)
    }

    /// The ack in `payload` if the coordinator signed it for this device.
    pub fn ack(&self, payload: &[u8]) -> Result<Ack, NotAccepted> {
        let key = self.saved.lock().unwrap().key.clone();
        let key = key
            .and_then(|k| parse_key(&k).ok())
            .ok_or(NotAccepted::NoKey)?;
        Ok(Envelope::open(
            payload,
            signed::ACK,
            &self.device,
            |m, s| key.verify(m, s),
        )?)
    }

    fn save(&self, saved: &Saved) -> Result<()> {
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        wasmops_trust::write_atomic_mode(&self.file, &serde_json::to_vec(saved)?, Some(0o600))
            .with_context(|| format!("cannot write {}", self.file.display()))
    }
}

fn parse_key(hex_key: &str) -> Result<PublicKey> {
    let bytes = hex::decode(hex_key.trim()).context("the control key is not hex")?;
    PublicKey::from_bytes(&bytes).context("the control key is not an Ed25519 public key")
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmops_sign::SecretKey;

    fn desired(version: &str) -> Desired {
        let sha = "ab".repeat(32);
        serde_json::from_value(serde_json::json!({"deployment": "dep-1", "model": "churn",
            "version": version, "sha256": sha, "size_bytes": 10}))
        .unwrap()
    }

    fn sealed(key: &SecretKey, device: &str, counter: u64, version: &str) -> Vec<u8> {
        let state = DesiredState {
            counter,
            desired: Some(desired(version)),
        };
        Envelope::seal(signed::DESIRED, device, &state, |m| key.sign(m)).to_vec()
    }

    #[test]
    fn only_the_coordinators_newest_desired_state_is_taken_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (key, stranger) = (SecretKey::from_seed([1; 32]), SecretKey::from_seed([2; 32]));
        let hex_key = hex::encode(key.public().to_bytes());
        let control = Control::open("gw-1", dir.path(), None).unwrap();
        let first = sealed(&key, "gw-1", 100, "1.0.0");
        assert!(matches!(control.desired(&first), Err(NotAccepted::NoKey)));
        assert!(control.learn(&hex_key, true).unwrap());
        assert_eq!(control.desired(&first).unwrap().unwrap().version, "1.0.0");
        // Delivered again (a reconnect): the same message is fine.
        assert_eq!(control.desired(&first).unwrap().unwrap().version, "1.0.0");
        let second = sealed(&key, "gw-1", 101, "1.1.0");
        assert_eq!(control.desired(&second).unwrap().unwrap().version, "1.1.0");

        // After a restart: the key and the counter are remembered.
        let control = Control::open("gw-1", dir.path(), None).unwrap();
        let e = control.desired(&first).unwrap_err();
        assert!(
            matches!(
                e,
                NotAccepted::Replayed {
                    got: 100,
                    seen: 101
                }
            ),
            "{e}"
        );
        for (forged, why) in [
            (sealed(&stranger, "gw-1", 500, "6.6.6"), "another key"),
            (sealed(&key, "gw-2", 500, "6.6.6"), "another device's"),
            (serde_json::to_vec(&desired("6.6.6")).unwrap(), "unsigned"),
        ] {
            let e = control.desired(&forged).unwrap_err();
            assert!(matches!(e, NotAccepted::Refused(_)), "{why}: {e}");
        }
        // whoami never replaces a known key; enrolment does.
        let other = hex::encode(stranger.public().to_bytes());
        assert!(!control.learn(&other, false).unwrap());
        assert!(control.learn(&other, true).unwrap());
        // A pinned key wins over both.
        let pinned = Control::open("gw-1", dir.path(), Some(&hex_key)).unwrap();
        assert!(!pinned.learn(&other, true).unwrap());
        assert!(pinned.desired(&sealed(&key, "gw-1", 102, "1.2.0")).is_ok());
        assert!(Control::open("gw-1", dir.path(), Some("01abc")).is_err());
    }

    #[test]
    fn acks_count_only_when_the_coordinator_signed_them_for_this_device() {
        let dir = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed([1; 32]);
        let control = Control::open("gw-1", dir.path(), None).unwrap();
        control
            .learn(&hex::encode(key.public().to_bytes()), true)
            .unwrap();
        let ack = |device: &str| {
            Envelope::seal(signed::ACK, device, &Ack { seqs: vec![3, 4] }, |m| {
                key.sign(m)
            })
            .to_vec()
        };
        assert_eq!(control.ack(&ack("gw-1")).unwrap().seqs, vec![3, 4]);
        assert!(control.ack(&ack("gw-2")).is_err());
        let plain = serde_json::to_vec(&Ack { seqs: vec![3] }).unwrap();
        assert!(control.ack(&plain).is_err());
        // A desired state is not an ack, even signed for this device.
        assert!(control.ack(&sealed(&key, "gw-1", 1, "1.0.0")).is_err());
    }
}
