//! Operations on a trust directory, done with the (offline) root key: create
//! root version 1, delegate to a release key, revoke, rotate the root; and
//! building a [`TrustPolicy`] from key files, the one way every program
//! (CLI, agent, coordinator) turns its trust settings into a policy.

use std::path::{Path, PathBuf};

use wasmops_sign::{PublicKey, SecretKey};

use crate::metadata::{RevokedKey, key_to_hex};
use crate::{Delegation, Revocations, Root, Signed, Timestamp, TrustDir, TrustError, TrustPolicy};

fn read(path: &Path) -> Result<Vec<u8>, TrustError> {
    std::fs::read(path).map_err(|e| TrustError::Io(format!("cannot read {}: {e}", path.display())))
}

/// A public key file (`wasmops keygen`'s `.pub`).
pub fn read_public(path: &Path) -> Result<PublicKey, TrustError> {
    PublicKey::from_bytes(&read(path)?)
        .map_err(|e| TrustError::Io(format!("{}: {e}", path.display())))
}

/// A secret key file (`wasmops keygen`'s `.key`).
pub fn read_secret(path: &Path) -> Result<SecretKey, TrustError> {
    SecretKey::from_bytes(&read(path)?)
        .map_err(|e| TrustError::Io(format!("{}: {e}", path.display())))
}

/// Whom to trust, as key files: a root public key with the trust directory it
/// signs (production), or plain release keys (development). `Ok(None)` when
/// nothing is configured.
pub fn policy_from_files(
    root: Option<&Path>,
    trust_dir: Option<&Path>,
    keys: &[PathBuf],
) -> Result<Option<TrustPolicy>, TrustError> {
    match (root, trust_dir, keys.is_empty()) {
        (Some(root), Some(dir), true) => Ok(Some(TrustPolicy::root(vec![read_public(root)?], TrustDir::new(dir).load()?))),
        (None, None, false) => Ok(Some(TrustPolicy::keys(keys.iter().map(|k| read_public(k)).collect::<Result<_, _>>()?))),
        (None, None, true) => Ok(None),
        _ => Err(TrustError::Io("trust either a root public key with its trust directory, or release keys; not both, and not one without the other".into())),
    }
}

/// Refuses a root key that does not belong to the newest root: signing with it
/// would produce metadata devices reject.
fn current_root(dir: &TrustDir, key: &SecretKey) -> Result<Signed<Root>, TrustError> {
    let root = dir.latest_root()?;
    if !root.signed.keys.contains(&key_to_hex(&key.public())) {
        return Err(TrustError::Io(format!(
            "key {} is not a key of root version {} in {}",
            key.public().key_id(),
            root.signed.version,
            dir.path().display()
        )));
    }
    Ok(root)
}

/// Creates root version 1 with `root_key` as its one key.
pub fn init(
    dir: &TrustDir,
    root_key: &SecretKey,
    expires: Timestamp,
) -> Result<PathBuf, TrustError> {
    if dir.root_path(1).exists() {
        return Err(TrustError::Io(format!(
            "{} already exists; use `wasmops trust rotate-root` to change the root",
            dir.root_path(1).display()
        )));
    }
    let root = Root {
        version: 1,
        expires,
        threshold: 1,
        keys: vec![key_to_hex(&root_key.public())],
    };
    dir.save_root(&Signed::sign(root, &[root_key]))
}

/// What a delegation lets a release key do.
#[derive(Debug, Clone)]
pub struct Grant {
    /// A name for the delegation, e.g. release-2026q4.
    pub name: String,
    /// Model names the key may sign (`*` wildcard).
    pub models: Vec<String>,
    /// Capabilities its components may claim (`None`: whatever hosts grant).
    pub capabilities: Option<Vec<String>>,
    pub expires: Timestamp,
}

