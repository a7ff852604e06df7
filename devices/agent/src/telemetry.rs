//! Telemetry: what a device measures about the models it runs, and how a
//! report reaches the coordinator exactly once.
//!
//! The agent folds every prediction into a [`Window`] (per model version:
//! count, errors, latency histogram, input feature summaries, prediction
//! distribution, and for a shadow candidate its agreement with the live
//! model). Every interval the window becomes a numbered [`Report`] written to
//! an on-disk [`Outbox`] first, then published with QoS 1. A report leaves
//! the outbox only when the coordinator acknowledges its sequence number on
//! the device's ack topic — a broker restart or a lost session cannot lose
//! it, and the coordinator drops duplicates by (device, seq). The outbox is
//! bounded: when full the oldest report is dropped and counted, and the
//! count travels in the next report.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
pub use wasmops_counting::{Counting, Observation, TensorRef, Window, rows_of};
use wasmops_protocol::telemetry::{MAX_REPORT_BYTES, Report, VersionStats, split_versions};
use wasmops_runtime::bindings::Tensor;

/// Views of host tensors, for an [`Observation`].
pub fn views(tensors: &[Tensor]) -> Vec<TensorRef<'_>> {
    tensors
        .iter()
        .map(wasmops_runtime::tensors_json::view)
        .collect()
}

/// `n` fresh prediction ids: `p` and 24 hex digits (96 random bits).
pub fn prediction_ids(n: usize) -> Vec<String> {
    let mut raw = vec![0u8; 12 * n];
    if getrandom::fill(&mut raw).is_err() {
        return vec![];
    }
    raw.chunks(12)
        .map(|c| format!("p{}", hex::encode(c)))
        .collect()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Counters {
    stream: String,
    next_seq: u64,
    dropped_reports: u64,
    dropped_predictions: u64,
}

/// Reports not yet acknowledged, one file per report, bounded.
pub struct Outbox {
    dir: PathBuf,
    capacity: usize,
    counters: Counters,
}

impl Outbox {
    pub fn open(dir: &Path, capacity: usize) -> Result<Outbox> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let counters = match std::fs::read(dir.join("counters.json")) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("{} is corrupt", dir.join("counters.json").display()))?,
            Err(_) => {
                let mut raw = [0u8; 8];
                getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                Counters {
                    stream: hex::encode(raw),
                    ..Counters::default()
                }
            }
        };
        let mut o = Outbox {
            dir: dir.to_path_buf(),
            capacity: capacity.max(1),
            counters,
        };
        // Never reuse a sequence number, even if the counters file is older than the reports.
        if let Some(last) = o.pending()?.last() {
            o.counters.next_seq = o.counters.next_seq.max(last + 1);
        }
        Ok(o)
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.json"))
    }

    /// Sequence numbers waiting for an ack, oldest first.
    pub fn pending(&self) -> Result<Vec<u64>> {
        let mut seqs: Vec<u64> = std::fs::read_dir(&self.dir)?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Numbers and stores the report(s) for one window's `versions`: one,
    /// or several consecutive ones when it would not fit in an MQTT message
    /// ([`split_versions`]). Drops (and counts) the oldest pending reports
    /// when full.
    pub fn push(
        &mut self,
        device: &str,
        window_start_ms: i64,
        window_end_ms: i64,
        versions: Vec<VersionStats>,
    ) -> Result<Vec<Report>> {
        let parts = split_versions(versions, MAX_REPORT_BYTES);
        let pending = self.pending()?;
        for seq in pending
            .iter()
            .take((pending.len() + parts.len()).saturating_sub(self.capacity))
        {
            if let Ok(old) = self.read(*seq) {
                self.counters.dropped_reports += 1;
                self.counters.dropped_predictions += old
                    .versions
                    .iter()
                    .filter(|v| v.role == "live")
                    .map(|v| v.predictions)
                    .sum::<u64>();
            }
            let _ = std::fs::remove_file(self.path(*seq));
        }
        let first = self.counters.next_seq;
        self.counters.next_seq += parts.len() as u64;
        // Counters first: a crash between the writes skips numbers, never repeats one.
        wasmops_trust::write_atomic(
            &self.dir.join("counters.json"),
            &serde_json::to_vec(&self.counters)?,
        )?;
        let mut reports = vec![];
        for (i, versions) in parts.into_iter().enumerate() {
            let report = Report {
                device: device.to_string(),
                stream: self.counters.stream.clone(),
                seq: first + i as u64,
                window_start_ms,
                window_end_ms,
                versions,
                dropped_reports: self.counters.dropped_reports,
                dropped_predictions: self.counters.dropped_predictions,
            };
            wasmops_trust::write_atomic(&self.path(report.seq), &serde_json::to_vec(&report)?)?;
            reports.push(report);
        }
        Ok(reports)
    }

    pub fn read(&self, seq: u64) -> Result<Report> {
        let path = self.path(seq);
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("{} is corrupt", path.display()))
    }

    /// The raw bytes of a pending report, as published.
    pub fn payload(&self, seq: u64) -> Option<Vec<u8>> {
        std::fs::read(self.path(seq)).ok()
    }

    pub fn ack(&mut self, seqs: &[u64]) {
        for s in seqs {
            let _ = std::fs::remove_file(self.path(*s));
        }
    }

    pub fn dropped(&self) -> (u64, u64) {
        (
            self.counters.dropped_reports,
            self.counters.dropped_predictions,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_numbers_bounds_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let stats = |n| {
            vec![VersionStats {
                model: "m".into(),
                version: "1".into(),
                role: "live".into(),
                predictions: n,
                ..Default::default()
            }]
        };
        let mut o = Outbox::open(dir.path(), 3).unwrap();
        for n in 1..=5 {
            o.push("d", 0, 1, stats(n)).unwrap();
        }
        // Capacity 3: reports 0 and 1 (1 + 2 predictions) were dropped and counted.
        assert_eq!(o.pending().unwrap(), vec![2, 3, 4]);
        assert_eq!(o.dropped(), (2, 3));
        o.ack(&[3]);
        let mut o = Outbox::open(dir.path(), 3).unwrap();
        assert_eq!(o.pending().unwrap(), vec![2, 4]);
        let r = o.push("d", 0, 1, stats(9)).unwrap().remove(0);
        assert_eq!((r.seq, r.dropped_reports, r.dropped_predictions), (5, 2, 3));
    }
}
