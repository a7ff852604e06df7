//! Enrolment: how a device gets its own credentials, and how the coordinator
//! tells its devices from strangers.
//!
//! An operator creates an enrolment token for a device id or a pattern
//! (`gw-7`, `factory-12-*`), valid for a while. A device presents it once to
//! `POST /v1/enrol` and receives a credential of its own: an API token with
//! the `device` role bound to its id (downloads only), which is also its MQTT
//! password (username = device id) on the embedded broker. Re-enrolling a
//! device revokes its old credential. Messages from device ids without a
//! live credential are rejected: no presence, status or telemetry is recorded.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmops_api::{Credential, Enrolment, EnrolmentRequest};

use crate::auth::{self, Principal, Role};
use crate::error::CoordinatorError;
use crate::{Coordinator, audit};

/// The token name a device credential carries.
pub fn credential_name(device: &str) -> String {
    format!("device:{device}")
}

/// Creates an enrolment token (operator).
pub async fn create(
    c: &Coordinator,
    who: &Principal,
    req: EnrolmentRequest,
) -> Result<Enrolment, CoordinatorError> {
    if req.devices.is_empty()
        || !req
            .devices
            .chars()
            .all(|ch| ch == '*' || wasmops_protocol::topics::valid_device_id(&ch.to_string()))
    {
        return Err(CoordinatorError::BadRequest(format!(
            "`{}` is not a device id or pattern (letters, digits, `-`, `_`, `.`, `*`)",
            req.devices
        )));
    }
    let expires_at_ms = crate::now_ms() + (req.valid_for_s.min(365 * 86_400) * 1000) as i64;
    let token = auth::random_token("we")?;
    let mut tx = c.db.pool.begin().await?;
    sqlx::query("INSERT INTO enrolments (hash, pattern, created_by, created_at, expires_at, revoked) VALUES ($1, $2, $3, $4, $5, 0)")
        .bind(auth::hash(&token))
        .bind(&req.devices)
        .bind(&who.name)
        .bind(crate::now_ms())
        .bind(expires_at_ms)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &who.name,
        "enrolment.create",
        &req.devices,
        serde_json::json!({"expires_at_ms": expires_at_ms}),
    )
    .await?;
    tx.commit().await?;
    Ok(Enrolment {
        devices: req.devices,
        expires_at_ms,
        token,
    })
}

/// `*` matches any run of characters; everything else literally.
fn matches(pattern: &str, id: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == id,
        Some((head, rest)) => id.strip_prefix(head).is_some_and(|tail| {
            (0..=tail.len()).any(|i| tail.is_char_boundary(i) && matches(rest, &tail[i..]))
        }),
    }
}

/// A device presents its enrolment token and gets its own credential.
pub async fn enrol(
    c: &Coordinator,
    enrolment_token: &str,
    device: &str,
) -> Result<Credential, CoordinatorError> {
    if !wasmops_protocol::topics::valid_device_id(device) {
        return Err(CoordinatorError::BadRequest(format!(
            "device id `{device}` must be letters, digits, `-`, `_` or `.`"
        )));
    }
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT pattern, expires_at FROM enrolments WHERE hash = $1 AND revoked = 0",
    )
    .bind(auth::hash(enrolment_token))
    .fetch_optional(&c.db.pool)
    .await?;
    let Some((pattern, expires_at)) = row else {
        return Err(CoordinatorError::Forbidden(
            "unknown or revoked enrolment token".into(),
        ));
    };
    if expires_at < crate::now_ms() {
        return Err(CoordinatorError::Forbidden(
            "the enrolment token has expired".into(),
        ));
    }
    if !matches(&pattern, device) {
        return Err(CoordinatorError::Forbidden(format!(
            "the enrolment token is for `{pattern}`, not `{device}`"
        )));
    }
    let name = credential_name(device);
    let mut tx = c.db.pool.begin().await?;
    sqlx::query("UPDATE tokens SET revoked = 1 WHERE name = $1 AND role = 'device'")
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    let token = auth::create(&mut tx, &name, Role::Device).await?;
    audit::record(
        &mut tx,
        &format!("enrolment:{pattern}"),
        "device.enrol",
        device,
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    c.known.forget();
    Ok(Credential {
        device: device.to_string(),
        token,
        mqtt_username: device.to_string(),
    })
}

