//! Enrolment: how a device gets its own credentials, and how the coordinator
//! tells its devices from strangers.
//!
//! An operator creates an enrolment token for a device id or a pattern
//! (`gw-7`, `factory-12-*`), valid for a day (30 days at most). A device
//! presents it to `POST /v1/enrol` and receives a credential of its own: an
//! API token with the `device` role bound to its id (downloads only), which
//! is also its MQTT password (username = device id) on the embedded broker.
//!
//! A leaked token is worth little: each device id may use it once (or the
//! `uses_per_device` its maker allowed), and it never replaces the credential
//! of an id that is enrolled already — the real device keeps working and the
//! attempt is refused — unless an operator said so (`reenrol` when making it,
//! or `wasmops devices reset ID`, which revokes the id's credential). Messages
//! from device ids without a live credential are rejected: no presence,
//! status or telemetry is recorded.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmops_api::{
    Credential, Enrolment, EnrolmentRequest, MAX_ENROLMENT_VALIDITY_S, MAX_USES_PER_DEVICE,
};

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
    if req.valid_for_s == 0 || req.valid_for_s > MAX_ENROLMENT_VALIDITY_S {
        return Err(CoordinatorError::BadRequest(format!(
            "valid_for_s {}: an enrolment token is valid for 1 s to {} days",
            req.valid_for_s,
            MAX_ENROLMENT_VALIDITY_S / 86_400
        )));
    }
    if req.uses_per_device == 0 || req.uses_per_device > MAX_USES_PER_DEVICE {
        return Err(CoordinatorError::BadRequest(format!(
            "uses_per_device {}: 1 to {MAX_USES_PER_DEVICE}",
            req.uses_per_device
        )));
    }
    let expires_at_ms = crate::now_ms() + (req.valid_for_s * 1000) as i64;
    let token = auth::random_token("we")?;
    let mut tx = c.db.pool.begin().await?;
    sqlx::query("INSERT INTO enrolments (hash, pattern, created_by, created_at, expires_at, revoked, uses_per_device, reenrol) VALUES ($1, $2, $3, $4, $5, 0, $6, $7)")
        .bind(auth::hash(&token))
        .bind(&req.devices)
        .bind(&who.name)
        .bind(crate::now_ms())
        .bind(expires_at_ms)
        .bind(req.uses_per_device as i64)
        .bind(i64::from(req.reenrol))
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        &who.name,
        "enrolment.create",
        &req.devices,
        serde_json::json!({"expires_at_ms": expires_at_ms, "uses_per_device": req.uses_per_device, "reenrol": req.reenrol}),
    )
    .await?;
    tx.commit().await?;
    Ok(Enrolment {
        devices: req.devices,
        expires_at_ms,
        token,
        uses_per_device: req.uses_per_device,
        reenrol: req.reenrol,
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
    public_key: Option<&str>,
) -> Result<Credential, CoordinatorError> {
    if !wasmops_protocol::topics::valid_device_id(device) {
        return Err(CoordinatorError::BadRequest(format!(
            "device id `{device}` must be letters, digits, `-`, `_` or `.`"
        )));
    }
    // The device's certificate, made before anything is used up.
    let client_cert = match (public_key, c.device_ca()) {
        (Some(key), Some(ca)) => {
            let raw = hex::decode(key)
                .map_err(|_| CoordinatorError::BadRequest("public_key must be hex".into()))?;
            Some(
                ca.issue_client(device, &raw)
                    .map_err(|e| CoordinatorError::BadRequest(format!("public_key: {e}")))?,
            )
        }
        (None, _) if c.client_certs() => {
            return Err(CoordinatorError::BadRequest(
                "this fleet authenticates devices by certificate: the enrolment must carry the device's public_key (an agent older than this coordinator cannot join)".into(),
            ));
        }
        _ => None,
    };
    let enrolment = auth::hash(enrolment_token);
    let row: Option<(String, i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT pattern, expires_at, uses_per_device, reenrol FROM enrolments WHERE hash = $1 AND revoked = 0",
    )
    .bind(&enrolment)
    .fetch_optional(&c.db.pool)
    .await?;
    let Some((pattern, expires_at, uses_per_device, reenrol)) = row else {
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
    // Tokens made before uses were counted allow one use per id, as new ones do.
    let allowed = uses_per_device.unwrap_or(1).max(1);
    let reenrol = reenrol.unwrap_or(0) != 0;
    let name = credential_name(device);
    let mut tx = c.db.pool.begin().await?;
    // Counted first, in one statement (two racing enrolments cannot both
    // take the last use on either backend).
    let counted = sqlx::query(
        "INSERT INTO enrolment_uses (enrolment, device, uses, last_at) VALUES ($1, $2, 1, $3)
         ON CONFLICT (enrolment, device) DO UPDATE SET uses = enrolment_uses.uses + 1, last_at = $3
         WHERE enrolment_uses.uses < $4",
    )
    .bind(&enrolment)
    .bind(device)
    .bind(crate::now_ms())
    .bind(allowed)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if counted == 0 {
        drop(tx);
        refused(c, &pattern, device, "token used up").await;
        return Err(CoordinatorError::Forbidden(format!(
            "this enrolment token was used for `{device}` already ({allowed} use{} allowed): ask an operator for a new one",
            if allowed == 1 { "" } else { "s" }
        )));
    }
    let live = sqlx::query(
        "UPDATE tokens SET revoked = 1 WHERE name = $1 AND role = 'device' AND revoked = 0",
    )
    .bind(&name)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if live > 0 && !reenrol {
        drop(tx);
        refused(c, &pattern, device, "already enrolled").await;
        return Err(CoordinatorError::Conflict(format!(
            "device `{device}` is enrolled already; its credential stays. If this is that device and it lost its credential, an operator runs `wasmops devices reset {device}` (or makes an enrolment with --reenrol)"
        )));
    }
    let token = auth::create(&mut tx, &name, Role::Device, None).await?;
    // Before the commit: a broker that cannot be told fails the enrolment,
    // and nothing is used up.
    crate::mosquitto::send(c, crate::mosquitto::device_commands(device, &token)).await?;
    audit::record(
        &mut tx,
        &format!("enrolment:{pattern}"),
        "device.enrol",
        device,
        serde_json::json!({"replaced_credential": live > 0}),
    )
    .await?;
    tx.commit().await?;
    c.known.forget();
    Ok(Credential {
        device: device.to_string(),
        token,
        mqtt_username: device.to_string(),
        control_key: Some(c.control_key_hex()),
        client_cert,
    })
}

/// Records a refused enrolment in the audit log (best effort: the refusal
/// stands whether or not it is recorded).
async fn refused(c: &Coordinator, pattern: &str, device: &str, why: &str) {
    let record = async {
        let mut tx = c.db.pool.begin().await?;
        audit::record(
            &mut tx,
            &format!("enrolment:{pattern}"),
            "device.enrol.refused",
            device,
            serde_json::json!({"why": why}),
        )
        .await?;
        tx.commit().await
    };
    if let Err(e) = record.await {
        tracing::warn!("cannot audit the refused enrolment of {device}: {e}");
    }
}

/// An operator revokes a device's credential: the device can no longer log
/// in or download, and may enrol again with a fresh enrolment token.
pub async fn reset(
    c: &Coordinator,
    who: &Principal,
    device: &str,
) -> Result<wasmops_api::TokensRevoked, CoordinatorError> {
    if !wasmops_protocol::topics::valid_device_id(device) {
        return Err(CoordinatorError::BadRequest(format!(
            "device id `{device}` must be letters, digits, `-`, `_` or `.`"
        )));
    }
    let name = credential_name(device);
    let revoked = revoke(c, who, &name, ("device.reset", device)).await?;
    if revoked == 0 {
        return Err(CoordinatorError::NotFound(format!(
            "device `{device}` has no live credential"
        )));
    }
    Ok(wasmops_api::TokensRevoked { name, revoked })
}

/// Revokes the live tokens named `name`, audited as `(action, subject)`:
/// how many, 0 (and nothing recorded) when none was live. A device's
/// credential (`device:{id}`) is a device reset, whichever route revokes it:
/// the managed Mosquitto forgets the device and the known set is dropped.
pub async fn revoke(
    c: &Coordinator,
    who: &Principal,
    name: &str,
    (action, subject): (&str, &str),
) -> Result<u64, CoordinatorError> {
    let mut tx = c.db.pool.begin().await?;
    let revoked = auth::revoke(&mut tx, name).await?;
    if revoked == 0 {
        return Ok(0);
    }
    audit::record(
        &mut tx,
        &who.name,
        action,
        subject,
        serde_json::json!({"revoked": revoked}),
    )
    .await?;
    if let Some(device) = name.strip_prefix(&credential_name("")) {
        crate::mosquitto::send(c, crate::mosquitto::forget_commands(device)).await?;
    }
    tx.commit().await?;
    c.known.forget();
    Ok(revoked)
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
    use super::*;

    fn operator() -> Principal {
        Principal {
            name: "ops".into(),
            role: Role::Operator,
        }
    }

    fn request(devices: &str, uses: u32, reenrol: bool) -> EnrolmentRequest {
        EnrolmentRequest {
            devices: devices.into(),
            valid_for_s: 3600,
            uses_per_device: uses,
            reenrol,
        }
    }

    async fn audited(c: &Coordinator, action: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit WHERE action = $1")
            .bind(action)
            .fetch_one(&c.db.pool)
            .await
            .unwrap();
        n
    }

    /// Issue 23: one leaked enrolment token takes over nothing. Each id
    /// enrols once with it; a second enrolment of an enrolled id is refused
    /// and the real device's credential stays live; an operator's reset (or
    /// a `reenrol` token) lets it enrol again; every refusal is audited.
    #[tokio::test]
    async fn enrolment_tokens_are_single_use_and_never_replace_a_live_credential() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        let token = create(&c, &operator(), request("gw-*", 1, false))
            .await
            .unwrap()
            .token;
        let first = enrol(&c, &token, "gw-1", None).await.unwrap();
        let valid = |t: String| {
            let c = c.clone();
            async move { auth::authenticate(&c.db, &t).await.unwrap().is_some() }
        };
        assert!(valid(first.token.clone()).await);
        // The same id again (a thief with the leaked token, or the device
        // itself after losing its state): refused, the credential stays.
        let again = enrol(&c, &token, "gw-1", None).await.unwrap_err();
        assert!(
            matches!(&again, CoordinatorError::Forbidden(m) if m.contains("used for `gw-1` already")),
            "{again:?}"
        );
        assert!(valid(first.token.clone()).await);
        // Another id of the pattern is still fine.
        enrol(&c, &token, "gw-2", None).await.unwrap();
        // A fresh token over an enrolled id: 409, credential untouched, and
        // the refusal does not use the token up for that id.
        let fresh = create(&c, &operator(), request("gw-1", 1, false))
            .await
            .unwrap()
            .token;
        let taken = enrol(&c, &fresh, "gw-1", None).await.unwrap_err();
        assert!(
            matches!(&taken, CoordinatorError::Conflict(m) if m.contains("wasmops devices reset gw-1")),
            "{taken:?}"
        );
        assert!(valid(first.token.clone()).await);
        assert_eq!(audited(&c, "device.enrol.refused").await, 2);
        // An operator resets gw-1: its credential dies, and the fresh token
        // (unused by the refusal) enrols it again.
        let reset_done = reset(&c, &operator(), "gw-1").await.unwrap();
        assert_eq!(reset_done.revoked, 1);
        assert!(!valid(first.token.clone()).await);
        let second = enrol(&c, &fresh, "gw-1", None).await.unwrap();
        assert!(valid(second.token.clone()).await);
        assert!(matches!(
            reset(&c, &operator(), "gw-9").await,
            Err(CoordinatorError::NotFound(_))
        ));
        // A `reenrol` token with two uses replaces a live credential, twice.
        let spare = create(&c, &operator(), request("gw-1", 2, true))
            .await
            .unwrap()
            .token;
        let third = enrol(&c, &spare, "gw-1", None).await.unwrap();
        assert!(!valid(second.token).await && valid(third.token.clone()).await);
        enrol(&c, &spare, "gw-1", None).await.unwrap();
        assert!(enrol(&c, &spare, "gw-1", None).await.is_err());
        assert!(!valid(third.token).await);
        // Out-of-range requests are client errors naming the limit.
        for bad in [
            EnrolmentRequest {
                valid_for_s: MAX_ENROLMENT_VALIDITY_S + 1,
                ..request("gw-*", 1, false)
            },
            request("gw-*", 0, false),
            request("gw-*", MAX_USES_PER_DEVICE + 1, false),
        ] {
            assert!(matches!(
                create(&c, &operator(), bad).await,
                Err(CoordinatorError::BadRequest(_))
            ));
        }
    }

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
            None,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        assert!(c.known.contains(&c, "gw-late").await.unwrap());
        assert!(!c.known.contains(&c, "stranger").await.unwrap());
    }
}
