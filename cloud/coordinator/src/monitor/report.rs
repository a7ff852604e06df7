//! A model version's monitoring over a time range ([`MonitorReport`]): the
//! folded counts of the range judged against the profile signed with the
//! version, bucket by bucket (the trend) and merged (the verdict); data
//! quality per device; outcomes joined with prediction records.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use wasmops_api::{
    ColumnDrift, Drift, GroupDrift, MonitorReport, Performance, PreviousDrift, QualityAlert,
    TrendPoint,
};
use wasmops_drift::fleet::{ColumnCounts, Evaluation, evaluate};
use wasmops_drift::performance::{self, Scored};
use wasmops_drift::quality;
use wasmops_profile::{ColumnProfile, Profile};
use wasmops_protocol::telemetry::{Summary, VersionStats};

use super::MonitorConfig;
use super::fold::{FLEET, empty};
use super::settings::{self, Resolved};
use crate::{Coordinator, CoordinatorError};

/// A device is checked on its own only for columns it counted this many
/// values of: a binary column's handful of rows agree by chance.
pub const MIN_DEVICE_ROWS: u64 = 30;

/// Labelled predictions read per report at most (the newest).
const MAX_LABELLED: i64 = 200_000;

/// What to report on.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub model: String,
    /// The latest version with telemetry in the range when `None`.
    pub version: Option<String>,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Only devices whose labels match all of these.
    pub selector: BTreeMap<String, String>,
}

/// The counts of one version over a range.
#[derive(Debug, Default)]
struct Counted {
    /// Fleet (or selection) totals per bucket.
    buckets: BTreeMap<i64, VersionStats>,
    /// Per device, over the range's last window.
    devices: BTreeMap<String, VersionStats>,
    /// Devices that reported in the range.
    reporting: BTreeSet<String>,
}

impl Counted {
    fn total(&self, model: &str, version: &str) -> VersionStats {
        let mut all = empty(model, version);
        for s in self.buckets.values() {
            all.merge(s);
        }
        all
    }
}

pub(crate) fn counts_of(s: &Summary) -> ColumnCounts {
    ColumnCounts {
        rows: s.count,
        missing: s.nulls,
        min: s.min,
        max: s.max,
        bins: s.bins.clone(),
        below: s.below,
        above: s.above,
        categories: s.categories.clone(),
    }
}

fn class_counts(classes: &BTreeMap<String, u64>) -> ColumnCounts {
    ColumnCounts {
        rows: classes.values().sum(),
        categories: classes.clone(),
        ..ColumnCounts::default()
    }
}

/// Input columns as counted.
fn inputs(s: &VersionStats) -> BTreeMap<String, ColumnCounts> {
    s.features
        .iter()
        .map(|(k, v)| (k.clone(), counts_of(v)))
        .collect()
}

/// Output columns as counted: float columns binned, class outputs by class.
fn outputs(s: &VersionStats) -> BTreeMap<String, ColumnCounts> {
    s.outputs
        .iter()
        .map(|(k, v)| (k.clone(), counts_of(v)))
        .chain(s.classes.iter().map(|(k, v)| (k.clone(), class_counts(v))))
        .collect()
}

fn drift_of(e: &Evaluation) -> Drift {
    Drift {
        dataset_drift: e.dataset_drift,
        drift_share: e.drift_share,
        coefficient: e.coefficient,
        columns: e
            .columns
            .iter()
            .map(|v| ColumnDrift {
                name: v.name.clone(),
                method: v.method.name().to_string(),
                score: v.score,
                threshold: v.threshold,
                drifted: v.drifted,
                psi: v.psi,
                count: v.count,
                contribution: v.contribution,
            })
            .collect(),
    }
}

fn scores(e: &Evaluation) -> BTreeMap<String, f64> {
    e.columns
        .iter()
        .filter_map(|v| v.score.map(|s| (v.name.clone(), s)))
        .collect()
}

/// The version's signed profile and registration sequence.
async fn version_profile(
    c: &Coordinator,
    model: &str,
    version: &str,
) -> Result<(Option<Profile>, i64), CoordinatorError> {
    let row: Option<(String, i64)> = sqlx::query_as(
        "SELECT claims, sequence FROM model_versions WHERE name = $1 AND version = $2",
    )
    .bind(model)
    .bind(version)
    .fetch_optional(&c.db.read)
    .await?;
    let (claims, sequence) = row.ok_or_else(|| {
        CoordinatorError::NotFound(format!("no version `{version}` of model `{model}`"))
    })?;
    let profile = serde_json::from_str::<serde_json::Value>(&claims)
        .ok()
        .and_then(|v| serde_json::from_value::<Profile>(v.get("profile")?.clone()).ok());
    Ok((profile, sequence))
}