/// Which device ids hold a live credential; cached for a second so the
/// telemetry path does not query per message.
///
/// A device that has just enrolled must be recognised at once (issue 24.14:
/// a lookup that started before the enrolment committed used to refill the
/// cache with the old set after [`KnownDevices::forget`], so the new device's
/// first presence and status were rejected until the next resync). Two rules
/// prevent it: a lookup fills the cache only if no credential changed while it
/// ran (a generation counter), and a device missing from the cached set is
/// looked up on its own before anything is rejected.
#[derive(Default)]
pub struct KnownDevices {
    /// Bumped by every credential change.
    generation: AtomicU64,
    cache: Mutex<Option<(Instant, HashSet<String>)>>,
    /// Ids found missing by a direct lookup, with the generation they were
    /// missing in: a flood of messages from a stranger costs one query a second.
    missing: Mutex<HashMap<String, (Instant, u64)>>,
}

/// How long a lookup is trusted (credentials changed here invalidate it at once).
const KNOWN_TTL: Duration = Duration::from_secs(1);

impl KnownDevices {
    /// A credential was created or revoked: nothing cached before now counts.
    pub fn forget(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.cache.lock().unwrap() = None;
        self.missing.lock().unwrap().clear();
    }

    /// The credential generation (changes whenever [`KnownDevices::forget`] runs).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub async fn get(&self, c: &Coordinator) -> sqlx::Result<HashSet<String>> {
        if let Some((at, set)) = self.cache.lock().unwrap().as_ref()
            && at.elapsed() < KNOWN_TTL
        {
            return Ok(set.clone());
        }
        let generation = self.generation();
        let rows: Vec<(String,)> =
            sqlx::query_as("SELECT name FROM tokens WHERE role = 'device' AND revoked = 0")
                .fetch_all(&c.db.pool)
                .await?;
        let set: HashSet<String> = rows
            .into_iter()
            .filter_map(|(n,)| n.strip_prefix("device:").map(str::to_string))
            .collect();
        let mut cache = self.cache.lock().unwrap();
        if self.generation() == generation {
            *cache = Some((Instant::now(), set.clone()));
        }
        Ok(set)
    }

    pub async fn contains(&self, c: &Coordinator, device: &str) -> sqlx::Result<bool> {
        if self.get(c).await?.contains(device) {
            return Ok(true);
        }
        let generation = self.generation();
        if let Some((at, g)) = self.missing.lock().unwrap().get(device)
            && *g == generation
            && at.elapsed() < KNOWN_TTL
        {
            return Ok(false);
        }
        let found: Option<(i64,)> = sqlx::query_as(
            "SELECT 1 FROM tokens WHERE name = $1 AND role = 'device' AND revoked = 0",
        )
        .bind(credential_name(device))
        .fetch_optional(&c.db.pool)
        .await?;
        if found.is_some() {
            // The cached set is out of date.
            *self.cache.lock().unwrap() = None;
            return Ok(true);
        }
        let mut missing = self.missing.lock().unwrap();
        if missing.len() >= 10_000 {
            missing.clear();
        }
        if self.generation() == generation {
            missing.insert(device.to_string(), (Instant::now(), generation));
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        assert!(matches("gw-7", "gw-7") && !matches("gw-7", "gw-70"));
        assert!(
            matches("sim-*", "sim-0001") && matches("sim-*", "sim-") && !matches("sim-*", "sum-1")
        );
        assert!(matches("*-eu-*", "gw-eu-3") && !matches("*-eu-*", "gw-us-3"));
        assert!(matches("*", "anything"));
    }

    /// Issue 24.14: a device enrolled after the set was cached (here: without
    /// even telling the cache) is recognised at once; a stranger is not, and
    /// is not looked up again on every message.
    #[tokio::test]
    async fn a_device_enrolled_after_the_cache_filled_is_known_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        assert!(!c.known.contains(&c, "gw-new").await.unwrap());
        assert!(c.known.get(&c).await.unwrap().is_empty());
        crate::testing::credential(&c, "gw-new").await;
        // The cached set is stale and so is the "missing" note; within its TTL
        // only a credential change (forget) clears the latter …
        assert!(!c.known.get(&c).await.unwrap().contains("gw-new"));
        c.known.forget();
        assert!(c.known.contains(&c, "gw-new").await.unwrap());
        // … and a stale set alone never hides a device: refill the cache, add
        // another device behind its back, ask for it.
        c.known.get(&c).await.unwrap();
        let mut tx = c.db.pool.begin().await.unwrap();
        crate::auth::create(
            &mut tx,
            &super::credential_name("gw-late"),
            crate::auth::Role::Device,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(c.known.contains(&c, "gw-late").await.unwrap());
        assert!(!c.known.contains(&c, "stranger").await.unwrap());
    }
}
