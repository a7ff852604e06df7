//! API tokens with roles. Tokens are random, shown once, stored only as SHA-256.

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::CoordinatorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A device: downloads artifacts and posts its own telemetry, nothing else.
    Device,
    /// Reads everything.
    Viewer,
    /// Registers models and moves aliases.
    DataScientist,
    /// Deploys: aliases, rollouts.
    Operator,
    /// Everything, including tokens.
    Admin,
    /// A training worker (`wasmops worker`): claims runs, reads their
    /// datasets, reports results, registers what it built.
    Worker,
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fetch an artifact's bytes.
    Download,
    Read,
    Register,
    Alias,
    Deploy,
    /// Create enrolment tokens for devices.
    Enrol,
    ManageTokens,
    /// Post outcomes (labels) for predictions.
    Label,
    /// Push datasets, read their bytes, queue and cancel runs.
    Train,
    /// Claim runs and report on them (workers).
    Work,
    /// Read a dataset's bytes (training data may be sensitive: not viewers).
    ReadData,
    /// Publish trust metadata (root, delegations, revocations): admins only.
    ManageTrust,
    /// Post its own telemetry over HTTP (devices without MQTT: browser pages).
    Report,
}

impl Role {
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Device => matches!(action, Download | Report),
            Role::Viewer => matches!(action, Read | Download),
            Role::DataScientist => matches!(
                action,
                Read | Download | Register | Alias | Label | Train | ReadData
            ),
            Role::Worker => matches!(action, Read | Download | Register | Work | ReadData),
            Role::Operator => matches!(action, Read | Download | Alias | Deploy | Enrol | Label),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Device => "device",
            Role::Viewer => "viewer",
            Role::DataScientist => "data-scientist",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Worker => "worker",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Device,
            Role::Viewer,
            Role::DataScientist,
            Role::Operator,
            Role::Admin,
            Role::Worker,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

pub fn hash(token: &str) -> String {
    wasmops_trust::sha256_hex(token.as_bytes())
}

/// A fresh secret: `{prefix}_` and 48 hex digits.
pub fn random_token(prefix: &str) -> Result<String, CoordinatorError> {
    Ok(format!("{prefix}_{}", random_hex(24)?))
}

/// `bytes` random bytes as hex (ids, secrets).
pub fn random_hex(bytes: usize) -> Result<String, CoordinatorError> {
    let mut raw = vec![0u8; bytes];
    getrandom::fill(&mut raw)
        .map_err(|e| CoordinatorError::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(raw))
}

/// Creates a token inside `tx` and returns it (the only time it is visible);
/// it expires at `expires_at_ms` (`None`: never).
pub async fn create(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    role: Role,
    expires_at_ms: Option<i64>,
) -> Result<String, CoordinatorError> {
    let token = random_token("wo")?;
    sqlx::query(
        "INSERT INTO tokens (hash, name, role, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash(&token))
    .bind(name)
    .bind(role.as_str())
    .bind(crate::now_ms())
    .bind(expires_at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(token)
}

/// Every token, oldest first (names, roles, times; never hashes).
pub async fn list(db: &Db) -> sqlx::Result<Vec<wasmops_api::TokenInfo>> {
    let rows: Vec<(String, String, i64, Option<i64>, i64)> = sqlx::query_as(
        "SELECT name, role, created_at, expires_at, revoked FROM tokens ORDER BY created_at, name",
    )
    .fetch_all(&db.read)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(name, role, created_at_ms, expires_at_ms, revoked)| wasmops_api::TokenInfo {
                name,
                role,
                created_at_ms,
                expires_at_ms,
                revoked: revoked != 0,
            },
        )
        .collect())
}

/// Revokes every live token named `name` inside `tx`; how many.
pub async fn revoke(tx: &mut sqlx::Transaction<'_, sqlx::Any>, name: &str) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("UPDATE tokens SET revoked = 1 WHERE name = $1 AND revoked = 0")
            .bind(name)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    )
}

/// The first admin token, when the database has no token at all.
pub async fn bootstrap_admin(db: &Db) -> anyhow::Result<Option<String>> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tokens")
        .fetch_one(&db.pool)
        .await?;
    if n > 0 {
        return Ok(None);
    }
    let mut tx = db.pool.begin().await?;
    // Never expires: it is how an operator gets in at all (rotate it by
    // making another admin token and revoking `admin`).
    let token = create(&mut tx, "admin", Role::Admin, None).await?;
    crate::audit::record(
        &mut tx,
        "coordinator",
        "token.create",
        "admin",
        serde_json::json!({"role": "admin", "bootstrap": true}),
    )
    .await?;
    tx.commit().await?;
    Ok(Some(token))
}

