use thiserror::Error;

use crate::bindings::PredictError;

/// Everything that can go wrong between component bytes and a prediction.
#[derive(Debug, Error)]
pub enum HostError {
    /// The reason is in the message, not also the error's source: a chain
    /// printed whole (`{:#}`) would say it twice.
    #[error("signature check failed: {0}")]
    Signature(wasmops_sign::SignError),
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
    #[error("{}", refusal(.0))]
    Predict(PredictError),
    #[error("{0}")]
    Io(String),
}

impl From<wasmops_sign::SignError> for HostError {
    fn from(e: wasmops_sign::SignError) -> HostError {
        HostError::Signature(e)
    }
}

impl From<wasmops_trust::TrustError> for HostError {
    fn from(e: wasmops_trust::TrustError) -> HostError {
        match e {
            wasmops_trust::TrustError::Signature(s) => HostError::Signature(s),
            other => HostError::Trust(other),
        }
    }
}

/// A predict-error as the wire words it (`wasmops_predict_json::Refusal`).
pub fn refusal(e: &PredictError) -> wasmops_predict_json::Refusal<'_> {
    use wasmops_predict_json::Refusal;
    match e {
        PredictError::UnknownInput(m) => Refusal::UnknownInput(m),
        PredictError::MissingInput(m) => Refusal::MissingInput(m),
        PredictError::BadShape(m) => Refusal::BadShape(m),
        PredictError::BadType(m) => Refusal::BadType(m),
        PredictError::InvalidValue(m) => Refusal::InvalidValue(m),
        PredictError::Inference(m) => Refusal::Inference(m),
        PredictError::NotInitialized => Refusal::NotInitialized,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_chain_names_the_reason_once() {
        let e = anyhow::Error::from(HostError::from(wasmops_sign::SignError::Tampered));
        let text = format!("{e:#}");
        assert_eq!(text.matches("modified after signing").count(), 1, "{text}");
        assert!(text.starts_with("signature check failed: "), "{text}");
    }
}
