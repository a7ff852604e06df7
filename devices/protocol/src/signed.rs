//! What the coordinator alone may say to a device — its desired state and
//! its telemetry acks — travels signed, so that neither another client of the
//! broker nor the broker itself can forge or redirect it.
//!
//! An [`Envelope`] carries the body as JSON text (signed as sent: no
//! canonical form to agree on) and an Ed25519 signature by the coordinator's
//! control key over `context NUL device NUL body`. The context keeps a desired
//! state from being accepted as an ack (and the reverse); the device id keeps
//! one device's message from being replayed on another's topic. A desired
//! state also carries a [`DesiredState::counter`] that only grows per device,
//! so a device refuses an older one replayed from a capture, even signed.
//!
//! This crate stays free of cryptography: callers pass the signing or
//! verifying function (the coordinator and the agent both use `wasmops-sign`'s
//! Ed25519 keys). The device learns the public key at enrolment.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::device::Desired;

/// Context of a signed desired state.
pub const DESIRED: &str = "wasmops-desired-v1";
/// Context of a signed telemetry ack.
pub const ACK: &str = "wasmops-ack-v1";

/// A signed message: `{"body": "<JSON text>", "signature": "<128 hex digits>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub body: String,
    pub signature: String,
}

/// The body of a signed desired state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// Grows with every desired state the coordinator signs for this device
    /// (it is at least the signing time in ms, so it keeps growing even if
    /// the coordinator's records were restored from an old backup).
    pub counter: u64,
    /// What to run; `None` withdraws the previous desired state.
    pub desired: Option<Desired>,
}

/// Why a signed message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("not a signed message ({0}); only the coordinator's signed messages are accepted")]
    NotSigned(String),
    #[error("the signature does not verify with the coordinator's control key for this device")]
    BadSignature,
    #[error("the signed body is not what the contract says: {0}")]
    BadBody(String),
}

/// The bytes a signature covers: `context NUL device NUL body`.
pub fn signed_bytes(context: &str, device: &str, body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(context.len() + device.len() + body.len() + 2);
    out.extend_from_slice(context.as_bytes());
    out.push(0);
    out.extend_from_slice(device.as_bytes());
    out.push(0);
    out.extend_from_slice(body.as_bytes());
    out
}

impl Envelope {
    /// Signs `body` for `device` under `context` with `sign`.
    pub fn seal(
        context: &str,
        device: &str,
        body: &impl Serialize,
        sign: impl FnOnce(&[u8]) -> [u8; 64],
    ) -> Envelope {
        let body = serde_json::to_string(body).expect("protocol bodies serialise");
        let signature = sign(&signed_bytes(context, device, &body));
        Envelope {
            body,
            signature: hex_encode(&signature),
        }
    }

    /// The envelope as it travels.
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelopes serialise")
    }

    /// The body of `payload` if `verify(signed bytes, signature)` accepts it
    /// as signed for `device` under `context`.
    pub fn open<T: DeserializeOwned>(
        payload: &[u8],
        context: &str,
        device: &str,
        verify: impl FnOnce(&[u8], &[u8]) -> bool,
    ) -> Result<T, Refused> {
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|e| Refused::NotSigned(e.to_string()))?;
        let signature = hex_decode(&envelope.signature)
            .filter(|s| s.len() == 64)
            .ok_or_else(|| Refused::NotSigned("`signature` is not 128 hex digits".into()))?;
        if !verify(&signed_bytes(context, device, &envelope.body), &signature) {
            return Err(Refused::BadSignature);
        }
        envelope
            .body_unverified()
            .map_err(|e| Refused::BadBody(e.to_string()))
    }

    /// The body without checking the signature: for the coordinator reading
    /// back what it signed itself.
    pub fn body_unverified<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.body)
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::Ack;

    /// The coordinator's key (seed fixed) and a stranger's.
    fn keys() -> (wasmops_sign::SecretKey, wasmops_sign::SecretKey) {
        (
            wasmops_sign::SecretKey::from_seed([7; 32]),
            wasmops_sign::SecretKey::from_seed([8; 32]),
        )
    }

    fn sign(msg: &[u8]) -> [u8; 64] {
        keys().0.sign(msg)
    }

    fn verify(msg: &[u8], sig: &[u8]) -> bool {
        keys().0.public().verify(msg, sig)
    }

    #[test]
    fn a_sealed_message_opens_only_for_its_device_and_context() {
        let state = DesiredState {
            counter: 7,
            desired: None,
        };
        let payload = Envelope::seal(DESIRED, "gw-1", &state, sign).to_vec();
        let opened: DesiredState = Envelope::open(&payload, DESIRED, "gw-1", verify).unwrap();
        assert_eq!(opened, state);
        for (context, device) in [(DESIRED, "gw-2"), (ACK, "gw-1")] {
            let e = Envelope::open::<DesiredState>(&payload, context, device, verify).unwrap_err();
            assert_eq!(e, Refused::BadSignature, "{context} {device}");
        }
        // Signed by another key.
        let forged = Envelope::seal(DESIRED, "gw-1", &state, |m| keys().1.sign(m)).to_vec();
        let e = Envelope::open::<DesiredState>(&forged, DESIRED, "gw-1", verify);
        assert_eq!(e.unwrap_err(), Refused::BadSignature);
        // The body changed in transit.
        let mut env: Envelope = serde_json::from_slice(&payload).unwrap();
        env.body = env.body.replace("7", "8");
        let e = Envelope::open::<DesiredState>(&env.to_vec(), DESIRED, "gw-1", verify);
        assert_eq!(e.unwrap_err(), Refused::BadSignature);
    }

    #[test]
    fn unsigned_and_malformed_messages_are_refused_by_name() {
        let plain = serde_json::to_vec(&Ack { seqs: vec![1] }).unwrap();
        let e = Envelope::open::<Ack>(&plain, ACK, "gw-1", verify).unwrap_err();
        assert!(matches!(e, Refused::NotSigned(_)), "{e}");
        for sig in ["zz", "ab", &"g".repeat(128)] {
            let bad = serde_json::json!({"body": "{}", "signature": sig}).to_string();
            let e = Envelope::open::<Ack>(bad.as_bytes(), ACK, "gw-1", verify).unwrap_err();
            assert!(e.to_string().contains("128 hex digits"), "{e}");
        }
        // Signed, but not an ack.
        let payload = Envelope::seal(ACK, "gw-1", &"hello", sign).to_vec();
        let e = Envelope::open::<Ack>(&payload, ACK, "gw-1", verify).unwrap_err();
        assert!(matches!(e, Refused::BadBody(_)), "{e}");
    }
}
