//! The generic model component.
//!
//! `wasmops build` instantiates this component under wizer, calls `init-model`
//! with the model (tract NNEF) and pipeline, and snapshots memory: the shipped
//! component starts with the optimised tract plan already in its heap, so the
//! first `predict` does no parsing or optimisation.
//!
//! Only meaningful on wasm: elsewhere (`cargo test --workspace`) the crate is empty,
//! since a native cdylib cannot carry the component's `iface#func` symbol names.
#![cfg(target_family = "wasm")]

mod convert;
mod zeroing_alloc;

use std::sync::OnceLock;

use tract_nnef::internal::*;
use wasmops_batching::Plan;
use wasmops_pipeline::Pipeline;

wit_bindgen::generate!({
    path: "../../wit",
    world: "model-builder",
});

use exports::wasmops::model::model::Guest as ModelGuest;
use wasmops::model::types::{Dim, ElementType, ModelInfo, PredictError, Tensor, TensorData};

#[global_allocator]
static ALLOC: zeroing_alloc::ZeroingAlloc = zeroing_alloc::ZeroingAlloc;

/// Everything `predict` needs; built once by `init-model`, then frozen by the snapshot.
struct Loaded {
    plan: Plan,
    pipeline: Pipeline,
    info: ModelInfo,
    /// The model's own input names, in plan order.
    input_names: Vec<String>,
    output_names: Vec<String>,
}

static LOADED: OnceLock<Loaded> = OnceLock::new();

/// What `wasmops build` hands to `init-model`.
pub(crate) struct Bundle {
    pub name: String,
    pub version: String,
    pub nnef: Vec<u8>,
    pub pipeline: String,
}

fn load(bundle: &Bundle) -> TractResult<Loaded> {
    let pipeline = Pipeline::from_toml(&bundle.pipeline).map_err(|e| format_err!("{e}"))?;
    let model = loader().model_for_read(&mut &bundle.nnef[..])?;
    check_types(&model)?;
    let plan = Plan::new(model)?;
    let model = plan.model();
    check_types(model)?;
    let input_names = model
        .inputs
        .iter()
        .map(|o| model.node(o.node).name.clone())
        .collect::<Vec<_>>();
    let output_names = model
        .outputs
        .iter()
        .map(|o| {
            model
                .outlet_label(*o)
                .map(|s| s.to_string())
                .unwrap_or_else(|| model.node(o.node).name.clone())
        })
        .collect::<Vec<_>>();
    let info = convert::model_info(bundle, &plan, &pipeline, &input_names, &output_names)?;
    Ok(Loaded {
        plan,
        pipeline,
        info,
        input_names,
        output_names,
    })
}

/// The NNEF loader. The full guest knows every op tract can serialise; the slim
/// one (feature `slim`, see guest/vendor/README.md) only the op families that
/// scikit-learn models and CNNs use, so the ops it leaves out are not linked in.
/// `wasmops build` tries the slim guest first and falls back to the full one.
fn loader() -> tract_nnef::framework::Nnef {
    let onnx = if cfg!(feature = "slim") {
        let mut registry = Registry::new("tract_onnx");
        tract_onnx_opl::ml::register(&mut registry);
        registry
    } else {
        tract_onnx_opl::onnx_opl_registry()
    };
    // Quantised models' quantize/dequantize ops (`wasmops_quant`): a few
    // element-wise loops, so even the slim guest reads them.
    tract_nnef::nnef()
        .with_registry(onnx)
        .with_registry(wasmops_quant::registry())
}

/// The slim guest's tract dispatches on fewer element types (tract-data feature
/// `slim`, guest/vendor/README.md): a model with another type goes to the full guest.
fn check_types(model: &TypedModel) -> TractResult<()> {
    for node in &model.nodes {
        for (ix, output) in node.outputs.iter().enumerate() {
            let dt = output.fact.datum_type;
            if !tract_data::dispatches(dt) {
                bail!(
                    "this guest leaves out {dt:?} tensors (output {ix} of node `{}`)",
                    node.name
                );
            }
        }
    }
    Ok(())
}

struct Component;

impl Guest for Component {
    fn init_model(
        name: String,
        version: String,
        nnef: Vec<u8>,
        pipeline: String,
    ) -> Result<(), String> {
        let bundle = Bundle {
            name,
            version,
            nnef,
            pipeline,
        };
        if LOADED.get().is_some() {
            return Err("model already initialised".into());
        }
        // Freed buffers (the NNEF archive, parse trees, the warm-up's
        // tensors) are zeroed so the snapshot leaves them out.
        zeroing_alloc::zero_on_free(true);
        let loaded = load(&bundle).map_err(|e| format!("{e:?}"));
        drop(bundle);
        if let Ok(l) = &loaded {
            warm_up(l);
        }
        zeroing_alloc::zero_on_free(false);
        let _ = LOADED.set(loaded?);
        Ok(())
    }
}

impl ModelGuest for Component {
    fn predict(inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PredictError> {
        run(LOADED.get().ok_or(PredictError::NotInitialized)?, inputs)
    }

    fn metadata() -> ModelInfo {
        match LOADED.get() {
            Some(l) => l.info.clone(),
            None => ModelInfo {
                name: String::new(),
                version: String::new(),
                inputs: vec![],
                outputs: vec![],
                preprocessing: vec![],
            },
        }
    }
}

fn run(loaded: &Loaded, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, PredictError> {
    let mut tensors = inputs
        .into_iter()
        .map(convert::from_wit)
        .collect::<Result<Vec<_>, _>>()?;
    let default_input = &loaded.input_names[0];
    loaded
        .pipeline
        .apply(&mut tensors, default_input)
        .map_err(convert::pipeline_error)?;
    let model_inputs = convert::order_inputs(&loaded.plan, &loaded.input_names, tensors)?;
    let outputs = loaded
        .plan
        .run(model_inputs)
        .map_err(|e| PredictError::Inference(format!("{e:?}")))?;
    outputs
        .into_iter()
        .zip(&loaded.output_names)
        .map(|(t, name)| convert::to_wit(name, t))
        .collect()
}

/// One prediction on zeros (one row) before the snapshot, so what a first
/// call sets up lazily (tract's and std's one-time state) is in the shipped
/// memory image and not redone by every fresh instance: `serve` makes one
/// per call. Measured on iris: a fresh instance's prediction 72 → 47 µs
/// (`wasmops bench`, "predict, fresh instance"; a warm one takes 9). Best
/// effort: a model that refuses zeros is snapshotted without it; text
/// inputs cannot be made up.
fn warm_up(loaded: &Loaded) {
    let mut inputs = vec![];
    for spec in &loaded.info.inputs {
        let shape: Vec<u32> = spec
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(n) => *n as u32,
                Dim::Symbol(_) => 1,
            })
            .collect();
        let n = shape.iter().map(|d| *d as usize).product();
        let data = match spec.element_type {
            ElementType::Text => return,
            ElementType::Int64 | ElementType::Int32 => TensorData::Int64(vec![0; n]),
            _ => TensorData::Float32(vec![0.0; n]),
        };
        inputs.push(Tensor {
            name: spec.name.clone(),
            shape,
            data,
        });
    }
    let _ = run(loaded, inputs);
}

export!(Component);

/// Model components get no environment: tract's tuning knobs read env vars, and
/// answering "unset" here keeps wasi-libc's `wasi:cli/environment` import out of
/// the component.
#[unsafe(no_mangle)]
pub extern "C" fn getenv(_name: *const std::ffi::c_char) -> *mut std::ffi::c_char {
    std::ptr::null_mut()
}
