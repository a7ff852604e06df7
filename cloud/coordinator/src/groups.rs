//! Desired versions per label selector ("groups", as Greengrass keeps them
//! per thing group). A deployment to a selector, or a rollout to one that
//! succeeds, records the selector's version; the reconciler gives it to
//! devices that match the selector later — enrolled since, relabelled, or
//! back from elsewhere — so a fleet converges instead of splitting.
//!
//! Rules:
//! - a device's group is the most recently set one whose selector it matches;
//! - a device whose own desired state was set after its group's (an explicit
//!   deployment to it) keeps it, and `devices` shows it as differing;
//! - a device an unfinished rollout holds is left to the rollout.

use std::collections::BTreeMap;

use wasmops_api::{Device, GroupTarget};
use wasmops_protocol::device::Desired;

use crate::Coordinator;
use crate::bus::publish_desired;
use crate::error::CoordinatorError;

/// One group: a selector and the desired state its devices should have.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub selector: BTreeMap<String, String>,
    pub desired: Desired,
    pub updated_at: i64,
}

/// Records `desired` as the version of every device `selector` matches, now
/// and later. An empty selector (devices named one by one) is no group.
pub async fn set(
    c: &Coordinator,
    selector: &BTreeMap<String, String>,
    desired: &Desired,
) -> sqlx::Result<()> {
    if selector.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO groups (selector, payload, updated_at) VALUES ($1, $2, $3)
         ON CONFLICT (selector) DO UPDATE SET payload = excluded.payload, updated_at = excluded.updated_at",
    )
    .bind(serde_json::to_string(selector).expect("a selector serialises"))
    .bind(serde_json::to_string(desired).expect("a desired state serialises"))
    .bind(crate::now_ms())
    .execute(&c.db.pool)
    .await?;
    Ok(())
}

/// Every group, oldest first.
pub async fn all(c: &Coordinator) -> Result<Vec<Group>, CoordinatorError> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT selector, payload, updated_at FROM groups ORDER BY updated_at")
            .fetch_all(&c.db.pool)
            .await?;
    rows.into_iter()
        .map(|(selector, payload, updated_at)| {
            let corrupt = |e: serde_json::Error| {
                CoordinatorError::Internal(format!("group {selector} is corrupt: {e}"))
            };
            Ok(Group {
                desired: serde_json::from_str(&payload).map_err(corrupt)?,
                selector: serde_json::from_str(&selector).map_err(corrupt)?,
                updated_at,
            })
        })
        .collect()
}

/// The group of a device with `labels`: the latest set whose selector matches.
pub fn group_for<'g>(labels: &BTreeMap<String, String>, groups: &'g [Group]) -> Option<&'g Group> {
    groups
        .iter()
        .filter(|g| g.selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .max_by_key(|g| g.updated_at)
}

/// Whether a device whose own desired state is `current` (payload's sha256
/// and when it was set) should be given its group's.
pub fn behind(current: Option<(&str, i64)>, group: &Group) -> bool {
    match current {
        None => true,
        Some((sha, set_at)) => sha != group.desired.sha256 && set_at < group.updated_at,
    }
}

/// Each device's group and whether it runs the group's version.
pub fn annotate(devices: &mut [Device], groups: &[Group]) {
    for d in devices {
        d.group = group_for(&d.labels, groups).map(|g| GroupTarget {
            selector: g.selector.clone(),
            model: g.desired.model.clone(),
            version: g.desired.version.clone(),
            in_sync: d.active_model.as_deref() == Some(g.desired.model.as_str())
                && d.active_version.as_deref() == Some(g.desired.version.as_str()),
        });
    }
}