/// The name of the in-process worker's token.
pub const IN_PROCESS_WORKER: &str = "in-process-worker";

/// A fresh worker token for the worker inside the coordinator's process;
/// the one a previous process made is revoked.
pub async fn in_process_worker_token(db: &Db) -> anyhow::Result<String> {
    let mut tx = db.pool.begin().await?;
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE name = $1 AND role = 'worker'")
        .bind(IN_PROCESS_WORKER)
        .execute(&mut *tx)
        .await?;
    let token = create(&mut tx, IN_PROCESS_WORKER, Role::Worker, None).await?;
    tx.commit().await?;
    Ok(token)
}

/// What a presented token is.
#[derive(Debug)]
pub enum Checked {
    Valid(Principal),
    /// A real token past its expiry (named, so its owner knows which).
    Expired {
        name: String,
        at_ms: i64,
    },
    /// Unknown or revoked.
    Refused,
}

pub async fn check(db: &Db, token: &str) -> sqlx::Result<Checked> {
    let row: Option<(String, String, Option<i64>)> =
        sqlx::query_as("SELECT name, role, expires_at FROM tokens WHERE hash = $1 AND revoked = 0")
            .bind(hash(token))
            .fetch_optional(&db.read)
            .await?;
    Ok(match row {
        Some((name, _, Some(at_ms))) if at_ms <= crate::now_ms() => {
            Checked::Expired { name, at_ms }
        }
        Some((name, role, _)) => match Role::parse(&role) {
            Some(role) => Checked::Valid(Principal { name, role }),
            None => Checked::Refused,
        },
        None => Checked::Refused,
    })
}

/// The principal behind a live, unexpired token.
pub async fn authenticate(db: &Db, token: &str) -> sqlx::Result<Option<Principal>> {
    Ok(match check(db, token).await? {
        Checked::Valid(p) => Some(p),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A token past its expiry is refused and named as expired; revoking is
    /// at once; a live one works.
    #[tokio::test]
    async fn tokens_expire_and_are_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        let mut tx = c.db.pool.begin().await.unwrap();
        let old = create(&mut tx, "old", Role::Viewer, Some(crate::now_ms() - 1))
            .await
            .unwrap();
        let live = create(
            &mut tx,
            "alice",
            Role::Viewer,
            Some(crate::now_ms() + 60_000),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(matches!(
            check(&c.db, &old).await.unwrap(),
            Checked::Expired { name, .. } if name == "old"
        ));
        assert!(authenticate(&c.db, &old).await.unwrap().is_none());
        assert_eq!(
            authenticate(&c.db, &live).await.unwrap().unwrap().name,
            "alice"
        );
        let mut tx = c.db.pool.begin().await.unwrap();
        assert_eq!(revoke(&mut tx, "alice").await.unwrap(), 1);
        tx.commit().await.unwrap();
        assert!(matches!(
            check(&c.db, &live).await.unwrap(),
            Checked::Refused
        ));
        let listed = list(&c.db).await.unwrap();
        let alice = listed.iter().find(|t| t.name == "alice").unwrap();
        assert!(alice.revoked && alice.expires_at_ms.is_some());
        // The first admin token never expires.
        assert!(
            listed
                .iter()
                .any(|t| t.name == "admin" && t.expires_at_ms.is_none())
        );
    }

    #[test]
    fn roles_are_least_privilege() {
        assert!(Role::Viewer.allows(Action::Read) && !Role::Viewer.allows(Action::Register));
        assert!(
            Role::DataScientist.allows(Action::Register)
                && !Role::DataScientist.allows(Action::Deploy)
        );
        assert!(Role::Operator.allows(Action::Deploy) && !Role::Operator.allows(Action::Register));
        assert!(
            !Role::Operator.allows(Action::ManageTokens)
                && Role::Admin.allows(Action::ManageTokens)
        );
        assert!(Role::Device.allows(Action::Download) && !Role::Device.allows(Action::Read));
        for r in [
            Role::Device,
            Role::Viewer,
            Role::DataScientist,
            Role::Operator,
            Role::Admin,
        ] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }
}
