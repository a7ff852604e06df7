//! The decision: may this host run this component?
//!
//! Order (nothing is compiled, and claims are not trusted, before the signature
//! checks out): root chain → revocation list → delegations → signature →
//! claims (expiry, scope, capabilities) → rollback.

use std::sync::{Arc, RwLock};

use wasmops_sign::{PublicKey, SignError, Verified};

use crate::capabilities::{self, DEFAULT_GRANTED};
use crate::metadata::{Delegation, Document, Revocations, Root, Signed};
use crate::state::{State, StateDir};
use crate::store::TrustMetadata;
use crate::{Claims, Timestamp, TrustError};

/// A component may carry its own delegation so that one file travels.
pub const DELEGATION_SECTION: &str = "wasmops-delegation";

#[derive(Debug, Clone)]
pub enum KeySource {
    /// Components signed by any of these keys (development; plain wasmsign2).
    Keys(Vec<PublicKey>),
    /// A root key (what a device holds) and the metadata it vouches for,
    /// shared by every clone of the policy and replaced as a whole by
    /// [`TrustPolicy::apply`] (a device takes fresh revocations without a restart).
    Root {
        anchor: Vec<PublicKey>,
        metadata: Arc<RwLock<TrustMetadata>>,
    },
}

/// What [`TrustPolicy::apply`] found in metadata it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The root version now in force.
    pub root_version: u64,
    /// The revocation list's version (0: none).
    pub revocations_version: u64,
    /// Whether anything differs from what was in force before.
    pub changed: bool,
}

#[derive(Debug, Clone)]
pub struct TrustPolicy {
    pub keys: KeySource,
    /// Where accepted sequences are kept; `None` disables rollback protection.
    pub state: Option<StateDir>,
    /// Capabilities this host grants to components.
    pub granted: Vec<String>,
    /// Refuse components without claims (always so under a root).
    pub require_claims: bool,
    /// The clock for expiry checks; `None` is the system clock.
    pub now: Option<Timestamp>,
}

/// A component this host may run, and what it said about itself.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub verified: Verified,
    pub claims: Option<Claims>,
    /// The delegation whose key signed it, under a root.
    pub delegation: Option<String>,
}

impl TrustPolicy {
    pub fn keys(keys: Vec<PublicKey>) -> TrustPolicy {
        TrustPolicy {
            keys: KeySource::Keys(keys),
            state: None,
            granted: DEFAULT_GRANTED.iter().map(|s| s.to_string()).collect(),
            require_claims: false,
            now: None,
        }
    }

    pub fn root(anchor: Vec<PublicKey>, metadata: TrustMetadata) -> TrustPolicy {
        TrustPolicy {
            keys: KeySource::Root {
                anchor,
                metadata: Arc::new(RwLock::new(metadata)),
            },
            require_claims: true,
            ..TrustPolicy::keys(vec![])
        }
    }

    pub fn with_state(mut self, state: StateDir) -> TrustPolicy {
        self.state = Some(state);
        self
    }

    /// The metadata in force (under a root): a snapshot.
    pub fn metadata(&self) -> Option<TrustMetadata> {
        match &self.keys {
            KeySource::Root { metadata, .. } => {
                Some(metadata.read().unwrap_or_else(|e| e.into_inner()).clone())
            }
            KeySource::Keys(_) => None,
        }
    }

