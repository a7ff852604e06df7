//! The pipeline TOML: a list of `[[step]]` tables, each naming its `op`.

use serde::Deserialize;

use crate::PipelineError;

/// How an encoder treats a category it was not trained on.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Unknown {
    /// Refuse the request, naming the value.
    #[default]
    Error,
    /// Encode as all zeros (one-hot) or -1 (ordinal), like scikit-learn's `handle_unknown="ignore"`.
    Ignore,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    #[default]
    OneHot,
    Ordinal,
}

/// One preprocessing step. `input` names the tensor it works on; it defaults to the
/// model's first input. Column-wise parameters apply along the last axis.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Step {
    /// Replace NaN by `value`, or per column by `values` (e.g. training means).
    Impute {
        input: Option<String>,
        value: Option<f32>,
        values: Option<Vec<f32>>,
    },
    /// `(x - mean) / std` per column (scikit-learn StandardScaler).
    StandardScale {
        input: Option<String>,
        mean: Vec<f32>,
        std: Vec<f32>,
    },
    /// Map `[min, max]` per column onto `range` (default `[0, 1]`), like MinMaxScaler.
    MinMax {
        input: Option<String>,
        min: Vec<f32>,
        max: Vec<f32>,
        range: Option<[f32; 2]>,
    },
    /// Bound every value to `[min, max]`.
    Clip {
        input: Option<String>,
        min: f32,
        max: f32,
    },
    /// Replace numeric column `column` (category codes) by one column per category.
    OneHot {
        input: Option<String>,
        column: usize,
        categories: Vec<f32>,
        #[serde(default)]
        unknown: Unknown,
    },
    /// Encode the text input `source` (shape `[N]` or `[N,1]`) and append the encoded
    /// columns to the numeric tensor `into`; `source` is consumed.
    CategoryMap {
        source: String,
        into: Option<String>,
        categories: Vec<String>,
        #[serde(default)]
        encoding: Encoding,
        #[serde(default)]
        unknown: Unknown,
    },
    /// Bilinear resize (half-pixel centres) of an `[N,H,W,C]` or `[H,W,C]` image.
    Resize {
        input: Option<String>,
        height: usize,
        width: usize,
    },
    /// `(x * scale - mean[c]) / std[c]` per channel (last axis); `scale` defaults to 1.
    Normalize {
        input: Option<String>,
        scale: Option<f32>,
        mean: Vec<f32>,
        std: Vec<f32>,
    },
    /// `[N,H,W,C]` (or `[H,W,C]`) to `[N,C,H,W]`.
    HwcToChw { input: Option<String> },
}

