//! The reference profile `wasmops build --training-data` signs into the
//! claims: each feature column of the training data profiled
//! ([`wasmops_profile::ColumnProfile`]), the label column if given, and the
//! model's own outputs on that data — found by running the component just
//! built, preprocessing included, so the output reference is exactly what
//! devices will see for training-like inputs.

use wasmops_profile::{ColumnProfile, Profile, output_column};
use wasmops_runtime::bindings::{Dim, ElementType, Tensor, TensorData};
use wasmops_runtime::{Host, HostConfig, SignaturePolicy};

use crate::BuildError;

/// Named feature columns, values in row order (`None`: missing).
pub type Columns = Vec<(String, Vec<Option<f64>>)>;

/// Training data for the profile: feature columns in the order of the
/// model's first input's last axis (`[rows, features]`), and the label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Training {
    pub columns: Columns,
    pub label: Option<ColumnProfile>,
}

impl Training {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.1.len())
    }
}

/// Rows run through the model per call when profiling its outputs.
const BATCH: usize = 256;
/// Rows whose outputs are profiled at most: quantiles of 20 000 rows are
/// stable to about 1 %, and a million-row training set would otherwise cost
/// minutes of build time.
pub const MAX_OUTPUT_ROWS: usize = 20_000;

/// The profile of `training` for the model in `component`; `notes` tell what
/// was left out (outputs of rows the model refused, say).
pub fn reference(
    component: &[u8],
    training: &Training,
    cache_dir: Option<&std::path::Path>,
    notes: &mut Vec<String>,
) -> Result<Profile, BuildError> {
    let rows = training.rows();
    if rows == 0 || training.columns.is_empty() {
        return Err(BuildError::Training("no rows".into()));
    }
    if training.columns.len() > wasmops_profile::MAX_COLUMNS {
        return Err(BuildError::Training(format!(
            "{} feature columns; a profile holds at most {}",
            training.columns.len(),
            wasmops_profile::MAX_COLUMNS
        )));
    }
    // The build's compile cache: the generic guest's functions are shared by
    // every model, so compiling this component takes seconds less.
    let config = HostConfig {
        cache_dir: cache_dir.map(std::path::Path::to_path_buf),
        ..HostConfig::new(SignaturePolicy::OwnBuild)
    };
    let host =
        Host::new(config).map_err(|e| BuildError::Training(format!("cannot start a host: {e}")))?;
    let loaded = host
        .load(component)
        .map_err(|e| BuildError::Training(format!("cannot load the component built: {e}")))?;
    let mut instance = loaded
        .instantiate()
        .map_err(|e| BuildError::Training(e.to_string()))?;
    let info = instance
        .metadata()
        .map_err(|e| BuildError::Training(e.to_string()))?;
    let input = info
        .inputs
        .first()
        .ok_or_else(|| BuildError::Training("the model has no input".into()))?;
    let width = match input.shape.as_slice() {
        [_, Dim::Fixed(w)] => Some(*w as usize),
        [_, Dim::Symbol(_)] => None,
        _ => {
            return Err(BuildError::Training(format!(
                "the model's input `{}` is not [rows, features]: a profile describes feature columns",
                input.name
            )));
        }
    };
    if let Some(w) = width
        && w != training.columns.len()
    {
        return Err(BuildError::Training(format!(
            "the model's input `{}` has {w} features, the training data {} columns",
            input.name,
            training.columns.len()
        )));
    }
    let columns: Vec<ColumnProfile> = training
        .columns
        .iter()
        .map(|(name, values)| ColumnProfile::of_numbers(name, values))
        .collect();
    let outputs = if info.inputs.len() == 1 && input.element_type == ElementType::Float32 {
        outputs(&mut instance, &input.name, training, notes)
    } else {
        notes.push(format!(
            "outputs not profiled: the model takes {} inputs and the profile describes one float input",
            info.inputs.len()
        ));
        vec![]
    };
    let profile = Profile {
        rows: rows as u64,
        input: Some(input.name.clone()),
        columns,
        label: training.label.clone(),
        outputs,
    };
    profile.validate().map_err(BuildError::Training)?;
    Ok(profile)
}

