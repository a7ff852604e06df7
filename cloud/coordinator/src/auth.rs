//! API tokens with roles. Tokens are random, shown once, stored only as SHA-256.

use serde::{Deserialize, Serialize};

use crate::db::Db;
use crate::error::CoordinatorError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A device: downloads artifacts, nothing else.
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
}

impl Role {
    pub fn allows(self, action: Action) -> bool {
        use Action::*;
        match self {
            Role::Admin => true,
            Role::Device => action == Download,
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

/// Creates a token inside `tx` and returns it (the only time it is visible).
pub async fn create(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    name: &str,
    role: Role,
) -> Result<String, CoordinatorError> {
    let token = random_token("wo")?;
    sqlx::query("INSERT INTO tokens (hash, name, role, created_at) VALUES ($1, $2, $3, $4)")
        .bind(hash(&token))
        .bind(name)
        .bind(role.as_str())
        .bind(crate::now_ms())
        .execute(&mut **tx)
        .await?;
    Ok(token)
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
    let token = create(&mut tx, "admin", Role::Admin).await?;
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
    let token = create(&mut tx, IN_PROCESS_WORKER, Role::Worker).await?;
    tx.commit().await?;
    Ok(token)
}

pub async fn authenticate(db: &Db, token: &str) -> sqlx::Result<Option<Principal>> {
    let row: Option<(String, String)> =
        sqlx::query_as("SELECT name, role FROM tokens WHERE hash = $1 AND revoked = 0")
            .bind(hash(token))
            .fetch_optional(&db.read)
            .await?;
    Ok(row.and_then(|(name, role)| Role::parse(&role).map(|role| Principal { name, role })))
}

#[cfg(test)]
mod tests {
    use super::*;

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