/// The feature names of `model` `version`'s signed profile, if it has one.
pub async fn profile_columns(
    c: &Coordinator,
    model: &str,
    version: &str,
) -> Result<Option<Vec<String>>, CoordinatorError> {
    Ok(match version_profile(c, model, version).await {
        Ok((profile, _)) => profile.map(|p| p.columns.into_iter().map(|c| c.name).collect()),
        Err(CoordinatorError::NotFound(_)) => None,
        Err(e) => return Err(e),
    })
}

/// The latest registered version of `model` with telemetry in the range.
async fn latest_version(
    c: &Coordinator,
    q: &Query,
    cfg: &MonitorConfig,
) -> sqlx::Result<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT v.version FROM model_versions v WHERE v.name = $1 AND EXISTS (
            SELECT 1 FROM monitor_counts m WHERE m.model = v.name AND m.version = v.version
            AND m.device = $2 AND m.bucket >= $3 AND m.bucket < $4)
         ORDER BY v.sequence DESC LIMIT 1",
    )
    .bind(&q.model)
    .bind(FLEET)
    .bind(cfg.bucket_of(q.since_ms))
    .bind(q.until_ms)
    .fetch_optional(&c.db.read)
    .await?;
    Ok(row.map(|(v,)| v))
}

/// Folded rows (device, bucket, stats) of `model@version` with buckets in
/// `[from, until)`: the fleet's, or every device's.
async fn rows(
    c: &Coordinator,
    (model, version): (&str, &str),
    fleet: bool,
    from: i64,
    until: i64,
) -> sqlx::Result<Vec<(String, i64, String)>> {
    let op = if fleet { "=" } else { "<>" };
    sqlx::query_as(&format!(
        "SELECT device, bucket, stats FROM monitor_counts WHERE model = $1 AND version = $2 AND device {op} $3 AND bucket >= $4 AND bucket < $5"
    ))
    .bind(model)
    .bind(version)
    .bind(FLEET)
    .bind(from)
    .bind(until)
    .fetch_all(&c.db.read)
    .await
}

/// Reads the folded counts of `model@version` in the range: the fleet rows
/// (or, for a selection, its devices' rows summed per bucket), and per
/// device the rows of the range's last `window_ms`.
async fn read_counts(
    c: &Coordinator,
    cfg: &MonitorConfig,
    model: &str,
    version: &str,
    q: &Query,
    selected: Option<&BTreeSet<String>>,
) -> sqlx::Result<Counted> {
    let since = cfg.bucket_of(q.since_ms);
    let recent = cfg
        .bucket_of(q.until_ms.saturating_sub(cfg.window_ms()))
        .max(since);
    let mut counted = Counted::default();
    let parse = |s: &str| serde_json::from_str::<VersionStats>(s).ok();
    let key = (model, version);
    if selected.is_none() {
        for (_, bucket, stats) in rows(c, key, true, since, q.until_ms).await? {
            if let Some(s) = parse(&stats) {
                counted.buckets.insert(bucket, s);
            }
        }
        let names: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT device FROM monitor_counts WHERE model = $1 AND version = $2 AND device <> $3 AND bucket >= $4 AND bucket < $5",
        )
        .bind(model)
        .bind(version)
        .bind(FLEET)
        .bind(since)
        .bind(q.until_ms)
        .fetch_all(&c.db.read)
        .await?;
        counted.reporting = names.into_iter().map(|(d,)| d).collect();
    }
    // Device rows: the whole range for a selection, the last window otherwise.
    let from = if selected.is_some() { since } else { recent };
    for (device, bucket, stats) in rows(c, key, false, from, q.until_ms).await? {
        if selected.is_some_and(|s| !s.contains(&device)) {
            continue;
        }
        let Some(s) = parse(&stats) else { continue };
        if let Some(sel) = selected {
            debug_assert!(sel.contains(&device));
            counted.reporting.insert(device.clone());
            counted
                .buckets
                .entry(bucket)
                .or_insert_with(|| empty(model, version))
                .merge(&s);
        }
        if bucket >= recent {
            counted
                .devices
                .entry(device)
                .or_insert_with(|| empty(model, version))
                .merge(&s);
        }
    }
    Ok(counted)
}