    /// Puts `new` in force for every clone of this policy if it holds: its
    /// root chain walks from the anchor (or from the root `state` walked to
    /// before) and nothing goes back — not the root version, not the
    /// revocation list (neither behind the one in force nor behind `state`,
    /// which records what was taken). A refusal changes nothing.
    pub fn apply(
        &self,
        new: TrustMetadata,
        state: Option<&StateDir>,
    ) -> Result<Applied, TrustError> {
        let KeySource::Root { anchor, metadata } = &self.keys else {
            return Err(TrustError::MalformedMetadata {
                what: "trust metadata".into(),
                reason: "this host trusts plain keys, not a root: there is nothing to apply".into(),
            });
        };
        let current = self.metadata().unwrap_or_default();
        let version = |m: &TrustMetadata| {
            (
                m.roots.iter().map(|r| r.signed.version).max().unwrap_or(0),
                m.revocations.as_ref().map_or(0, |r| r.signed.version),
            )
        };
        let ((have_root, have_list), (got_root, got_list)) = (version(&current), version(&new));
        if got_root < have_root {
            return Err(TrustError::MetadataRollback {
                what: "root".into(),
                have: have_root,
                got: got_root,
            });
        }
        if got_list < have_list {
            return Err(TrustError::MetadataRollback {
                what: "revocation list".into(),
                have: have_list,
                got: got_list,
            });
        }
        for d in &new.delegations {
            d.signed.public_key()?;
            if !crate::store::valid_file_name(&d.signed.name) {
                return Err(TrustError::MalformedMetadata {
                    what: format!("delegation `{}`", d.signed.name),
                    reason: "its name cannot be a file name".into(),
                });
            }
        }
        let judge = TrustPolicy {
            state: state.cloned(),
            ..TrustPolicy::root(anchor.clone(), new.clone())
        };
        let now = self.now();
        // Hosts without a state walk from the anchor every time: the chain
        // must hold from there (a set that only passes because a state skips
        // its first roots would stop every install on them). Judged first:
        // it records nothing.
        let stateless = TrustPolicy {
            state: None,
            ..judge.clone()
        };
        let (from_anchor, _) = stateless.current_root(anchor, &new, None, now)?;
        // Then against what this host saw before, recording what it takes.
        let (root, revocations) =
            judge.current_root(anchor, &new, judge.load_state()?.as_ref(), now)?;
        if from_anchor.version < root.version {
            return Err(TrustError::MetadataRollback {
                what: "root".into(),
                have: root.version,
                got: from_anchor.version,
            });
        }
        let changed = new != current;
        *metadata.write().unwrap_or_else(|e| e.into_inner()) = new;
        Ok(Applied {
            root_version: root.version,
            revocations_version: revocations.map_or(0, |r| r.version),
            changed,
        })
    }

    fn now(&self) -> Timestamp {
        self.now.unwrap_or_else(Timestamp::now)
    }

    /// The state file read once per check: the root walk, the revocation list
    /// and the rollback check all judge against the same snapshot.
    fn load_state(&self) -> Result<Option<State>, TrustError> {
        self.state.as_ref().map(StateDir::load).transpose()
    }

    /// Checks `wasm` without recording anything about the component (the walked
    /// root and revocation version are recorded: they are facts about the world).
    pub fn check(&self, wasm: &[u8]) -> Result<Accepted, TrustError> {
        self.check_as_of(wasm, self.now(), true)
    }

    /// Checks a component this host accepted at `accepted_at` (a restart):
    /// signature, root chain and revocations are judged as they stood then,
    /// so expiry since (or a clock jump) does not take away a model the device
    /// already runs, while a key revoked since still does. The rollback floor
    /// is not checked: the component was accepted, and a provisional one may sit
    /// below a floor raised after it.
    pub fn check_accepted(
        &self,
        wasm: &[u8],
        accepted_at: Timestamp,
    ) -> Result<Accepted, TrustError> {
        self.check_as_of(wasm, accepted_at, false)
    }

    fn check_as_of(
        &self,
        wasm: &[u8],
        now: Timestamp,
        rollback: bool,
    ) -> Result<Accepted, TrustError> {
        let at = TrustPolicy {
            now: Some(now),
            ..self.clone()
        };
        let state = at.load_state()?;
        let (verified, delegation) = match &at.keys {
            KeySource::Keys(keys) => (wasmops_sign::verify(wasm, keys)?, None),
            KeySource::Root { anchor, metadata } => {
                let metadata = metadata.read().unwrap_or_else(|e| e.into_inner()).clone();
                let (verified, d) = at.check_chain(wasm, anchor, &metadata, state.as_ref())?;
                (verified, Some(d))
            }
        };
        let claims = Claims::read(wasm)?;
        let Some(claims) = claims else {
            if at.require_claims || at.state.is_some() {
                return Err(TrustError::NoClaims);
            }
            return Ok(Accepted {
                verified,
                claims: None,
                delegation: None,
            });
        };
        claims.check_expiry(now)?;
        if let Some(d) = &delegation
            && !d.covers(&claims.name)
        {
            return Err(TrustError::OutOfScope {
                model: claims.name.clone(),
                delegation: d.name.clone(),
                patterns: d.models.clone(),
            });
        }
        capabilities::check(
            &claims.capabilities,
            &at.granted,
            delegation.as_ref().and_then(|d| d.capabilities.as_deref()),
            wasm,
        )?;
        if rollback && let Some(state) = &state {
            state.check_sequence(&claims.name, claims.sequence)?;
        }
        Ok(Accepted {
            verified,
            claims: Some(claims),
            delegation: delegation.map(|d| d.name),
        })
    }

