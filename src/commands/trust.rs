//! `wasmops trust ...`: the root of trust and what it vouches for.
//!
//! The root key stays offline; the trust directory it signs travels to devices,
//! which hold only the root public key.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Subcommand;
use wasmops_sign::PublicKey;
use wasmops_trust::{Delegation, Signed, Timestamp, TrustDir, ops};

use crate::files;

#[derive(Subcommand)]
pub enum TrustCommand {
    /// Create root version 1 for a root key (make one with `wasmops keygen --out root`).
    Init {
        #[arg(long, default_value = "trust")]
        dir: PathBuf,
        #[arg(long)]
        root_key: PathBuf,
        /// RFC 3339 time or a duration such as 365d.
        #[arg(long, default_value = "365d")]
        expires: String,
    },
    /// Let a release key sign models (by name pattern) until a date.
    Delegate {
        #[arg(long, default_value = "trust")]
        dir: PathBuf,
        #[arg(long)]
        root_key: PathBuf,
        /// The release public key.
        #[arg(long)]
        key: PathBuf,
        /// A name for the delegation, e.g. release-2026q4.
        #[arg(long)]
        name: String,
        /// Model names the key may sign (`*` wildcard); repeatable.
        #[arg(long = "models", default_value = "*")]
        models: Vec<String>,
        /// Capabilities its components may claim (default: whatever hosts grant); repeatable.
        #[arg(long = "capability")]
        capabilities: Vec<String>,
        #[arg(long, default_value = "90d")]
        expires: String,
    },
    /// Revoke a key or a delegation (a new, higher-versioned revocation list).
    Revoke {
        #[arg(long, default_value = "trust")]
        dir: PathBuf,
        #[arg(long)]
        root_key: PathBuf,
        /// Public key file to revoke.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Key id (16 hex digits) to revoke.
        #[arg(long)]
        key_id: Option<String>,
        /// Delegation name to revoke.
        #[arg(long)]
        delegation: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// When devices must fetch a fresh list (freeze protection), e.g. 30d.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Replace the root key: root N+1, signed by the current root key and the new one.
    RotateRoot {
        #[arg(long, default_value = "trust")]
        dir: PathBuf,
        /// The current root key.
        #[arg(long)]
        root_key: PathBuf,
        #[arg(long)]
        new_root_key: PathBuf,
        #[arg(long, default_value = "365d")]
        expires: String,
    },
    /// Publish the trust directory to the coordinator (after a revoke,
    /// delegate or rotate-root): it checks it against its root, serves it to
    /// devices (which apply it without a restart), and refuses deployments
    /// of versions it no longer vouches for.
    Push {
        #[arg(long, default_value = "trust")]
        dir: PathBuf,
        #[command(flatten)]
        conn: crate::args::Connection,
    },
    /// Print the trust directory and check it against a root public key.
    Show {
        #[arg(long, default_value = "trust")]
        dir: PathBuf,
        /// The root public key devices hold; checks the chain when given.
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

fn when(text: &str) -> Result<Timestamp> {
    Timestamp::parse_or_after(text, Timestamp::now()).map_err(anyhow::Error::msg)
}

/// Manage the root of trust: init, delegate, revoke, rotate-root, push, show.
#[derive(clap::Parser)]
pub struct TrustCmd {
    #[command(subcommand)]
    pub command: TrustCommand,
}

impl TrustCmd {
    pub fn execute(self) -> Result<()> {
        run(self.command)
    }
}

pub fn run(cmd: TrustCommand) -> Result<()> {
    match cmd {
        TrustCommand::Init {
            dir,
            root_key,
            expires,
        } => {
            let key = ops::read_secret(&root_key)?;
            let path = ops::init(&TrustDir::new(dir), &key, when(&expires)?)?;
            eprintln!(
                "wrote {} (root key {}); devices need only the root public key",
                path.display(),
                key.public().key_id()
            );
        }
        TrustCommand::Delegate {
            dir,
            root_key,
            key,
            name,
            models,
            capabilities,
            expires,
        } => {
            let root_key = ops::read_secret(&root_key)?;
            let release = ops::read_public(&key)?;
            let grant = ops::Grant {
                name,
                models,
                capabilities: (!capabilities.is_empty()).then_some(capabilities),
                expires: when(&expires)?,
            };
            if grant.expires <= Timestamp::now() {
                eprintln!(
                    "warning: this delegation is already expired ({}); devices will refuse its key",
                    grant.expires
                );
            }
            let (path, root) = ops::delegate(&TrustDir::new(dir), &root_key, &release, grant)?;
            if root.signed.threshold > 1 {
                eprintln!(
                    "root version {} needs {} signatures; add the others with the other root keys",
                    root.signed.version, root.signed.threshold
                );
            }
            eprintln!(
                "wrote {}: key {} may sign models {:?}",
                path.display(),
                release.key_id(),
                Signed::<Delegation>::parse(&files::read(&path)?)?
                    .signed
                    .models
            );
        }
        TrustCommand::Revoke {
            dir,
            root_key,
            key,
            key_id,
            delegation,
            reason,
            expires,
        } => {
            let root_key = ops::read_secret(&root_key)?;
            let key_id = match (key, key_id) {
                (Some(p), None) => Some(ops::read_public(&p)?.key_id()),
                (None, Some(id)) if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Some(id.to_lowercase())
                }
                (None, Some(id)) => {
                    bail!("key id `{id}` must be 16 hex digits (as `wasmops verify` prints them)")
                }
                (Some(_), Some(_)) => bail!("give --key or --key-id, not both"),
                (None, None) => None,
            };
            if key_id.is_none() && delegation.is_none() {
                bail!("nothing to revoke: give --key, --key-id or --delegation");
            }
            let expires = expires.as_deref().map(when).transpose()?;
            let (path, list) = ops::revoke(
                &TrustDir::new(dir),
                &root_key,
                key_id.clone(),
                delegation.clone(),
                reason,
                expires,
            )?;
            if let Some(id) = key_id {
                eprintln!("revoked key {id}");
            }
            if let Some(name) = delegation {
                eprintln!("revoked delegation {name}");
            }
            eprintln!(
                "wrote {} (version {}); publish it with `wasmops trust push`",
                path.display(),
                list.version
            );
        }
        TrustCommand::RotateRoot {
            dir,
            root_key,
            new_root_key,
            expires,
        } => {
            let old = ops::read_secret(&root_key)?;
            let new = ops::read_secret(&new_root_key)?;
            let path = ops::rotate_root(&TrustDir::new(dir), &old, &new, when(&expires)?)?;
            eprintln!(
                "wrote {}: root key {} replaces {}. Re-issue delegations with the new key (`wasmops trust delegate`); devices walk the root versions one by one",
                path.display(),
                new.public().key_id(),
                old.public().key_id()
            );
        }
        TrustCommand::Push { dir, conn } => {
            let meta = TrustDir::new(&dir).load()?;
            let published = conn
                .client()?
                .publish_trust(&serde_json::to_value(&meta)?)?;
            eprintln!(
                "{}: root version {}, revocation list version {}",
                if published.changed {
                    "published"
                } else {
                    "already in force"
                },
                published.root_version,
                published.revocations_version
            );
        }
        TrustCommand::Show { dir, root } => show(&TrustDir::new(dir), root.as_deref())?,
    }
    Ok(())
}

fn show(dir: &TrustDir, root: Option<&Path>) -> Result<()> {
    let meta = dir.load()?;
    for r in &meta.roots {
        let ids: Vec<String> = r
            .signed
            .public_keys()?
            .iter()
            .map(PublicKey::key_id)
            .collect();
        println!(
            "root v{}: keys {:?}, threshold {}, expires {}",
            r.signed.version, ids, r.signed.threshold, r.signed.expires
        );
    }
    for d in &meta.delegations {
        println!(
            "delegation {}: key {}, models {:?}, expires {}",
            d.signed.name,
            d.signed.public_key()?.key_id(),
            d.signed.models,
            d.signed.expires
        );
    }
    if let Some(r) = &meta.revocations {
        println!(
            "revocations v{}: keys {:?}, delegations {:?}",
            r.signed.version,
            r.signed.keys.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
            r.signed.delegations
        );
    }
    if let Some(root) = root {
        let anchor = ops::read_public(root)?;
        let policy = wasmops_trust::TrustPolicy::root(vec![anchor], meta);
        let status = policy.check_metadata()?;
        println!(
            "chain OK from root key {}: {status}",
            ops::read_public(root)?.key_id()
        );
    }
    Ok(())
}