/// Data-quality findings of the merged counts, each with the devices (and
/// their label groups) where the same finding shows on the device's own
/// counts. A finding only some devices show (one stuck sensor among many)
/// is reported from them alone.
fn quality_alerts(
    columns: &[ColumnProfile],
    fleet: &Evaluation,
    devices: &BTreeMap<String, VersionStats>,
    labels: &BTreeMap<String, BTreeMap<String, String>>,
) -> Vec<QualityAlert> {
    // (column, anomaly) → (detail, devices)
    let mut found: BTreeMap<(String, String), (String, Vec<String>)> = BTreeMap::new();
    for a in &fleet.data_quality {
        found.insert(
            (a.column.clone(), a.anomaly.clone()),
            (a.detail.clone(), vec![]),
        );
    }
    for (device, stats) in devices {
        for reference in columns {
            let Some(s) = stats.features.get(&reference.name) else {
                continue;
            };
            if s.count < MIN_DEVICE_ROWS {
                continue;
            }
            let observed = counts_of(s).observed(reference);
            for a in quality::check(&reference.name, reference, &observed) {
                let entry = found
                    .entry((a.column.clone(), a.anomaly.clone()))
                    .or_insert_with(|| (a.detail.clone(), vec![]));
                entry.1.push(device.clone());
            }
        }
    }
    found
        .into_iter()
        .map(|((column, anomaly), (detail, devices))| {
            let mut groups: BTreeMap<String, u64> = BTreeMap::new();
            for d in &devices {
                for (k, v) in labels.get(d).into_iter().flatten() {
                    *groups.entry(format!("{k}={v}")).or_default() += 1;
                }
            }
            let detail = if devices.is_empty()
                || fleet
                    .data_quality
                    .iter()
                    .any(|a| a.column == column && a.anomaly == anomaly)
            {
                detail
            } else {
                format!("{detail} (on {} device(s))", devices.len())
            };
            QualityAlert {
                column,
                anomaly,
                detail,
                devices,
                groups,
            }
        })
        .collect()
}

/// Input drift per label group of the devices in `devices` (merged per group).
fn group_drift(
    devices: &BTreeMap<String, VersionStats>,
    labels: &BTreeMap<String, BTreeMap<String, String>>,
    judge: impl Fn(&BTreeMap<String, ColumnCounts>) -> Evaluation,
) -> Vec<GroupDrift> {
    let mut groups: BTreeMap<String, (u64, VersionStats)> = BTreeMap::new();
    for (device, stats) in devices {
        for (k, v) in labels.get(device).into_iter().flatten() {
            let g = groups.entry(format!("{k}={v}")).or_default();
            g.0 += 1;
            g.1.merge(stats);
        }
    }
    groups
        .into_iter()
        .map(|(group, (devices, stats))| {
            let mut d = drift_of(&judge(&inputs(&stats)));
            d.columns.retain(|c| c.drifted);
            GroupDrift {
                group,
                devices,
                drifted: d.columns,
            }
        })
        .collect()
}

/// One labelled prediction.
struct Labelled {
    bucket: i64,
    class: Option<String>,
    probabilities: Vec<f64>,
    value: Option<f64>,
    outcome: String,
}

async fn labelled(
    c: &Coordinator,
    cfg: &MonitorConfig,
    model: &str,
    version: &str,
    q: &Query,
    selected: Option<&BTreeSet<String>>,
) -> sqlx::Result<Vec<Labelled>> {
    let rows = sqlx::query(
        "SELECT p.device, p.received_at, p.class, p.probabilities, p.value, l.outcome
         FROM predictions p JOIN labels l ON l.prediction_id = p.id
         WHERE p.model = $1 AND p.version = $2 AND p.received_at >= $3 AND p.received_at < $4
         ORDER BY p.received_at DESC LIMIT $5",
    )
    .bind(model)
    .bind(version)
    .bind(cfg.bucket_of(q.since_ms))
    .bind(q.until_ms)
    .bind(MAX_LABELLED)
    .fetch_all(&c.db.read)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let device: String = row.try_get(0)?;
        if selected.is_some_and(|s| !s.contains(&device)) {
            continue;
        }
        let probabilities: Option<String> = row.try_get(3)?;
        out.push(Labelled {
            bucket: cfg.bucket_of(row.try_get(1)?),
            class: row.try_get(2)?,
            probabilities: probabilities
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or_default(),
            value: row.try_get(4)?,
            outcome: row.try_get(5)?,
        });
    }
    Ok(out)
}

