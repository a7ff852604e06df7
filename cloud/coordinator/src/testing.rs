//! Shared setup for the unit tests: a coordinator on a fresh SQLite file with
//! no broker, and devices given credentials directly.

use std::sync::Arc;

use crate::Coordinator;

/// A coordinator in `dir` (its MQTT address points nowhere: nothing is published).
pub async fn open(dir: &std::path::Path) -> Arc<Coordinator> {
    let mut config =
        crate::CoordinatorConfig::new(dir.to_path_buf(), wasmops_trust::TrustPolicy::keys(vec![]));
    config.mqtt = crate::MqttConfig::External("mqtt://127.0.0.1:1".into());
    Coordinator::open(&config).await.unwrap()
}

/// Gives `device` a credential, as enrolment does, without telling any cache.
pub async fn credential(c: &Coordinator, device: &str) {
    let mut tx = c.db.pool.begin().await.unwrap();
    crate::auth::create(
        &mut tx,
        &crate::enrolment::credential_name(device),
        crate::auth::Role::Device,
        None,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
}
