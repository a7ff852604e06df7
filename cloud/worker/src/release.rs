//! The candidate as a component: its version and sequence after the
//! newest registered one, built with lineage claims and the training
//! profile; the champion it is judged against; signing with the worker's
//! release key (and delegation) once it has passed.

use sha2::Digest;
use wasmops_api::{Client, RunDataset, Version};
use wasmops_compiler::profile::Training;
use wasmops_sign::SecretKey;
use wasmops_trainer::{Frame, Target};
use wasmops_trust::Lineage;
use wasmops_trust::claims::ClaimsFile;

use crate::Worker;
use crate::job::Failed;

/// The version the `production` alias names, else the newest; with its
/// component's bytes (checked against the registered sha256). `None` for a
/// model with no version yet.
pub fn champion(client: &Client, model: &str) -> Result<Option<(Version, Vec<u8>)>, Failed> {
    let version = match client.version(model, "production") {
        Ok(v) => v,
        Err(e) if e.status() == Some(404) => match client.model(model) {
            Ok(m) => match m.versions.into_iter().max_by_key(|v| v.sequence) {
                Some(v) => v,
                None => return Ok(None),
            },
            Err(e) if e.status() == Some(404) => return Ok(None),
            Err(e) => return Err(Failed::from(format!("the champion of {model}: {e}"))),
        },
        Err(e) => return Err(Failed::from(format!("the champion of {model}: {e}"))),
    };
    let bytes = client
        .artifact(&version.sha256)
        .map_err(|e| format!("the champion {model} {}: {e}", version.version))?;
    if hex::encode(sha2::Sha256::digest(&bytes)) != version.sha256 {
        return Err(Failed::from(format!(
            "the champion {model} {} arrived damaged (sha256 mismatch)",
            version.version
        )));
    }
    Ok(Some((version, bytes)))
}

/// After the newest registered version: minor + 1 (`1.2.3` → `1.3.0`) and
/// sequence + 1; `1.0.0` and 1 for a new model.
pub fn next_version(client: &Client, model: &str) -> Result<(String, u64), Failed> {
    let newest = match client.model(model) {
        Ok(m) => m.versions.into_iter().max_by_key(|v| v.sequence),
        Err(e) if e.status() == Some(404) => None,
        Err(e) => return Err(Failed::from(format!("the versions of {model}: {e}"))),
    };
    let Some(v) = newest else {
        return Ok(("1.0.0".into(), 1));
    };
    let parts: Vec<u64> = v
        .version
        .split(['.', '-', '+'])
        .take(3)
        .filter_map(|p| p.parse().ok())
        .collect();
    let (major, minor) = match parts.as_slice() {
        [a, b, ..] => (*a, *b),
        _ => (1, 0),
    };
    Ok((format!("{major}.{}.0", minor + 1), v.sequence as u64 + 1))
}

/// What goes into a candidate's build.
pub struct Candidate<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub sequence: u64,
    pub onnx: &'a [u8],
    pub train: &'a Frame,
    pub label: &'a str,
    pub dataset: &'a RunDataset,
    pub run: &'a str,
    pub code: &'a str,
    pub metrics: Option<&'a serde_json::Value>,
}

/// Builds the unsigned candidate component.
pub fn build(w: &Worker, c: Candidate) -> Result<Vec<u8>, String> {
    let columns = c
        .train
        .features
        .iter()
        .enumerate()
        .map(|(j, name)| {
            let values = (0..c.train.rows())
                .map(|i| Some(c.train.row(i)[j]).filter(|x| !x.is_nan()))
                .collect();
            (name.clone(), values)
        })
        .collect();
    let labels = match &c.train.y {
        Target::Classes(y) => y.iter().map(|v| Some(*v as f64)).collect(),
        Target::Values(y) => y.iter().map(|v| Some(*v)).collect(),
    };
    let label = wasmops_drift::quality::profile(c.label, &wasmops_drift::Values::Numeric(labels));
    let metrics = c
        .metrics
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64().filter(|x| x.is_finite())?)))
                .collect()
        })
        .unwrap_or_default();
    let mut code: String = c.code.chars().take(200).collect();
    code.retain(|ch| !ch.is_control());
    let claims = ClaimsFile {
        sequence: Some(c.sequence),
        lineage: Lineage {
            dataset_id: Some(c.dataset.name.clone()),
            dataset_sha256: Some(c.dataset.sha256.clone()),
            training_run: Some(c.run.to_string()),
            code_commit: Some(code),
        },
        metrics,
        ..Default::default()
    };
    let opts = wasmops_compiler::BuildOptions {
        name: c.model.to_string(),
        version: c.version.to_string(),
        pipeline: String::new(),
        input_shapes: vec![],
        cache_dir: w.config.cache_dir.clone(),
        guest: None,
        claims,
        training: Some(Training {
            columns,
            label: Some(label),
        }),
        created_at: None,
        http: false,
    };
    wasmops_compiler::build(c.onnx, &opts)
        .map(|b| b.component)
        .map_err(|e| format!("building the candidate: {e}"))
}

/// `component` signed with `key`, carrying `delegation` when given.
pub fn sign(
    component: &[u8],
    key: &SecretKey,
    delegation: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    let mut bytes = component.to_vec();
    if let Some(doc) = delegation {
        bytes = wasmops_sign::set_custom_section(
            &bytes,
            wasmops_trust::policy::DELEGATION_SECTION,
            Some(doc),
        )
        .map_err(|e| format!("embedding the delegation: {e}"))?;
    }
    wasmops_sign::sign(&bytes, key).map_err(|e| format!("signing: {e}"))
}
