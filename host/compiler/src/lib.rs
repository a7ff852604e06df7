//! `wasmops build`: ONNX model + preprocessing pipeline → one self-contained
//! model component.
//!
//! 1. [`onnx::load_model`] parses the ONNX file natively (tract + [`onnx_ml`]
//!    ops; float16 widened to f32 first, [`float16`], and int8 QDQ
//!    convolutions fused, [`qdq`]), fixes input shapes
//!    (batch stays symbolic) and declutters it; a convolutional model with
//!    independent samples is loaded for batch 1 instead and marked to
//!    run a batch sample by sample (`wasmops_batching`);
//! 2. [`onnx::to_nnef`] writes tract's NNEF form (plus `wasmops_quant`'s
//!    quantisation primitives), so the guest needs no ONNX parser;
//! 3. [`snapshot::bake`] runs the generic guest's `init-model` under wizer and
//!    snapshots its memory: the optimised tract plan is in the component's data
//!    ([`data_segments`] then leaves the zeros between its islands out).

mod data_segments;
mod float16;
mod onnx;
mod onnx_ml;
mod panic_guard;
pub mod profile;
mod qdq;
mod snapshot;

use std::time::{Duration, Instant};

pub use onnx::{InputShape, load_model, to_nnef};
use thiserror::Error;
use wasmops_pipeline::Pipeline;
use wasmops_trust::claims::ClaimsFile;
use wasmops_trust::{Claims, Timestamp};

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("malformed ONNX model: {0}")]
    MalformedOnnx(String),
    #[error("unsupported operator `{op}` in node `{node}`")]
    UnsupportedOp { op: String, node: String },
    #[error("the model cannot be converted: {0}")]
    Unsupported(String),
    #[error("bad --input-shape: {0}")]
    BadInputShape(String),
    #[error("bad pipeline: {0}")]
    Pipeline(#[from] wasmops_pipeline::PipelineError),
    #[error("initialising the component failed: {0}")]
    Snapshot(String),
    #[error("bad claims: {0}")]
    Claims(#[from] wasmops_trust::TrustError),
    #[error("the training data: {0}")]
    Training(String),
    #[error("composing the wasi:http front with the model failed: {0}")]
    Compose(String),
}

#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    pub name: String,
    pub version: String,
    /// Pipeline TOML text; empty for none.
    pub pipeline: String,
    pub input_shapes: Vec<InputShape>,
    /// Where to cache the compiled generic guest; `None` compiles it every time.
    pub cache_dir: Option<std::path::PathBuf>,
    /// A generic guest to use instead of the one built into wasmops (for guest
    /// development, e.g. comparing target features).
    pub guest: Option<Vec<u8>>,
    /// Sequence, expiry, lineage, metrics and extra capabilities for the claims;
    /// `build` adds name, version, hashes, created-at and the capabilities the
    /// component's imports need.
    pub claims: ClaimsFile,
    /// Training data: its reference profile is signed into the claims.
    pub training: Option<profile::Training>,
    /// The claims' creation time (`SOURCE_DATE_EPOCH` for reproducible builds); now when `None`.
    pub created_at: Option<Timestamp>,
    /// Put the wasi:http front before the model ([`http_front`]): the result
    /// exports `wasi:http/incoming-handler` instead of `wasmops:model/model`.
    pub http: bool,
}

/// Which generic guest a component was baked from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFlavour {
    /// Only the op families of scikit-learn models and CNNs (the smaller one).
    Slim,
    /// Every op tract can load.
    Full,
    /// [`BuildOptions::guest`].
    Custom,
}

impl std::fmt::Display for GuestFlavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            GuestFlavour::Slim => "slim",
            GuestFlavour::Full => "full",
            GuestFlavour::Custom => "custom",
        })
    }
}

/// What `build` produced, with timings for the CLI to report.
#[derive(Debug)]
pub struct Built {
    pub claims: Claims,
    pub component: Vec<u8>,
    pub guest: GuestFlavour,
    pub nnef_bytes: usize,
    pub convert_time: Duration,
    pub snapshot_time: Duration,
    /// What the profile left out, for the user (rows the model refused…).
    pub notes: Vec<String>,
}

