//! Ed25519 key pairs in wasmsign2's raw file encodings.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::SignError;

const PK_ID: u8 = 0x01;
const SK_ID: u8 = 0x81;

#[derive(Clone)]
pub struct SecretKey(SigningKey);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl SecretKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, SignError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| SignError::BadKey(format!("no OS randomness: {e}")))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn from_seed(seed: [u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }

    /// `0x81 || seed || public`, as `wasmsign2 keygen` writes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![SK_ID];
        out.extend_from_slice(&self.0.to_keypair_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SecretKey, SignError> {
        match bytes {
            [SK_ID, rest @ ..] if rest.len() == 64 => {
                let pair: [u8; 64] = rest.try_into().unwrap();
                SigningKey::from_keypair_bytes(&pair)
                    .map(SecretKey)
                    .map_err(|e| {
                        SignError::BadKey(format!("secret and public halves disagree: {e}"))
                    })
            }
            [PK_ID, ..] => Err(SignError::BadKey(
                "this is a public key; signing needs the secret key".into(),
            )),
            _ => Err(SignError::BadKey(format!(
                "expected 65 bytes starting with 0x81, got {} bytes",
                bytes.len()
            ))),
        }
    }
}

impl PublicKey {
    /// `0x01 || 32 bytes`, as `wasmsign2 keygen` writes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![PK_ID];
        out.extend_from_slice(self.0.as_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, SignError> {
        match bytes {
            [PK_ID, rest @ ..] if rest.len() == 32 => {
                VerifyingKey::from_bytes(rest.try_into().unwrap())
                    .map(PublicKey)
                    .map_err(|e| SignError::BadKey(format!("not a valid Ed25519 point: {e}")))
            }
            [SK_ID, ..] => Err(SignError::BadKey(
                "this is a secret key; give the .pub file".into(),
            )),
            _ => Err(SignError::BadKey(format!(
                "expected 33 bytes starting with 0x01, got {} bytes",
                bytes.len()
            ))),
        }
    }

    /// First 8 bytes of SHA-256 of the key: short enough to print, stored with signatures.
    pub fn key_id_bytes(&self) -> Vec<u8> {
        Sha256::digest(self.0.as_bytes())[..8].to_vec()
    }

    pub fn key_id(&self) -> String {
        hex::encode(self.key_id_bytes())
    }

    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        #[cfg(test)]
        CHECKS.with(|c| c.set(c.get() + 1));
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify(msg, &sig).is_ok()
    }
}

#[cfg(test)]
thread_local! {
    /// Ed25519 checks made on this thread (tests bound verification cost with it).
    pub(crate) static CHECKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