/// Realised performance of `rows` (classifier or regressor, as the records say).
fn realised(rows: &[&Labelled]) -> Performance {
    let classes: Vec<&&Labelled> = rows.iter().filter(|r| r.class.is_some()).collect();
    if !classes.is_empty() {
        // Class ids index the probabilities when every class is a small
        // integer; other names are numbered, and go without probabilities.
        let index = |s: &str| s.parse::<usize>().ok();
        let by_id = classes.iter().all(|r| {
            let k = r.probabilities.len();
            index(r.class.as_deref().unwrap_or("")).is_some_and(|i| k == 0 || i < k)
                && index(&r.outcome).is_some_and(|i| k == 0 || i < k)
        });
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        if !by_id {
            for r in &classes {
                for n in [r.class.as_deref().unwrap_or(""), r.outcome.as_str()] {
                    let next = names.len();
                    names.entry(n).or_insert(next);
                }
            }
        }
        let scored: Vec<Scored> = classes
            .iter()
            .map(|r| {
                let class = r.class.as_deref().unwrap_or("");
                if by_id {
                    Scored {
                        predicted: index(class).unwrap_or(0),
                        probabilities: r.probabilities.clone(),
                        actual: index(&r.outcome).unwrap_or(0),
                    }
                } else {
                    Scored {
                        predicted: names[class],
                        probabilities: vec![],
                        actual: names[r.outcome.as_str()],
                    }
                }
            })
            .collect();
        let Some(m) = performance::classification(&scored) else {
            return Performance::default();
        };
        return Performance {
            labelled: m.count,
            accuracy: Some(m.accuracy),
            auc: m.auc,
            log_loss: m.log_loss,
            ..Performance::default()
        };
    }
    let pairs: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.value?, r.outcome.parse::<f64>().ok()?)))
        .collect();
    match performance::regression(&pairs) {
        Some(m) => Performance {
            labelled: m.count,
            mae: Some(m.mae),
            rmse: Some(m.rmse),
            ..Performance::default()
        },
        None => Performance::default(),
    }
}

/// Outcomes counted as the training label was profiled.
fn label_counts(label: &ColumnProfile, rows: &[Labelled]) -> ColumnCounts {
    let mut c = ColumnCounts::default();
    for r in rows {
        c.rows += 1;
        if label.is_categorical() {
            *c.categories.entry(r.outcome.clone()).or_default() += 1;
        } else if let Ok(x) = r.outcome.parse::<f64>() {
            c.bins.resize(label.counts.len(), 0);
            if let Some(b) = c.bins.get_mut(label.bin(x)) {
                *b += 1;
            }
            let (below, above) = wasmops_profile::beyond(label.min, label.max, x);
            c.below += u64::from(below);
            c.above += u64::from(above);
            c.min = Some(c.min.map_or(x, |m: f64| m.min(x)));
            c.max = Some(c.max.map_or(x, |m: f64| m.max(x)));
        } else {
            c.missing += 1;
        }
    }
    c
}

/// The output profile with the previous version's counts as reference, for
/// the columns both count the same way (same bins, or categories).
fn as_reference(outputs: &[ColumnProfile], previous: &VersionStats) -> Vec<ColumnProfile> {
    let counted = self::outputs(previous);
    outputs
        .iter()
        .filter_map(|p| {
            let c = counted.get(&p.name)?;
            let mut r = p.clone();
            if p.is_categorical() {
                r.domain = c.categories.clone();
            } else {
                if c.bins.len() != p.counts.len() {
                    return None;
                }
                r.counts = c.bins.clone();
                r.min = c.min;
                r.max = c.max;
            }
            r.rows = c.rows;
            r.missing = c.missing;
            Some(r)
        })
        .collect()
}

/// The devices whose labels match `selector`, with every device's labels.
async fn selection(
    c: &Coordinator,
    selector: &BTreeMap<String, String>,
) -> sqlx::Result<(
    Option<BTreeSet<String>>,
    BTreeMap<String, BTreeMap<String, String>>,
)> {
    let all = crate::devices::list(c).await?;
    let selected = (!selector.is_empty()).then(|| {
        all.iter()
            .filter(|d| selector.iter().all(|(k, v)| d.labels.get(k) == Some(v)))
            .map(|d| d.id.clone())
            .collect()
    });
    let labels = all.into_iter().map(|d| (d.id, d.labels)).collect();
    Ok((selected, labels))
}