pub fn build(onnx_bytes: &[u8], opts: &BuildOptions) -> Result<Built, BuildError> {
    Pipeline::from_toml(&opts.pipeline)?;
    // Name and version become claims: refuse bad ones before the slow part.
    Claims::new(&opts.name, &opts.version, 0, b"", "").validate()?;
    let started = Instant::now();
    let model = panic_guard::guarded("converting the ONNX model", || {
        load_model(onnx_bytes, &opts.input_shapes)
    })?;
    let nnef = panic_guard::guarded("writing the model as NNEF", || to_nnef(&model))?;
    let convert_time = started.elapsed();
    let started = Instant::now();
    let bake = |guest: &[u8]| {
        snapshot::bake(
            guest,
            &opts.name,
            &opts.version,
            &nnef,
            &opts.pipeline,
            opts.cache_dir.as_deref(),
        )
    };
    let (component, guest) = match &opts.guest {
        Some(guest) => (bake(guest)?, GuestFlavour::Custom),
        None => match bake(wasmops_guest_artifacts::SLIM_GUEST) {
            Ok(component) => (component, GuestFlavour::Slim),
            // The slim guest leaves out op families and element types: whatever stops it
            // (an error, or a trap from a type it does not dispatch on) is retried on the
            // full guest, whose answer is final.
            Err(BuildError::Unsupported(why) | BuildError::Snapshot(why)) => {
                tracing::debug!(
                    "the slim guest cannot load the model ({why}); using the full guest"
                );
                (
                    bake(wasmops_guest_artifacts::GENERIC_GUEST)?,
                    GuestFlavour::Full,
                )
            }
            Err(e) => return Err(e),
        },
    };
    let mut notes = onnx::conversion_notes(onnx_bytes);
    let profile = opts
        .training
        .as_ref()
        .map(|t| profile::reference(&component, t, opts.cache_dir.as_deref(), &mut notes))
        .transpose()?;
    // The profile ran the model component itself; the front goes on after it.
    let component = if opts.http {
        http_front(&component)?
    } else {
        component
    };
    let claims = claims(onnx_bytes, &component, profile, opts)?;
    let component = claims.embed(&component)?;
    Ok(Built {
        claims,
        component,
        guest,
        nnef_bytes: nnef.len(),
        convert_time,
        snapshot_time: started.elapsed(),
        notes,
    })
}

/// Plugs a model component into the wasi:http front (`guest/http`,
/// [`wasmops_guest_artifacts::HTTP_FRONT`]) with wac's composition graph: the
/// model's `wasmops:model/model` export fills the front's import, and the
/// result exports the front's `wasi:http/incoming-handler`. The model's own
/// imports (random, clocks, stdio) and the front's (wasi:http types) become
/// the composition's, so its claims name the `http` capability too.
pub fn http_front(model: &[u8]) -> Result<Vec<u8>, BuildError> {
    use wac_graph::types::Package;
    use wac_graph::{CompositionGraph, EncodeOptions, plug};
    let err = |e: &dyn std::fmt::Display| BuildError::Compose(e.to_string());
    let mut graph = CompositionGraph::new();
    let model = Package::from_bytes("wasmops:model", None, model.to_vec(), graph.types_mut())
        .map_err(|e| err(&format!("{e:#}")))?;
    let model = graph.register_package(model).map_err(|e| err(&e))?;
    let front = Package::from_bytes(
        "wasmops:http-front",
        None,
        wasmops_guest_artifacts::HTTP_FRONT.to_vec(),
        graph.types_mut(),
    )
    .map_err(|e| err(&format!("{e:#}")))?;
    let front = graph.register_package(front).map_err(|e| err(&e))?;
    plug(&mut graph, vec![model], front).map_err(|e| err(&e))?;
    graph.encode(EncodeOptions::default()).map_err(|e| err(&e))
}

/// The claims `build` embeds: the user's parts plus what it knows itself.
/// Without `sequence`, the build time in seconds stands in: it only grows.
fn claims(
    onnx: &[u8],
    component: &[u8],
    profile: Option<wasmops_profile::Profile>,
    opts: &BuildOptions,
) -> Result<Claims, BuildError> {
    let mut c = Claims::new(&opts.name, &opts.version, 0, onnx, &opts.pipeline);
    if let Some(t) = opts.created_at {
        c.created_at = t;
    }
    let user = &opts.claims;
    c.sequence = user.sequence.unwrap_or(c.created_at.unix());
    c.lineage = user.lineage.clone();
    c.metrics = user.metrics.clone();
    c.profile = profile;
    let mut caps = wasmops_trust::capabilities::required(component)?;
    caps.extend(user.capabilities.iter().cloned());
    caps.sort();
    caps.dedup();
    c.capabilities = caps;
    if let Some(exp) = &user.expires {
        c.expires_at = Some(
            Timestamp::parse_or_after(exp, c.created_at)
                .map_err(|e| BuildError::Claims(wasmops_trust::TrustError::MalformedClaims(e)))?,
        );
    }
    c.validate()?;
    Ok(c)
}