/// Gives every device that is behind its group the group's desired state;
/// returns the devices given it.
pub async fn reconcile(c: &Coordinator) -> Result<Vec<String>, CoordinatorError> {
    let groups = all(c).await?;
    if groups.is_empty() {
        return Ok(vec![]);
    }
    let _one_writer = c.rollout_lock.lock().await;
    let devices = crate::devices::list(c).await?;
    let desired: BTreeMap<String, (String, i64)> = sqlx::query_as::<_, (String, String, i64)>(
        "SELECT device, payload, updated_at FROM desired WHERE payload <> 'null'",
    )
    .fetch_all(&c.db.pool)
    .await?
    .into_iter()
    .map(|(device, payload, at)| {
        let sha = serde_json::from_str::<Desired>(&payload)
            .map(|d| d.sha256)
            .unwrap_or_default();
        (device, (sha, at))
    })
    .collect();
    let held: std::collections::HashSet<String> = crate::devices::held(c)
        .await?
        .into_iter()
        .map(|(device, _, _)| device)
        .collect();
    let mut given = vec![];
    for d in &devices {
        let Some(g) = group_for(&d.labels, &groups) else {
            continue;
        };
        let current = desired.get(&d.id).map(|(sha, at)| (sha.as_str(), *at));
        if !behind(current, g) || held.contains(&d.id) {
            continue;
        }
        if g.desired.deployment.starts_with("dep-") {
            // The late joiner shows in its group's deployment.
            sqlx::query("INSERT INTO deployments (id, device, model, version, sha256, state, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, 'pending', 'reconciler', $6) ON CONFLICT DO NOTHING")
                .bind(&g.desired.deployment)
                .bind(&d.id)
                .bind(&g.desired.model)
                .bind(&g.desired.version)
                .bind(&g.desired.sha256)
                .bind(crate::now_ms())
                .execute(&c.db.pool)
                .await?;
        }
        publish_desired(c, &d.id, Some(&g.desired)).await?;
        tracing::info!(
            "device {} joins its group's {}@{}",
            d.id,
            g.desired.model,
            g.desired.version
        );
        crate::events::emit(
            c,
            "DeviceAssigned",
            d.id.clone(),
            serde_json::json!({"model": g.desired.model, "version": g.desired.version, "selector": g.selector, "deployment": g.desired.deployment}),
        );
        given.push(d.id.clone());
    }
    Ok(given)
}

/// Reconciles every few seconds. Never returns.
pub async fn run_reconciler(c: std::sync::Arc<Coordinator>) {
    // A late joiner is served within this; each pass reads the devices,
    // groups and desired tables once (about a millisecond for 200 devices).
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        if c.bus.get().is_none() {
            continue;
        }
        if let Err(e) = reconcile(&c).await {
            tracing::error!("group reconciler: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(selector: &[(&str, &str)], sha: &str, at: i64) -> Group {
        Group {
            selector: selector
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            desired: Desired {
                deployment: "dep-1".into(),
                model: "m".into(),
                version: sha.into(),
                sha256: sha.into(),
                size_bytes: 1,
                probe: None,
                probe_artifact: None,
                mode: Default::default(),
                provisional: false,
            },
            updated_at: at,
        }
    }

    #[test]
    fn the_latest_matching_group_wins_and_newer_own_states_stay() {
        let groups = [
            group(&[("fleet", "a")], "s1", 10),
            group(&[("fleet", "a"), ("site", "eu")], "s2", 20),
            group(&[("fleet", "b")], "s3", 30),
        ];
        let labels = |l: &[(&str, &str)]| -> BTreeMap<String, String> {
            l.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let eu = labels(&[("fleet", "a"), ("site", "eu")]);
        assert_eq!(group_for(&eu, &groups).unwrap().desired.sha256, "s2");
        let us = labels(&[("fleet", "a"), ("site", "us")]);
        assert_eq!(group_for(&us, &groups).unwrap().desired.sha256, "s1");
        assert!(group_for(&labels(&[("fleet", "c")]), &groups).is_none());
        let g = &groups[1];
        assert!(behind(None, g), "a device with nothing joins");
        assert!(
            behind(Some(("old", 5)), g),
            "a state from before the group is replaced"
        );
        assert!(
            !behind(Some(("mine", 25)), g),
            "a later explicit deployment stays"
        );
        assert!(!behind(Some(("s2", 5)), g), "already there");
    }
}