    /// Records an accepted component (after it loaded): later, lower sequences
    /// for its name are refused.
    pub fn commit(&self, accepted: &Accepted) -> Result<(), TrustError> {
        match (&self.state, &accepted.claims) {
            (Some(state), Some(c)) => state.accept(&c.name, c.sequence),
            _ => Ok(()),
        }
    }

    /// Checks the metadata alone: the root chain, the revocation list and each
    /// delegation, one line per finding.
    pub fn check_metadata(&self) -> Result<String, TrustError> {
        let KeySource::Root { anchor, metadata } = &self.keys else {
            return Ok("plain trusted keys, no root".into());
        };
        let metadata = &*metadata.read().unwrap_or_else(|e| e.into_inner());
        let now = self.now();
        let (root, revocations) =
            self.current_root(anchor, metadata, self.load_state()?.as_ref(), now)?;
        let mut lines = vec![format!("root version {}", root.version)];
        for d in &metadata.delegations {
            match judge(d, &root, revocations.as_ref(), now) {
                Ok(()) => lines.push(format!("delegation `{}` valid", d.signed.name)),
                Err(e) => lines.push(format!("delegation `{}` NOT valid: {e}", d.signed.name)),
            }
        }
        Ok(lines.join("\n  "))
    }

    /// Checks the whole chain; returns the signature and the delegation that covers it.
    fn check_chain(
        &self,
        wasm: &[u8],
        anchor: &[PublicKey],
        metadata: &TrustMetadata,
        state: Option<&State>,
    ) -> Result<(Verified, Delegation), TrustError> {
        let now = self.now();
        let (root, revocations) = self.current_root(anchor, metadata, state, now)?;

        let mut candidates: Vec<Signed<Delegation>> = metadata.delegations.clone();
        for payload in wasmops_sign::custom_sections(wasm, DELEGATION_SECTION)? {
            candidates.push(Signed::parse(payload)?);
        }
        // Judge every delegation, keeping the reason for the ones that fail, so a
        // signature by an expired or revoked key gets that error, not "untrusted".
        let judged: Vec<(Delegation, PublicKey, Result<(), TrustError>)> = candidates
            .into_iter()
            .filter_map(|d| {
                let key = d.signed.public_key().ok()?;
                let status = judge(&d, &root, revocations.as_ref(), now);
                Some((d.signed, key, status))
            })
            .collect();
        let mut keys: Vec<PublicKey> = judged.iter().map(|(_, k, _)| k.clone()).collect();
        keys.sort_by_key(|k| k.key_id());
        keys.dedup_by_key(|k| k.key_id());
        let verified = match wasmops_sign::verify(wasm, &keys) {
            Ok(v) => v,
            Err(SignError::UntrustedKey { signatures, .. }) => {
                return Err(SignError::UntrustedKey {
                    signatures,
                    trusted: judged
                        .iter()
                        .map(|(d, _, _)| format!("{} ({})", d.name, d.key))
                        .collect(),
                }
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        let mut first_error = None;
        for (d, k, status) in judged {
            if k.key_id() != verified.key_id {
                continue;
            }
            match status {
                Ok(()) => return Ok((verified, d)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or(TrustError::NoDelegation {
            key_id: verified.key_id,
        }))
    }

    /// The root in force and the revocation list it signed, both checked against
    /// what this device saw before (`state`).
    fn current_root(
        &self,
        anchor: &[PublicKey],
        metadata: &TrustMetadata,
        state: Option<&State>,
        now: Timestamp,
    ) -> Result<(Root, Option<Revocations>), TrustError> {
        let root = self.walk_roots(anchor, &metadata.roots, state, now)?;
        let revocations =
            self.check_revocations(&root, metadata.revocations.as_ref(), state, now)?;
        Ok((root, revocations))
    }

    /// Walks from the newest root this device trusts (the anchor, or the one in
    /// its state) through each next version, as TUF does.
    fn walk_roots(
        &self,
        anchor: &[PublicKey],
        roots: &[Signed<Root>],
        state: Option<&State>,
        now: Timestamp,
    ) -> Result<Root, TrustError> {
        // Version 0 is the bare anchor: root.1.json must be signed by it.
        let mut current = match state.and_then(|s| s.root.as_ref()) {
            Some(r) => r.signed.clone(),
            None => Root {
                version: 0,
                expires: Timestamp::from_unix(u64::MAX),
                threshold: 1,
                keys: anchor.iter().map(crate::metadata::key_to_hex).collect(),
            },
        };
        let mut newest: Option<&Signed<Root>> = None;
        for next in roots {
            if next.signed.version <= current.version {
                continue;
            }
            if next.signed.version != current.version + 1 {
                return Err(TrustError::RootChain(format!(
                    "root version {} cannot follow version {}: root.{}.json is missing",
                    next.signed.version,
                    current.version,
                    current.version + 1
                )));
            }
            next.validate()?;
            next.check_signed_by(&current.public_keys()?, current.threshold)
                .map_err(|e| {
                    TrustError::RootChain(format!(
                        "{} is not signed by the keys of root version {}: {e}",
                        next.signed.describe(),
                        current.version
                    ))
                })?;
            next.check_signed_by(&next.signed.public_keys()?, next.signed.threshold)
                .map_err(|e| {
                    TrustError::RootChain(format!(
                        "{} is not signed by its own keys: {e}",
                        next.signed.describe()
                    ))
                })?;
            current = next.signed.clone();
            newest = Some(next);
        }
        if current.version > 0 && now >= current.expires {
            return Err(TrustError::RootExpired {
                version: current.version,
                expired: current.expires,
            });
        }
        if let (Some(state), Some(root)) = (&self.state, newest) {
            state.update(|s| {
                if s.root
                    .as_ref()
                    .is_none_or(|r| r.signed.version < root.signed.version)
                {
                    s.root = Some(root.clone());
                }
                Ok(())
            })?;
        }
        Ok(current)
    }

    fn check_revocations(
        &self,
        root: &Root,
        list: Option<&Signed<Revocations>>,
        state: Option<&State>,
        now: Timestamp,
    ) -> Result<Option<Revocations>, TrustError> {
        let have = state.map_or(0, |s| s.revocations_version);
        let Some(list) = list else {
            // Dropping the list must not un-revoke keys on a device that saw one.
            if have > 0 {
                return Err(TrustError::MetadataRollback {
                    what: "revocation list".into(),
                    have,
                    got: 0,
                });
            }
            return Ok(None);
        };
        list.check_signed_by(&root.public_keys()?, root.threshold)?;
        let got = list.signed.version;
        if got < have {
            return Err(TrustError::MetadataRollback {
                what: "revocation list".into(),
                have,
                got,
            });
        }
        if let Some(exp) = list.signed.expires
            && now >= exp
        {
            return Err(TrustError::RevocationsExpired(exp));
        }
        if let Some(state) = self.state.as_ref().filter(|_| got > have) {
            state.update(|s| {
                s.revocations_version = s.revocations_version.max(got);
                Ok(())
            })?;
        }
        Ok(Some(list.signed.clone()))
    }
}

/// Whether one delegation is currently good: signed by the root, in date, not revoked.
fn judge(
    d: &Signed<Delegation>,
    root: &Root,
    revocations: Option<&Revocations>,
    now: Timestamp,
) -> Result<(), TrustError> {
    d.check_signed_by(&root.public_keys()?, root.threshold)?;
    let key_id = d.signed.public_key()?.key_id();
    if let Some(r) = revocations {
        if let Some(k) = r.keys.iter().find(|k| k.key_id == key_id) {
            return Err(TrustError::KeyRevoked {
                key_id,
                reason: k.reason.clone(),
            });
        }
        if r.delegations.contains(&d.signed.name) {
            return Err(TrustError::DelegationRevoked(d.signed.name.clone()));
        }
    }
    if now >= d.signed.expires {
        return Err(TrustError::DelegationExpired {
            name: d.signed.name.clone(),
            key_id,
            expired: d.signed.expires,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::key_to_hex;
    use wasmops_sign::SecretKey;

    const T0: u64 = 1_900_000_000;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed([n; 32])
    }

    fn root(
        version: u64,
        keys: &[&SecretKey],
        threshold: usize,
        signers: &[&SecretKey],
    ) -> Signed<Root> {
        let doc = Root {
            version,
            expires: Timestamp::from_unix(T0 + 1000),
            threshold,
            keys: keys.iter().map(|k| key_to_hex(&k.public())).collect(),
        };
        Signed::sign(doc, signers)
    }

    fn policy(metadata: TrustMetadata, now: u64) -> TrustPolicy {
        TrustPolicy {
            now: Some(Timestamp::from_unix(now)),
            ..TrustPolicy::root(vec![key(1).public()], metadata)
        }
    }

    #[test]
    fn expired_root_is_refused() {
        let meta = TrustMetadata {
            roots: vec![root(1, &[&key(1)], 1, &[&key(1)])],
            ..Default::default()
        };
        policy(meta.clone(), T0).check_metadata().unwrap();
        let err = policy(meta, T0 + 1000).check_metadata().unwrap_err();
        assert!(
            matches!(err, TrustError::RootExpired { version: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn threshold_roots_need_enough_signatures_at_each_step() {
        let (k1, k2, k3) = (key(1), key(2), key(3));
        let v1 = root(1, &[&k1], 1, &[&k1]);
        // v2 has two keys and needs both: signed by v1's key and only one of its own.
        let short = root(2, &[&k2, &k3], 2, &[&k1, &k2]);
        let err = policy(
            TrustMetadata {
                roots: vec![v1.clone(), short],
                ..Default::default()
            },
            T0,
        )
        .check_metadata()
        .unwrap_err();
        assert!(
            matches!(&err, TrustError::RootChain(m) if m.contains("its own keys")),
            "{err}"
        );
        let full = root(2, &[&k2, &k3], 2, &[&k1, &k2, &k3]);
        let k4 = key(4);
        // v3 signed by only one of v2's two keys (plus its own): not enough.
        let weak = root(3, &[&k4], 1, &[&k2, &k4]);
        let err = policy(
            TrustMetadata {
                roots: vec![v1.clone(), full.clone(), weak],
                ..Default::default()
            },
            T0,
        )
        .check_metadata()
        .unwrap_err();
        assert!(
            matches!(&err, TrustError::RootChain(m) if m.contains("keys of root version 2")),
            "{err}"
        );
        let mut strong = root(3, &[&k4], 1, &[&k2, &k4]);
        strong.add_signature(&k3);
        let out = policy(
            TrustMetadata {
                roots: vec![v1, full, strong],
                ..Default::default()
            },
            T0,
        )
        .check_metadata()
        .unwrap();
        assert!(out.starts_with("root version 3"), "{out}");
    }

    #[test]
    fn expired_revocation_list_is_refused() {
        let k1 = key(1);
        let list = Revocations {
            version: 1,
            issued: Timestamp::from_unix(T0),
            expires: Some(Timestamp::from_unix(T0 + 10)),
            keys: vec![],
            delegations: vec![],
        };
        let meta = TrustMetadata {
            roots: vec![root(1, &[&k1], 1, &[&k1])],
            revocations: Some(Signed::sign(list, &[&k1])),
            ..Default::default()
        };
        policy(meta.clone(), T0).check_metadata().unwrap();
        let err = policy(meta, T0 + 10).check_metadata().unwrap_err();
        assert!(matches!(err, TrustError::RevocationsExpired(_)), "{err}");
    }

    #[test]
    fn applied_metadata_takes_effect_at_once_and_never_goes_back() {
        let (k1, signer) = (key(1), key(7));
        let v1 = root(1, &[&k1], 1, &[&k1]);
        let delegation = Signed::sign(
            Delegation {
                name: "release".into(),
                key: key_to_hex(&signer.public()),
                models: vec!["*".into()],
                capabilities: None,
                issued: Timestamp::from_unix(T0),
                expires: Timestamp::from_unix(T0 + 500),
            },
            &[&k1],
        );
        let list = |version: u64, revoked: bool| {
            Signed::sign(
                Revocations {
                    version,
                    issued: Timestamp::from_unix(T0),
                    expires: None,
                    keys: if revoked {
                        vec![crate::metadata::RevokedKey {
                            key_id: signer.public().key_id(),
                            reason: Some("leaked".into()),
                            revoked_at: Timestamp::from_unix(T0),
                        }]
                    } else {
                        vec![]
                    },
                    delegations: vec![],
                },
                &[&k1],
            )
        };
        let meta = |version: u64, revoked: bool| TrustMetadata {
            roots: vec![v1.clone()],
            delegations: vec![delegation.clone()],
            revocations: Some(list(version, revoked)),
        };
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let device = policy(meta(1, false), T0);
        // A clone (what a host holds) sees what the original applies.
        let host = device.clone();
        let wasm = component(&signer, 1, T0 + 100);
        host.check(&wasm).unwrap();
        let applied = device.apply(meta(2, true), Some(&state)).unwrap();
        assert_eq!(
            applied,
            Applied {
                root_version: 1,
                revocations_version: 2,
                changed: true
            }
        );
        let err = host.check(&wasm).unwrap_err();
        assert!(matches!(err, TrustError::KeyRevoked { .. }), "{err}");
        // The old list again (a replay, or a coordinator restored from backup):
        // refused by the list in force and by the state on disk.
        for judge in [&device, &policy(meta(1, false), T0)] {
            let err = judge.apply(meta(1, false), Some(&state)).unwrap_err();
            let replayed = TrustError::MetadataRollback {
                what: "revocation list".into(),
                have: 2,
                got: 1,
            };
            assert_eq!(err.to_string(), replayed.to_string());
        }
        assert!(host.check(&wasm).is_err(), "a refusal changes nothing");
        // Metadata a stranger signed never gets in.
        let stranger = key(9);
        let forged = TrustMetadata {
            roots: vec![root(1, &[&stranger], 1, &[&stranger])],
            ..meta(3, false)
        };
        assert!(device.apply(forged, Some(&state)).is_err());
        // Nothing new: applied, unchanged.
        assert!(!device.apply(meta(2, true), Some(&state)).unwrap().changed);
    }

    /// A signed, claimed stand-in component (a bare module: the policy only reads sections).
    fn component(signer: &SecretKey, sequence: u64, expires: u64) -> Vec<u8> {
        let mut claims = Claims::new("churn", "1.0.0", sequence, b"model", "pipeline");
        claims.created_at = Timestamp::from_unix(T0);
        claims.expires_at = Some(Timestamp::from_unix(expires));
        let wasm = claims.embed(b"\0asm\x01\0\0\0").unwrap();
        wasmops_sign::sign(&wasm, signer).unwrap()
    }

    #[test]
    fn an_accepted_component_stays_accepted_after_expiry_and_below_the_floor() {
        let signer = key(7);
        let wasm = component(&signer, 3, T0 + 100);
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let at = |now: u64| TrustPolicy {
            now: Some(Timestamp::from_unix(now)),
            ..TrustPolicy::keys(vec![signer.public()]).with_state(state.clone())
        };
        at(T0).check(&wasm).unwrap();
        // After the claims expire, a new install is refused …
        let err = at(T0 + 100).check(&wasm).unwrap_err();
        assert!(matches!(err, TrustError::ClaimsExpired { .. }), "{err}");
        // … but the copy accepted at T0 still loads, whatever the clock says now.
        let a = at(T0 + 100)
            .check_accepted(&wasm, Timestamp::from_unix(T0))
            .unwrap();
        assert_eq!(a.claims.unwrap().sequence, 3);
        // A floor raised past it (crash between accept and switch, or a
        // provisional canary) refuses it as a new install, not as a restore.
        state.accept("churn", 4).unwrap();
        let err = at(T0).check(&wasm).unwrap_err();
        assert!(matches!(err, TrustError::Rollback { .. }), "{err}");
        at(T0)
            .check_accepted(&wasm, Timestamp::from_unix(T0))
            .unwrap();
        // Integrity is still checked: a flipped byte is refused either way.
        let mut bad = wasm.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(
            at(T0)
                .check_accepted(&bad, Timestamp::from_unix(T0))
                .is_err()
        );
        // And so is the signer: an untrusted key is not rescued by a past acceptance.
        let other = component(&key(8), 3, T0 + 100);
        assert!(
            at(T0)
                .check_accepted(&other, Timestamp::from_unix(T0))
                .is_err()
        );
    }
}
