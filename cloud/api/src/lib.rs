//! The coordinator's HTTP contract: every request and response body of
//! `wasmops coordinator`'s API as a serde type, shared by the coordinator (which
//! serves them), the `wasmops` CLI and any program that drives a fleet, plus a
//! blocking [`Client`] (feature `client`).
//!
//! | method | path | body → answer | role |
//! |---|---|---|---|
//! | POST | /v1/models | signed component → [`Registered`] | data-scientist |
//! | GET | /v1/models, /v1/models/{name}, …/versions/{version-or-alias} | [`ModelSummary`]s, [`ModelVersions`], [`Version`] | viewer |
//! | PUT, DELETE | /v1/models/{name}/aliases/{alias} | [`AliasRequest`] → [`Version`] | data-scientist, operator |
//! | PUT | /v1/models/{name}/versions/{version}/tags/{key} | [`TagRequest`] → [`Version`] | data-scientist, operator |
//! | GET | /v1/artifacts/{sha256} (honours `Range`) | component bytes | device, viewer |
//! | GET | /v1/datasets, /v1/runs?model=&limit=N&before_ms=T, /v1/audit?limit=N | [`Dataset`]s, the newest [`Run`]s (100 unless `limit`, at most 1000; oldest first), [`AuditEntry`]s | viewer |
//! | POST | /v1/datasets/{name}?label=COL&format=csv\|json&file=F | the file → [`DatasetVersion`] | data-scientist |
//! | POST | /v1/datasets/{name}/from-production | [`FromProduction`] → [`DatasetVersion`] | data-scientist |
//! | GET | /v1/datasets/{name}, …/versions/{version}, …/versions/{version}/data | [`DatasetVersions`], [`DatasetVersion`], the file | viewer |
//! | POST | /v1/runs | [`RunRequest`] → [`Run`] | data-scientist |
//! | GET | /v1/runs/{id}, /v1/runs/{id}/logs | [`Run`], its log (text) | viewer |
//! | POST | /v1/runs/{id}/cancel | → [`Run`] | data-scientist |
//! | GET, PUT | /v1/models/{name}/loop | [`LoopView`]; [`LoopSettings`] → [`LoopView`] | viewer; data-scientist |
//! | POST | /v1/models/{name}/loop/trigger | → [`Run`] (a run as the loop says, now) | data-scientist |
//! | POST | /v1/runs/{id}/approve | → [`Promotion`] | operator |
//! | POST | /v1/runs/claim, /v1/runs/{id}/{heartbeat,finish} | [`ClaimRequest`] → [`Run`] or 204; [`RunProgress`]; [`RunResult`] → [`Run`] | worker |
//! | POST | /v1/tokens | [`TokenRequest`] → [`TokenCreated`] | admin |
//! | POST | /v1/enrolments | [`EnrolmentRequest`] → [`Enrolment`] | operator |
//! | POST | /v1/enrol (bearer: enrolment token) | [`EnrolRequest`] → [`Credential`] | enrolment token |
//! | GET | /v1/devices | [`Device`]s | viewer |
//! | POST, GET | /v1/deployments, /v1/deployments/{id} | [`DeployRequest`] → [`Deployment`] | operator, viewer |
//! | POST | /v1/rollouts | [`RolloutRequest`] → [`RolloutView`] | operator |
//! | GET | /v1/rollouts, /v1/rollouts/{id} | [`RolloutSummary`]s, [`RolloutView`] | viewer |
//! | POST | /v1/rollouts/{id}/{pause,resume,approve,abort} | → [`RolloutView`] | operator |
//! | GET | /v1/telemetry?since_ms=T | per model version telemetry (JSON) | viewer |
//! | POST | /v1/labels | [`LabelsRequest`] → [`LabelsStored`] | data-scientist, operator |
//! | GET | /v1/models/{name}/monitor?version=V&since_ms=T&until_ms=T&selector=k=v | [`MonitorReport`] (`…/monitor.html`: the page) | viewer |
//! | GET | /v1/models/{name}/samples?version=V&since_ms=T&limit=N | [`Samples`] (raw rows devices sampled) | data-scientist |
//! | GET, PUT | /v1/models/{name}/monitoring | [`MonitorSettings`] | viewer; data-scientist |
//! | GET, PUT | /v1/trust | trust metadata (root chain, delegations, revocations); the same → [`TrustPublished`] (409 going back, 422 not holding) | device, viewer; admin |
//! | GET | /v1/events?kind=A,B | Server-Sent Events: one [`Event`] each, [`MISSED`] after a gap | viewer |
//!
//! Every error answer is an [`ErrorBody`]: client errors (4xx) say what was
//! wrong; server faults (5xx) carry only an incident id that the coordinator's
//! log holds the details under.

mod datasets;
mod error;
mod events;
mod fleet;
mod loops;
mod models;
mod monitoring;
mod rollouts;
mod runs;
mod trust;

#[cfg(feature = "client")]
mod client;

#[cfg(feature = "client")]
pub use client::{ApiError, Client, Followed};

/// Where the zero-setup coordinator keeps its state (SQLite file, artifacts,
/// admin token, `tls/ca.pem`), relative to where it runs: clients run beside
/// it find its CA there.
pub const DEFAULT_DATA_DIR: &str = "wasmops-data";

pub use datasets::*;
pub use error::ErrorBody;
pub use events::*;
pub use fleet::*;
pub use loops::*;
pub use models::*;
pub use monitoring::*;
pub use rollouts::*;
pub use runs::*;
pub use trust::*;
