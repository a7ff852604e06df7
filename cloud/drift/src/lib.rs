//! Drift and data-quality statistics for wasmops, computed as Evidently
//! computes them by default, so a data scientist gets the numbers they know.
//!
//! Data path, offline (`wasmops drift --reference REF --current CUR`):
//! [`table`] reads each file into named columns (numeric or categorical,
//! missing cells kept as such) → [`report::compare`] takes each reference
//! column with its current twin: [`rule`] bins them and computes every
//! statistic in [`stats`], picks the default method (or the one asked for)
//! and gives the verdict; [`quality`] profiles the reference column and
//! checks the current one against it → a [`report::Report`], printed as JSON
//! or rendered by [`html`].
//!
//! Data path, fleet: devices count live values by the model's signed
//! profile (`wasmops-profile`); the coordinator merges their counts into
//! [`fleet::ColumnCounts`] and [`fleet::evaluate`] judges them — drift from
//! bins in [`binned`] (W1 with mass spread within bins, PSI, Jensen–Shannon,
//! chi-square), the same [`quality`] checks, and the drift coefficient.
//!
//! The statistics are checked against scipy (`scripts/make_drift_fixtures.py`
//! writes `tests/fixtures/drift/`; `tests/fixtures.rs` compares).

pub mod binned;
pub mod fleet;
pub mod html;
pub mod performance;
pub mod quality;
pub mod report;
pub mod rule;
pub mod stats;
pub mod table;

pub use quality::Anomaly;
pub use report::{ColumnDrift, Options, Report, compare};
pub use rule::{Method, Rule, Rules};
pub use table::{Kind, Table, Values};

/// What can go wrong, each naming the file, column or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    /// A file that cannot be read or parsed.
    #[error("the {what} data: {detail}")]
    Input { what: String, detail: String },
    /// A column that cannot be compared.
    #[error("column `{column}`: {detail}")]
    Column { column: String, detail: String },
    /// A setting that makes no sense.
    #[error("{0}")]
    Options(String),
}