/// Parses `k=v,k2=v2`.
pub fn parse_selector(s: &str) -> Result<BTreeMap<String, String>, CoordinatorError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| {
            CoordinatorError::BadRequest(format!("selector `{part}` is not key=value"))
        })?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// Builds the report for `q`.
pub async fn report(c: &Coordinator, q: &Query) -> Result<MonitorReport, CoordinatorError> {
    report_with(c, q, &settings::load(c, &q.model).await?).await
}

/// [`report`] with the model's settings already loaded.
pub async fn report_with(
    c: &Coordinator,
    q: &Query,
    resolved: &Resolved,
) -> Result<MonitorReport, CoordinatorError> {
    let cfg = c.monitor;
    if q.until_ms <= q.since_ms {
        return Err(CoordinatorError::BadRequest(
            "the range is empty: since must come before until".into(),
        ));
    }
    let version = match &q.version {
        Some(v) => v.clone(),
        None => latest_version(c, q, &cfg).await?.ok_or_else(|| {
            CoordinatorError::NotFound(format!("no telemetry for model `{}` in the range", q.model))
        })?,
    };
    let (profile, sequence) = version_profile(c, &q.model, &version).await?;

    let (selected, labels) = selection(c, &q.selector).await?;
    let counted = read_counts(c, &cfg, &q.model, &version, q, selected.as_ref()).await?;
    let total = counted.total(&q.model, &version);
    let mut notes = vec![];
    let profile = profile.unwrap_or_else(|| {
        notes.push(format!(
            "{}@{version} has no training profile (build it with --training-data): drift and data quality are not judged",
            q.model
        ));
        Profile::default()
    });
    let judge = |columns: &[ColumnProfile], counts: &BTreeMap<String, ColumnCounts>| {
        evaluate(columns, counts, &resolved.rules, resolved.drift_share)
    };
    let data = judge(&profile.columns, &inputs(&total));
    let predictions = judge(&profile.outputs, &outputs(&total));
    let quality = quality_alerts(&profile.columns, &data, &counted.devices, &labels);
    let groups = group_drift(&counted.devices, &labels, |counts| {
        judge(&profile.columns, counts)
    });

    // The previous version's outputs over the same range and devices.
    let previous: Option<(String,)> = sqlx::query_as(
        "SELECT version FROM model_versions WHERE name = $1 AND sequence < $2 ORDER BY sequence DESC LIMIT 1",
    )
    .bind(&q.model)
    .bind(sequence)
    .fetch_optional(&c.db.read)
    .await?;
    let mut vs_previous = None;
    if let Some((prev,)) = previous {
        let before = read_counts(c, &cfg, &q.model, &prev, q, selected.as_ref()).await?;
        let before = before.total(&q.model, &prev);
        let reference = as_reference(&profile.outputs, &before);
        if before.predictions > 0 && !reference.is_empty() {
            vs_previous = Some(PreviousDrift {
                version: prev,
                drift: drift_of(&judge(&reference, &outputs(&total))),
            });
        }
    }

    let labelled = labelled(c, &cfg, &q.model, &version, q, selected.as_ref()).await?;
    let label_drift = match &profile.label {
        Some(label) if !labelled.is_empty() => {
            let counts = BTreeMap::from([(label.name.clone(), label_counts(label, &labelled))]);
            Some(drift_of(&judge(std::slice::from_ref(label), &counts)))
        }
        _ => None,
    };
    let mut performance = realised(&labelled.iter().collect::<Vec<_>>());
    performance.estimated_accuracy =
        performance::expected_accuracy(total.confidence_sum, total.confidence_rows);

    let mut by_bucket: BTreeMap<i64, Vec<&Labelled>> = BTreeMap::new();
    for l in &labelled {
        by_bucket.entry(l.bucket).or_default().push(l);
    }
    let trend = counted
        .buckets
        .iter()
        .map(|(start, s)| {
            let d = judge(&profile.columns, &inputs(s));
            let p = judge(&profile.outputs, &outputs(s));
            let realised = by_bucket
                .get(start)
                .map(|rows| self::realised(rows))
                .unwrap_or_default();
            TrendPoint {
                start_ms: *start,
                predictions: s.predictions,
                dataset_drift: d.dataset_drift,
                drift_share: d.drift_share,
                coefficient: d.coefficient,
                scores: scores(&d),
                prediction_scores: scores(&p),
                labelled: realised.labelled,
                accuracy: realised.accuracy,
                estimated_accuracy: performance::expected_accuracy(
                    s.confidence_sum,
                    s.confidence_rows,
                ),
            }
        })
        .collect();
    Ok(MonitorReport {
        model: q.model.clone(),
        version,
        since_ms: q.since_ms,
        until_ms: q.until_ms,
        bucket_ms: cfg.bucket_ms(),
        selector: (!q.selector.is_empty()).then(|| {
            q.selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",")
        }),
        devices: counted.reporting.len() as u64,
        predictions: total.predictions,
        data_drift: drift_of(&data),
        prediction_drift: drift_of(&predictions),
        prediction_drift_vs_previous: vs_previous,
        label_drift,
        quality,
        groups,
        performance,
        trend,
        notes,
    })
}