/// Output values of the first [`MAX_OUTPUT_ROWS`] rows, per output column.
fn outputs(
    instance: &mut wasmops_runtime::ModelInstance,
    input: &str,
    training: &Training,
    notes: &mut Vec<String>,
) -> Vec<ColumnProfile> {
    let rows = training.rows().min(MAX_OUTPUT_ROWS);
    let width = training.columns.len();
    // Per output column: numbers or names, in row order.
    let mut numbers: Columns = vec![];
    let mut names: Vec<(String, Vec<Option<String>>)> = vec![];
    let mut refused = 0;
    let mut first_error = None;
    for start in (0..rows).step_by(BATCH) {
        let end = (start + BATCH).min(rows);
        let mut data = Vec::with_capacity((end - start) * width);
        for r in start..end {
            for (_, column) in &training.columns {
                data.push(column[r].map_or(f32::NAN, |x| x as f32));
            }
        }
        let tensor = Tensor {
            name: input.to_string(),
            shape: vec![(end - start) as u32, width as u32],
            data: TensorData::Float32(data),
        };
        match instance.predict(&[tensor]) {
            Ok(out) => record(&out, end - start, &mut numbers, &mut names),
            Err(e) => {
                refused += end - start;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        notes.push(format!(
            "outputs of {refused} of {rows} training rows not profiled: the model refused them ({e})"
        ));
    }
    if rows < training.rows() {
        notes.push(format!(
            "outputs profiled on the first {rows} of {} training rows",
            training.rows()
        ));
    }
    numbers
        .iter()
        .map(|(n, v)| ColumnProfile::of_numbers(n, v))
        .chain(names.iter().map(|(n, v)| ColumnProfile::of_text(n, v)))
        .collect()
}

fn record(
    out: &[Tensor],
    batch: usize,
    numbers: &mut Columns,
    names: &mut Vec<(String, Vec<Option<String>>)>,
) {
    for t in out {
        let len = match &t.data {
            TensorData::Float32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Text(v) => v.len(),
        };
        // Only per-row outputs ([rows] or [rows, k]) have columns.
        if batch == 0 || len % batch != 0 || t.shape.first().copied() != Some(batch as u32) {
            continue;
        }
        let width = len / batch;
        if width == 0 || width > wasmops_profile::MAX_COLUMNS {
            continue;
        }
        for j in 0..width {
            let name = output_column(&t.name, j, width);
            match &t.data {
                TensorData::Float32(v) => {
                    let col = column(numbers, &name);
                    col.extend((0..batch).map(|r| Some(v[r * width + j] as f64)));
                }
                TensorData::Int64(v) => {
                    let col = column(names, &name);
                    col.extend((0..batch).map(|r| Some(v[r * width + j].to_string())));
                }
                TensorData::Text(v) => {
                    let col = column(names, &name);
                    col.extend((0..batch).map(|r| Some(v[r * width + j].clone())));
                }
            }
        }
    }
}

fn column<'a, T>(columns: &'a mut Vec<(String, Vec<T>)>, name: &str) -> &'a mut Vec<T> {
    let i = match columns.iter().position(|c| c.0 == name) {
        Some(i) => i,
        None => {
            columns.push((name.to_string(), vec![]));
            columns.len() - 1
        }
    };
    &mut columns[i].1
}

/// Feature columns from `{"inputs": [...]}` training data: the columns of its
/// first `[rows, features]` float tensor, named `input[j]` unless `names`
/// says otherwise.
pub fn columns_of(inputs: &[Tensor], names: Option<&[String]>) -> Result<Columns, String> {
    let t = inputs
        .iter()
        .find(|t| matches!(t.data, TensorData::Float32(_)) && t.shape.len() == 2)
        .ok_or("no [rows, features] float input")?;
    let TensorData::Float32(v) = &t.data else {
        unreachable!("matched above")
    };
    let (rows, width) = (t.shape[0] as usize, t.shape[1] as usize);
    if width == 0 || rows == 0 || v.len() != rows * width {
        return Err(format!("input `{}` has no rows or columns", t.name));
    }
    if let Some(n) = names
        && n.len() != width
    {
        return Err(format!(
            "{} feature names for the {width} columns of input `{}`",
            n.len(),
            t.name
        ));
    }
    Ok((0..width)
        .map(|j| {
            let name = names.map_or_else(|| format!("{}[{j}]", t.name), |n| n[j].clone());
            let values = (0..rows)
                .map(|r| Some(v[r * width + j] as f64).filter(|x| x.is_finite()))
                .collect();
            (name, values)
        })
        .collect())
}
