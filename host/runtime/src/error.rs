use thiserror::Error;

use crate::bindings::PredictError;

/// Everything that can go wrong between component bytes and a prediction.
#[derive(Debug, Error)]
pub enum HostError {
    #[error("signature check failed: {0}")]
    Signature(#[from] wasmops_sign::SignError),
    #[error("refused by the trust policy: {0}")]
    Trust(wasmops_trust::TrustError),
    #[error("not a valid model component: {0}")]
    Compile(String),
    #[error("component cannot be linked: {0}")]
    Link(String),
    #[error("the model call exceeded its deadline of {0:?} and was stopped")]
    Deadline(std::time::Duration),
    #[error("the model exceeded its memory limit of {0} bytes and was stopped")]
    MemoryLimit(usize),
    #[error("the model trapped: {0}")]
    Trap(String),
    #[error("{}", describe_predict(.0))]
    Predict(PredictError),
    #[error("{0}")]
    Io(String),
}

impl From<wasmops_trust::TrustError> for HostError {
    fn from(e: wasmops_trust::TrustError) -> HostError {
        match e {
            wasmops_trust::TrustError::Signature(s) => HostError::Signature(s),
            other => HostError::Trust(other),
        }
    }
}

fn describe_predict(e: &PredictError) -> String {
    match e {
        PredictError::UnknownInput(m) | PredictError::MissingInput(m) => format!("bad input: {m}"),
        PredictError::BadShape(m) => format!("bad input shape: {m}"),
        PredictError::BadType(m) => format!("bad input type: {m}"),
        PredictError::InvalidValue(m) => format!("invalid input value: {m}"),
        PredictError::Inference(m) => format!("inference failed: {m}"),
        PredictError::NotInitialized => {
            "the component has no model baked in (build it with `wasmops build`)".into()
        }
    }
}
