//! Preprocessing that runs inside a model component, before the model.
//!
//! A pipeline is written in TOML as a list of `[[step]]` tables (see `README.md`
//! in the repository root for every op). The same code runs in the guest and in
//! the native benchmark baseline, so both see identical model inputs.

mod apply;
mod error;
mod spec;
mod tensor;

pub use error::PipelineError;
pub use spec::{Encoding, Step, Unknown};
pub use tensor::{Data, Tensor};

/// One axis of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extent {
    Fixed(u64),
    Symbol(String),
}

/// A validated, ready-to-apply list of steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pipeline {
    steps: Vec<Step>,
}

impl Pipeline {
    /// Parses and validates pipeline TOML. An empty string is the empty pipeline.
    pub fn from_toml(text: &str) -> Result<Pipeline, PipelineError> {
        let file: spec::PipelineFile =
            toml::from_str(text).map_err(|e| PipelineError::Parse(e.to_string()))?;
        for (i, step) in file.steps.iter().enumerate() {
            step.validate(i + 1)?;
        }
        Ok(Pipeline { steps: file.steps })
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Text inputs consumed by `category-map` steps: callers send them, the model never sees them.
    pub fn text_sources(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().filter_map(|s| match s {
            Step::CategoryMap { source, .. } => Some(source.as_str()),
            _ => None,
        })
    }

    /// The shape callers send for `input`, worked back from the shape the model
    /// expects after preprocessing (one-hot widens, resize accepts any H and W...).
    pub fn raw_shape(
        &self,
        input: &str,
        default_input: &str,
        model_shape: Vec<Extent>,
    ) -> Vec<Extent> {
        let mut shape = model_shape;
        for step in self
            .steps
            .iter()
            .rev()
            .filter(|s| s.target().unwrap_or(default_input) == input)
        {
            let narrow = |shape: &mut Vec<Extent>, by: u64| {
                if let Some(Extent::Fixed(d)) = shape.last_mut() {
                    *d = d.saturating_sub(by);
                }
            };
            match step {
                Step::OneHot { categories, .. } => narrow(&mut shape, categories.len() as u64 - 1),
                Step::CategoryMap {
                    categories,
                    encoding,
                    ..
                } => narrow(
                    &mut shape,
                    if *encoding == Encoding::OneHot {
                        categories.len() as u64
                    } else {
                        1
                    },
                ),
                Step::HwcToChw { .. } if shape.len() == 4 => {
                    shape = vec![
                        shape[0].clone(),
                        shape[2].clone(),
                        shape[3].clone(),
                        shape[1].clone(),
                    ]
                }
                Step::Resize { .. } if shape.len() >= 3 => {
                    let h = shape.len() - 3;
                    shape[h] = Extent::Symbol("H".into());
                    shape[h + 1] = Extent::Symbol("W".into());
                }
                _ => {}
            }
        }
        shape
    }

    pub fn describe(&self) -> Vec<String> {
        self.steps.iter().map(Step::describe).collect()
    }

    /// Runs every step in order. Steps without an explicit tensor name work on `default_input`.
    pub fn apply(
        &self,
        tensors: &mut Vec<Tensor>,
        default_input: &str,
    ) -> Result<(), PipelineError> {
        for step in &self.steps {
            let target = step.target().unwrap_or(default_input);
            let source = match step {
                Step::CategoryMap { source, .. } => {
                    let at = tensors
                        .iter()
                        .position(|t| &t.name == source)
                        .ok_or_else(|| PipelineError::MissingInput(source.clone()))?;
                    Some(tensors.remove(at))
                }
                _ => None,
            };
            let t = tensors
                .iter_mut()
                .find(|t| t.name == target)
                .ok_or_else(|| PipelineError::MissingInput(target.to_string()))?;
            apply::apply_step(step, t, source)?;
        }
        Ok(())
    }
}

/// Refuses NaN and infinities in model inputs: the model would silently produce garbage.
pub fn check_finite(t: &Tensor) -> Result<(), PipelineError> {
    if let Data::F32(v) = &t.data
        && let Some(i) = v.iter().position(|x| !x.is_finite())
    {
        return Err(PipelineError::InvalidValue {
            input: t.name.clone(),
            message: format!(
                "element {i} is {} (add an `impute` step to the pipeline to replace missing values)",
                v[i]
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
