//! Model monitoring from device telemetry (data drift, prediction and label
//! drift, data quality, realised and estimated performance).
//!
//! Data path: a device's telemetry report → [`fold`] adds each model
//! version's counts, inside the telemetry writer's transaction, into
//! `monitor_counts`: one row per (model, version, device, time bucket) and
//! one fleet row per (model, version, bucket), so a question about the whole
//! fleet reads one row per bucket, not one per report → [`report`] reads the
//! rows of a time range (the fleet's, or the devices a label selector picks),
//! judges them against the profile signed with the version
//! (`wasmops_drift::fleet`), and joins prediction records with posted labels
//! for realised performance → [`watch`] asks [`report`] about the latest
//! window every few seconds and emits `DataDriftDetected`,
//! `PredictionDriftDetected`, `DataQualityAlert` and `PerformanceDegraded`
//! when a finding appears. Per-model methods and thresholds: [`settings`].

pub mod bench;
pub mod fold;
pub mod page;
pub mod report;
pub mod settings;
pub mod watch;

use std::time::Duration;

/// How the coordinator buckets and watches telemetry.
#[derive(Debug, Clone, Copy)]
pub struct MonitorConfig {
    /// Width of one trend point (and of the rows telemetry is folded into).
    pub bucket: Duration,
    /// What the watcher judges: the buckets received within this much of now.
    pub window: Duration,
}

impl MonitorConfig {
    pub fn bucket_ms(&self) -> i64 {
        (self.bucket.as_millis() as i64).max(1)
    }

    pub fn window_ms(&self) -> i64 {
        (self.window.as_millis() as i64).max(self.bucket_ms())
    }

    /// The bucket `at_ms` falls in (its start).
    pub fn bucket_of(&self, at_ms: i64) -> i64 {
        at_ms - at_ms.rem_euclid(self.bucket_ms())
    }
}