impl Step {
    pub fn op(&self) -> &'static str {
        match self {
            Step::Impute { .. } => "impute",
            Step::StandardScale { .. } => "standard-scale",
            Step::MinMax { .. } => "min-max",
            Step::Clip { .. } => "clip",
            Step::OneHot { .. } => "one-hot",
            Step::CategoryMap { .. } => "category-map",
            Step::Resize { .. } => "resize",
            Step::Normalize { .. } => "normalize",
            Step::HwcToChw { .. } => "hwc-to-chw",
        }
    }

    /// The tensor this step writes (`None`: the default input).
    pub fn target(&self) -> Option<&str> {
        match self {
            Step::Impute { input, .. }
            | Step::StandardScale { input, .. }
            | Step::MinMax { input, .. }
            | Step::Clip { input, .. }
            | Step::OneHot { input, .. }
            | Step::Resize { input, .. }
            | Step::Normalize { input, .. }
            | Step::HwcToChw { input } => input.as_deref(),
            Step::CategoryMap { into, .. } => into.as_deref(),
        }
    }

    /// One line for `metadata` and `inspect`.
    pub fn describe(&self) -> String {
        let on = |t: Option<&str>| t.map(|t| format!(" on `{t}`")).unwrap_or_default();
        match self {
            Step::Impute {
                input,
                value,
                values,
            } => match (value, values) {
                (_, Some(v)) => format!(
                    "impute NaN with per-column values ({} columns){}",
                    v.len(),
                    on(input.as_deref())
                ),
                (v, None) => format!(
                    "impute NaN with {}{}",
                    v.unwrap_or(0.0),
                    on(input.as_deref())
                ),
            },
            Step::StandardScale { input, mean, .. } => format!(
                "standard-scale {} columns{}",
                mean.len(),
                on(input.as_deref())
            ),
            Step::MinMax {
                input, min, range, ..
            } => {
                let [lo, hi] = range.unwrap_or([0.0, 1.0]);
                format!(
                    "min-max scale {} columns to [{lo}, {hi}]{}",
                    min.len(),
                    on(input.as_deref())
                )
            }
            Step::Clip { input, min, max } => {
                format!("clip to [{min}, {max}]{}", on(input.as_deref()))
            }
            Step::OneHot {
                input,
                column,
                categories,
                ..
            } => {
                format!(
                    "one-hot column {column} over {} categories{}",
                    categories.len(),
                    on(input.as_deref())
                )
            }
            Step::CategoryMap {
                source,
                into,
                categories,
                encoding,
                ..
            } => format!(
                "{} `{source}` over {} categories, appended{}",
                match encoding {
                    Encoding::OneHot => "one-hot encode",
                    Encoding::Ordinal => "ordinal encode",
                },
                categories.len(),
                on(into.as_deref())
            ),
            Step::Resize {
                input,
                height,
                width,
            } => format!(
                "resize to {height}x{width} (bilinear){}",
                on(input.as_deref())
            ),
            Step::Normalize {
                input,
                scale,
                mean,
                std,
            } => {
                format!(
                    "normalize x*{} - mean {mean:?} / std {std:?}{}",
                    scale.unwrap_or(1.0),
                    on(input.as_deref())
                )
            }
            Step::HwcToChw { input } => format!("HWC to CHW{}", on(input.as_deref())),
        }
    }

    /// Checks the parameters alone, before any data is seen.
    pub(crate) fn validate(&self, index: usize) -> Result<(), PipelineError> {
        let fail = |message: String| {
            Err(PipelineError::Config {
                step: index,
                op: self.op(),
                message,
            })
        };
        let non_finite = |v: &[f32]| v.iter().any(|x| !x.is_finite());
        match self {
            Step::Impute { value, values, .. } => {
                if value.is_some() && values.is_some() {
                    return fail("give either `value` or `values`, not both".into());
                }
                if value.is_some_and(|v| !v.is_finite())
                    || values.as_deref().is_some_and(non_finite)
                {
                    return fail("imputation values must be finite".into());
                }
            }
            Step::StandardScale { mean, std, .. } => {
                if mean.len() != std.len() || mean.is_empty() {
                    return fail(format!(
                        "`mean` ({}) and `std` ({}) need the same non-zero length",
                        mean.len(),
                        std.len()
                    ));
                }
                if non_finite(mean) || non_finite(std) || std.contains(&0.0) {
                    return fail("`mean` and `std` must be finite and `std` non-zero".into());
                }
            }
            Step::MinMax {
                min, max, range, ..
            } => {
                if min.len() != max.len() || min.is_empty() {
                    return fail(format!(
                        "`min` ({}) and `max` ({}) need the same non-zero length",
                        min.len(),
                        max.len()
                    ));
                }
                if non_finite(min) || non_finite(max) || range.is_some_and(|r| non_finite(&r)) {
                    return fail("bounds must be finite".into());
                }
                if let Some(i) = min.iter().zip(max).position(|(a, b)| a > b) {
                    return fail(format!("column {i}: min {} > max {}", min[i], max[i]));
                }
            }
            Step::Clip { min, max, .. } => {
                // NaN bounds are refused too: they compare as neither.
                if !matches!(
                    min.partial_cmp(max),
                    Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
                ) {
                    return fail(format!("min {min} must not exceed max {max}"));
                }
            }
            Step::OneHot { categories, .. } => {
                if categories.is_empty() || non_finite(categories) {
                    return fail("`categories` must be a non-empty list of finite numbers".into());
                }
            }
            Step::CategoryMap { categories, .. } => {
                if categories.is_empty() {
                    return fail("`categories` must not be empty".into());
                }
            }
            Step::Resize { height, width, .. } => {
                if *height == 0 || *width == 0 || *height > 16384 || *width > 16384 {
                    return fail(format!("size {height}x{width} is out of range (1..=16384)"));
                }
            }
            Step::Normalize {
                scale, mean, std, ..
            } => {
                if mean.len() != std.len() || mean.is_empty() {
                    return fail(format!(
                        "`mean` ({}) and `std` ({}) need the same non-zero length",
                        mean.len(),
                        std.len()
                    ));
                }
                if non_finite(mean)
                    || non_finite(std)
                    || std.contains(&0.0)
                    || scale.is_some_and(|s| !s.is_finite())
                {
                    return fail(
                        "`scale`, `mean` and `std` must be finite and `std` non-zero".into(),
                    );
                }
            }
            Step::HwcToChw { .. } => {}
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineFile {
    #[serde(default, rename = "step")]
    pub steps: Vec<Step>,
}
