use thiserror::Error;

/// Why a pipeline could not be loaded or applied. Messages name the step and the tensor.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PipelineError {
    #[error("invalid pipeline TOML: {0}")]
    Parse(String),
    #[error("pipeline step {step} ({op}): {message}")]
    Config {
        step: usize,
        op: &'static str,
        message: String,
    },
    #[error("input `{0}` is required by the pipeline but was not given")]
    MissingInput(String),
    #[error("input `{input}`: {message}")]
    BadShape { input: String, message: String },
    #[error("input `{input}`: expected {expected} data, got {got}")]
    BadType {
        input: String,
        expected: &'static str,
        got: &'static str,
    },
    #[error("input `{input}`: {message}")]
    InvalidValue { input: String, message: String },
}