/// Raw input rows devices sampled for `model@version` since `since_ms`,
/// newest first, at most `limit`.
pub async fn samples(
    c: &Coordinator,
    model: &str,
    version: &str,
    since_ms: i64,
    limit: usize,
) -> Result<wasmops_api::Samples, CoordinatorError> {
    let (profile, _) = version_profile(c, model, version).await?;
    let limit = limit.min(wasmops_api::MAX_SAMPLE_ANSWER_ROWS);
    let stored: Vec<(String,)> = sqlx::query_as(
        "SELECT rows_json FROM samples WHERE model = $1 AND version = $2 AND received_at >= $3
         ORDER BY received_at DESC LIMIT $4",
    )
    .bind(model)
    .bind(version)
    .bind(since_ms)
    // Each stored sample holds at most MAX_SAMPLE_ROWS rows, at least one.
    .bind(limit as i64)
    .fetch_all(&c.db.read)
    .await?;
    let mut rows: Vec<Vec<Option<f64>>> = vec![];
    for (json,) in stored {
        let Ok(sample) = serde_json::from_str::<Vec<Vec<Option<f64>>>>(&json) else {
            continue;
        };
        rows.extend(sample.into_iter().take(limit - rows.len()));
        if rows.len() >= limit {
            break;
        }
    }
    let width = rows.first().map_or(0, Vec::len);
    // The profile's names; without one, devices sample the first
    // `[rows, features]` input, whose name the coordinator does not know.
    let columns = match profile {
        Some(p) if p.columns.len() == width => p.columns.into_iter().map(|c| c.name).collect(),
        _ => (0..width).map(|j| format!("column_{j}")).collect(),
    };
    rows.retain(|r| r.len() == width);
    Ok(wasmops_api::Samples {
        model: model.into(),
        version: version.into(),
        columns,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::bench::summarise;

    fn spread(n: usize, shift: f64) -> impl Iterator<Item = f64> {
        (0..n).map(move |i| shift + ((i as f64 * 0.618_033_988_7) % 1.0))
    }

    /// Outputs judged against the previous version's outputs: the same
    /// distribution does not drift, a moved one does; classes likewise.
    #[test]
    fn outputs_against_the_previous_version() {
        let training: Vec<Option<f64>> = spread(2000, 0.0).map(Some).collect();
        let score = ColumnProfile::of_numbers("score", &training);
        let label = ColumnProfile::of_text(
            "label",
            &(0..300)
                .map(|i| Some((i % 3).to_string()))
                .collect::<Vec<_>>(),
        );
        let stats = |shift: f64, classes: [u64; 3]| VersionStats {
            outputs: BTreeMap::from([("score".into(), summarise(&score, spread(3000, shift)))]),
            classes: BTreeMap::from([(
                "label".into(),
                (0..3).map(|k| (k.to_string(), classes[k])).collect(),
            )]),
            ..VersionStats::default()
        };
        let previous = stats(0.3, [100, 100, 100]);
        let reference = as_reference(&[score.clone(), label.clone()], &previous);
        assert_eq!(reference.len(), 2);
        let judge = |current: &VersionStats| {
            drift_of(&evaluate(
                &reference,
                &outputs(current),
                &Default::default(),
                None,
            ))
        };
        let same = judge(&stats(0.3, [100, 100, 100]));
        assert!(same.columns.iter().all(|c| !c.drifted), "{same:#?}");
        // Against training the 0.3 shift is drift; against the previous version it is not.
        let vs_training = evaluate(
            std::slice::from_ref(&score),
            &outputs(&previous),
            &Default::default(),
            None,
        );
        assert!(vs_training.columns[0].drifted);
        let moved = judge(&stats(0.0, [250, 25, 25]));
        assert!(moved.columns.iter().all(|c| c.drifted), "{moved:#?}");
    }
}