/// Signs a delegation of `grant` to `release` with the current root key.
/// Returns where it was written and the root it was signed under.
pub fn delegate(
    dir: &TrustDir,
    root_key: &SecretKey,
    release: &PublicKey,
    grant: Grant,
) -> Result<(PathBuf, Signed<Root>), TrustError> {
    let name = &grant.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        || name.starts_with('.')
    {
        return Err(TrustError::Io(format!(
            "delegation name `{name}` must be letters, digits, `-`, `_` or `.`"
        )));
    }
    let root = current_root(dir, root_key)?;
    let d = Delegation {
        name: grant.name,
        key: key_to_hex(release),
        models: grant.models,
        capabilities: grant.capabilities,
        issued: Timestamp::now(),
        expires: grant.expires,
    };
    Ok((dir.save_delegation(&Signed::sign(d, &[root_key]))?, root))
}

/// Adds a key id and/or a delegation name to the revocation list (a new,
/// higher version), due for refresh at `expires` if given.
pub fn revoke(
    dir: &TrustDir,
    root_key: &SecretKey,
    key_id: Option<String>,
    delegation: Option<String>,
    reason: Option<String>,
    expires: Option<Timestamp>,
) -> Result<(PathBuf, Revocations), TrustError> {
    current_root(dir, root_key)?;
    if key_id.is_none() && delegation.is_none() {
        return Err(TrustError::Io(
            "nothing to revoke: give a key, a key id or a delegation".into(),
        ));
    }
    let mut list = match dir.load()?.revocations {
        Some(r) => r.signed,
        None => Revocations {
            version: 0,
            issued: Timestamp::now(),
            expires: None,
            keys: vec![],
            delegations: vec![],
        },
    };
    let now = Timestamp::now();
    if let Some(id) = key_id {
        list.keys.retain(|k| k.key_id != id);
        list.keys.push(RevokedKey {
            key_id: id,
            reason,
            revoked_at: now,
        });
    }
    if let Some(name) = delegation
        && !list.delegations.contains(&name)
    {
        list.delegations.push(name);
    }
    list.version += 1;
    list.issued = now;
    list.expires = expires;
    let path = dir.save_revocations(&Signed::sign(list.clone(), &[root_key]))?;
    Ok((path, list))
}

/// Root N+1 with `new` as its key, signed by the current root key and the new
/// one (TUF: devices walk the root versions one by one).
pub fn rotate_root(
    dir: &TrustDir,
    old: &SecretKey,
    new: &SecretKey,
    expires: Timestamp,
) -> Result<PathBuf, TrustError> {
    let current = current_root(dir, old)?;
    let root = Root {
        version: current.signed.version + 1,
        expires,
        threshold: 1,
        keys: vec![key_to_hex(&new.public())],
    };
    dir.save_root(&Signed::sign(root, &[old, new]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_delegate_revoke_rotate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TrustDir::new(tmp.path());
        let (root, release, next) = (
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
            SecretKey::generate().unwrap(),
        );
        let later = Timestamp::parse_or_after("30d", Timestamp::now()).unwrap();
        init(&dir, &root, later).unwrap();
        assert!(init(&dir, &root, later).is_err(), "root 1 exists");
        let grant = Grant {
            name: "rel".into(),
            models: vec!["*".into()],
            capabilities: None,
            expires: later,
        };
        assert!(
            delegate(&dir, &release, &release.public(), grant.clone()).is_err(),
            "only a root key delegates"
        );
        assert!(
            delegate(
                &dir,
                &root,
                &release.public(),
                Grant {
                    name: ".x".into(),
                    ..grant.clone()
                }
            )
            .is_err()
        );
        delegate(&dir, &root, &release.public(), grant).unwrap();
        let (_, list) = revoke(&dir, &root, None, Some("rel".into()), None, None).unwrap();
        assert_eq!(
            (list.version, list.delegations.clone()),
            (1, vec!["rel".to_string()])
        );
        rotate_root(&dir, &root, &next, later).unwrap();
        assert_eq!(dir.latest_root().unwrap().signed.version, 2);
        assert!(
            revoke(&dir, &root, Some("00".repeat(8)), None, None, None).is_err(),
            "the old root key is no longer current"
        );
        let policy = policy_from_files(Some(&tmp.path().join("none.pub")), Some(tmp.path()), &[]);
        assert!(policy.is_err(), "a missing key file is named");
        assert!(policy_from_files(None, None, &[]).unwrap().is_none());
    }
}
