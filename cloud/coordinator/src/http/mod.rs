//! The HTTP API (JSON), routes and handlers; the bodies are `wasmops_api`'s
//! types (that crate's docs list every route). Every route but `/healthz`
//! needs `Authorization: Bearer TOKEN`.
//!
//! Errors: a [`CoordinatorError`] that is the caller's (bad input, unknown
//! names, conflicts, refusals) answers 4xx with its message; one that is the
//! coordinator's own fault (database, artifact store, broker) answers 5xx with
//! an incident id only, and the details go to the log under that id.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use wasmops_api::{
    AliasRequest, DeployRequest, EnrolRequest, EnrolmentRequest, ErrorBody, ModelVersions,
    RolloutAction, RolloutRequest, TagRequest, TokenCreated, TokenRequest,
};

use crate::auth::{Action, Principal, Role};
use crate::error::CoordinatorError;
use crate::{Coordinator, audit, registry};

mod device_telemetry;
pub use device_telemetry::ReportPace;
mod events;
mod training;

/// An error answer: status and body.
pub struct ApiError(StatusCode, ErrorBody);

impl ApiError {
    pub(crate) fn client(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(
            status,
            ErrorBody {
                error: message.into(),
                incident: None,
            },
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(self.1)).into_response()
    }
}

impl From<CoordinatorError> for ApiError {
    fn from(e: CoordinatorError) -> ApiError {
        let status = match &e {
            CoordinatorError::BadRequest(_) => StatusCode::BAD_REQUEST,
            CoordinatorError::NotFound(_) => StatusCode::NOT_FOUND,
            CoordinatorError::Conflict(_) => StatusCode::CONFLICT,
            CoordinatorError::Forbidden(_) => StatusCode::FORBIDDEN,
            CoordinatorError::Untrusted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            CoordinatorError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CoordinatorError::Db(_)
            | CoordinatorError::Store(_)
            | CoordinatorError::Bus(_)
            | CoordinatorError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if !e.is_server_fault() {
            return ApiError::client(status, e.to_string());
        }
        let incident =
            crate::auth::random_hex(8).unwrap_or_else(|_| format!("t{}", crate::now_ms()));
        tracing::error!(incident = %incident, "{e}");
        let error = if status == StatusCode::SERVICE_UNAVAILABLE {
            e.to_string()
        } else {
            "internal error".to_string()
        };
        ApiError(
            status,
            ErrorBody {
                error,
                incident: Some(incident),
            },
        )
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        CoordinatorError::from(e).into()
    }
}

/// A JSON body, refused with 400 and serde's reason (not axum's plain-text 422).
pub struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {}", e.body_text()),
            )),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body too large: at most {MAX_REQUEST_BYTES} bytes here"),
            )),
            Err(e) => Err(ApiError::client(
                StatusCode::BAD_REQUEST,
                format!("invalid request body: {}", e.body_text()),
            )),
        }
    }
}

pub(crate) type Api = State<Arc<Coordinator>>;
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The caller, if their token allows `action`.
fn bearer(headers: &HeaderMap) -> ApiResult<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::client(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer TOKEN`",
            )
        })
}

pub(crate) async fn allow(
    c: &Coordinator,
    headers: &HeaderMap,
    action: Action,
) -> ApiResult<Principal> {
    let who = authenticated(c, headers).await?;
    if !who.role.allows(action) {
        return Err(ApiError::client(
            StatusCode::FORBIDDEN,
            format!("role {} may not {action:?}", who.role.as_str()),
        ));
    }
    Ok(who)
}

/// The principal behind the request's bearer token: 401 naming why not.
async fn authenticated(c: &Coordinator, headers: &HeaderMap) -> ApiResult<Principal> {
    let token = bearer(headers)?;
    let who = match crate::auth::check(&c.db, token).await? {
        crate::auth::Checked::Valid(who) => who,
        crate::auth::Checked::Expired { name, at_ms } => {
            return Err(ApiError::client(
                StatusCode::UNAUTHORIZED,
                format!(
                    "token `{name}` expired at {} (ms since the epoch {at_ms}): ask an admin for a new one",
                    wasmops_trust::Timestamp::from_unix((at_ms.max(0) / 1000) as u64)
                ),
            ));
        }
        crate::auth::Checked::Refused => {
            return Err(ApiError::client(
                StatusCode::UNAUTHORIZED,
                "unknown or revoked token",
            ));
        }
    };
    Ok(who)
}

/// `GET /v1/whoami`: any live token learns its name and role (an agent
/// checks its credential at start with it), and the control key that signs
/// desired states (a device provisioned with a token rather than enrolled
/// learns it here).
async fn whoami(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    let who = authenticated(&c, &headers).await?;
    Ok(Json(serde_json::json!({
        "name": who.name, "role": who.role.as_str(), "control_key": c.control_key_hex(),
    }))
    .into_response())
}

/// `GET /v1/trust`: the root, delegations and revocation list in force
/// (devices fetch it; any role may read it).
async fn trust_metadata(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Download).await?;
    Ok(Json(crate::trust::current(&c)?).into_response())
}

/// `PUT /v1/trust` (admin): newer metadata in force; 409 if it goes back,
/// 422 if it does not hold.
async fn publish_trust(
    State(c): Api,
    headers: HeaderMap,
    Body(body): Body<wasmops_trust::TrustMetadata>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::ManageTrust).await?;
    let a = crate::trust::publish(&c, &who, body).await?;
    Ok(Json(wasmops_api::TrustPublished {
        root_version: a.root_version,
        revocations_version: a.revocations_version,
        changed: a.changed,
    })
    .into_response())
}

/// Largest JSON body of a deployment or rollout request: a probe sample at
/// its limit plus the rest of the request.
pub const MAX_REQUEST_BYTES: usize = wasmops_protocol::MAX_PROBE_BYTES + (1 << 20);

pub fn router(c: Arc<Coordinator>) -> Router {
    let limit = c.max_artifact_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        // The upload handler reads its body itself, after auth, within `limit`.
        .route(
            "/v1/models",
            post(register)
                .get(list_models)
                .layer(DefaultBodyLimit::max(limit)),
        )
        .route("/v1/models/{name}", get(show_model))
        .route("/v1/models/{name}/versions/{version}", get(show_version))
        .route("/v1/models/{name}/monitor", get(monitor))
        .route("/v1/models/{name}/monitor.html", get(monitor_page))
        .route("/v1/models/{name}/samples", get(samples))
        .route(
            "/v1/models/{name}/monitoring",
            get(monitor_settings)
                .put(set_monitor_settings)
                .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route(
            "/v1/models/{name}/aliases/{alias}",
            put(set_alias).delete(delete_alias),
        )
        .route(
            "/v1/models/{name}/versions/{version}/tags/{key}",
            put(set_tag),
        )
        .route("/v1/artifacts/{sha256}", get(artifact))
        .route("/v1/datasets", get(training::list_datasets))
        // The push handler reads its body itself, after auth, within `limit`.
        .route(
            "/v1/datasets/{name}",
            post(training::push_dataset)
                .get(training::show_dataset)
                .layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/v1/datasets/{name}/from-production",
            post(training::dataset_from_production),
        )
        .route(
            "/v1/datasets/{name}/versions/{version}",
            get(training::show_dataset_version),
        )
        .route(
            "/v1/datasets/{name}/versions/{version}/data",
            get(training::dataset_data),
        )
        .route(
            "/v1/runs",
            get(training::list_runs).post(training::create_run),
        )
        .route("/v1/runs/claim", post(training::claim_run))
        .route("/v1/runs/{id}", get(training::show_run))
        .route("/v1/runs/{id}/logs", get(training::run_logs))
        .route("/v1/runs/{id}/cancel", post(training::cancel_run))
        .route("/v1/runs/{id}/heartbeat", post(training::run_heartbeat))
        .route("/v1/runs/{id}/finish", post(training::finish_run))
        .route("/v1/runs/{id}/approve", post(training::approve_run))
        .route(
            "/v1/models/{name}/loop",
            get(training::show_loop)
                .put(training::set_loop)
                .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route(
            "/v1/models/{name}/loop/trigger",
            post(training::trigger_loop),
        )
        .route("/v1/audit", get(audit_log))
        .route("/v1/whoami", get(whoami))
        .route("/v1/events", get(events::events))
        .route("/v1/trust", get(trust_metadata).put(publish_trust))
        .route("/v1/tokens", post(create_token).get(list_tokens))
        .route("/v1/tokens/{name}/revoke", post(revoke_tokens))
        .route("/v1/devices/{id}/reset", post(reset_device))
        .route(
            "/v1/devices/{id}/telemetry",
            post(device_telemetry::post)
                .options(device_telemetry::preflight)
                .layer(DefaultBodyLimit::max(device_telemetry::MAX_BODY_BYTES))
                .layer(axum::middleware::map_response(device_telemetry::cors)),
        )
        .route("/v1/devices", get(devices))
        .route("/v1/enrolments", post(create_enrolment))
        .route("/v1/enrol", post(enrol))
        .route(
            "/v1/deployments",
            post(deploy).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .route("/v1/deployments/{id}", get(show_deployment))
        .route(
            "/v1/rollouts",
            post(create_rollout)
                .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
                .get(list_rollouts),
        )
        .route("/v1/rollouts/{id}", get(show_rollout))
        .route("/v1/rollouts/{id}/{action}", post(rollout_action))
        .route("/v1/telemetry", get(telemetry))
        .route(
            "/v1/labels",
            post(post_labels).layer(DefaultBodyLimit::max(MAX_LABELS_BYTES)),
        )
        .with_state(c)
}

/// `POST /v1/models`: the token is checked before a byte of the body is read;
/// the body is then read once, within the size limit, hashed as it arrives,
/// and shared (not copied) with verification and the artifact store. A
/// refused upload's body is discarded in the background ([`discard`]), so a
/// client still sending it reads the refusal rather than a reset connection.
async fn register(
    State(c): Api,
    headers: HeaderMap,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let chunks = body.into_data_stream();
    let who = match allow(&c, &headers, Action::Register).await {
        Ok(who) => who,
        Err(e) => return Err(discard(&c, chunks, e)),
    };
    let (wasm, sha) = read_upload(&c, &headers, chunks, "a component").await?;
    let r = registry::register(&c, &who, wasm, sha).await?;
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(r)).into_response())
}

/// Reads an upload's body (at most `max_artifact_mb`, two uploads in memory
/// at a time), hashing it as it arrives: the bytes and their sha256.
pub(crate) async fn read_upload(
    c: &Coordinator,
    headers: &HeaderMap,
    mut chunks: axum::body::BodyDataStream,
    what: &str,
) -> ApiResult<(bytes::Bytes, String)> {
    use futures::StreamExt;
    use sha2::Digest;
    let limit = c.max_artifact_bytes;
    let too_big = || {
        ApiError::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{what} may be at most {limit} bytes (coordinator setting max_artifact_mb)"),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(discard(c, chunks, too_big()));
    }
    let _slot = c
        .uploads
        .acquire()
        .await
        .map_err(|e| CoordinatorError::Internal(format!("upload slots: {e}")))?;
    let mut body =
        bytes::BytesMut::with_capacity(announced.unwrap_or(0).min(limit as u64) as usize);
    let mut hasher = sha2::Sha256::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::client(StatusCode::BAD_REQUEST, format!("upload interrupted: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(discard(c, chunks, too_big()));
        }
        hasher.update(&chunk);
        body.extend_from_slice(&chunk);
    }
    Ok((body.freeze(), hex::encode(hasher.finalize())))
}

/// Bytes of a refused upload read and thrown away before the connection is
/// dropped: a client that sends its whole body before reading the answer
/// (curl, reqwest) then sees the 401/403/413 instead of a reset, as behind
/// nginx's lingering close. Bounded in bytes, time and number of connections.
const DISCARD_MAX_BYTES: usize = 512 << 20;
/// At LAN speed (≥ 50 MB/s) a refused 512 MiB upload is read within this.
const DISCARD_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(15);
/// Refused uploads drained at once; beyond this the connection is simply closed.
pub const MAX_DISCARDS: usize = 32;

/// Answers `refusal` now and drains the rest of the body in the background.
pub(crate) fn discard<E>(c: &Coordinator, mut chunks: axum::body::BodyDataStream, refusal: E) -> E {
    use futures::StreamExt;
    let Ok(slot) = c.discards.clone().try_acquire_owned() else {
        return refusal;
    };
    tokio::spawn(async move {
        let _slot = slot;
        let mut seen = 0usize;
        let _ = tokio::time::timeout(DISCARD_MAX_TIME, async {
            while let Some(Ok(chunk)) = chunks.next().await {
                seen += chunk.len();
                if seen > DISCARD_MAX_BYTES {
                    break;
                }
            }
        })
        .await;
    });
    refusal
}

async fn list_models(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(registry::list(&c).await?).into_response())
}

async fn show_model(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    let versions = registry::versions(&c, &name).await?;
    Ok(Json(ModelVersions { name, versions }).into_response())
}

async fn show_version(
    State(c): Api,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(registry::resolve(&c, &name, &version).await?).into_response())
}

/// `?version=V&since_ms=T&until_ms=T&selector=k=v,…` (default: the last day).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitorQuery {
    version: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    selector: Option<String>,
}

async fn monitor_report(
    c: &Coordinator,
    name: String,
    q: MonitorQuery,
) -> Result<wasmops_api::MonitorReport, CoordinatorError> {
    // Times far outside any telemetry are clamped, not overflowed.
    const LATEST_MS: i64 = 1 << 53;
    let clamp = |t: i64| t.clamp(0, LATEST_MS);
    let until_ms = clamp(q.until_ms.unwrap_or_else(|| crate::now_ms() + 1));
    let query = crate::monitor::report::Query {
        model: name,
        version: q.version,
        since_ms: clamp(q.since_ms.unwrap_or(until_ms - 24 * 3_600_000)),
        until_ms,
        selector: crate::monitor::report::parse_selector(q.selector.as_deref().unwrap_or(""))?,
    };
    crate::monitor::report::report(c, &query).await
}

async fn monitor(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<MonitorQuery>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(monitor_report(&c, name, q).await?).into_response())
}

/// The same report as one self-contained page (inline SVG, no script).
async fn monitor_page(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<MonitorQuery>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    let report = monitor_report(&c, name, q).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        crate::monitor::page::render(&report),
    )
        .into_response())
}

/// `?version=V&since_ms=T&limit=N`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplesQuery {
    version: String,
    since_ms: Option<i64>,
    limit: Option<usize>,
}

/// Raw rows may be personal data: people who register models (data
/// scientists, admins) may read them; viewers may not.
async fn samples(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(q): Query<SamplesQuery>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Register).await?;
    let s = crate::monitor::report::samples(
        &c,
        &name,
        &q.version,
        q.since_ms.unwrap_or(0).max(0),
        q.limit.unwrap_or(10_000),
    )
    .await?;
    Ok(Json(s).into_response())
}

async fn monitor_settings(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::monitor::settings::get(&c, &name).await?).into_response())
}

async fn set_monitor_settings(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
    Body(body): Body<wasmops_api::MonitorSettings>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Register).await?;
    Ok(Json(crate::monitor::settings::set(&c, &name, &body, &who.name).await?).into_response())
}

async fn set_alias(
    State(c): Api,
    headers: HeaderMap,
    Path((name, alias)): Path<(String, String)>,
    Body(body): Body<AliasRequest>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Alias).await?;
    Ok(Json(registry::set_alias(&c, &who, &name, &alias, &body.version).await?).into_response())
}

async fn delete_alias(
    State(c): Api,
    headers: HeaderMap,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Alias).await?;
    registry::delete_alias(&c, &who, &name, &alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_tag(
    State(c): Api,
    headers: HeaderMap,
    Path((name, version, key)): Path<(String, String, String)>,
    Body(body): Body<TagRequest>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Alias).await?;
    Ok(
        Json(registry::set_tag(&c, &who, &name, &version, &key, &body.value).await?)
            .into_response(),
    )
}

/// `bytes=START-` or `bytes=START-END` (inclusive), the forms resumable downloads use.
fn parse_range(header: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = header.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = if end.trim().is_empty() {
        size.checked_sub(1)?
    } else {
        end.trim().parse::<u64>().ok()?.min(size.checked_sub(1)?)
    };
    (start <= end).then_some(start..end + 1)
}

async fn artifact(
    State(c): Api,
    headers: HeaderMap,
    Path(sha256): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Download).await?;
    if !crate::artifacts::is_sha256(&sha256) {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "artifacts are addressed by 64 lowercase hex digits",
        ));
    }
    let size = match c.artifacts.size(&sha256).await {
        Ok(s) => s,
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ApiError::client(
                StatusCode::NOT_FOUND,
                format!("no artifact {sha256}"),
            ));
        }
        Err(e) => return Err(CoordinatorError::from(e).into()),
    };
    let requested = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, range) = match requested {
        None => (StatusCode::OK, 0..size),
        Some(h) => match parse_range(h, size) {
            Some(r) => (StatusCode::PARTIAL_CONTENT, r),
            None => {
                let mut resp = ApiError::client(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    format!("range `{h}` outside 0..{size}"),
                )
                .into_response();
                resp.headers_mut().insert(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                );
                return Ok(resp);
            }
        },
    };
    // Streamed from the store as the client reads: memory per download is a
    // chunk, not the artifact.
    let body = if range.is_empty() {
        axum::body::Body::empty()
    } else {
        let chunks = c
            .artifacts
            .stream_range(&sha256, range.clone())
            .await
            .map_err(CoordinatorError::from)?;
        axum::body::Body::from_stream(chunks)
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from_str(&(range.end - range.start).to_string()).expect("digits"),
    );
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/wasm"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{sha256}\"")).expect("hex"),
    );
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
                .expect("ascii"),
        );
    }
    Ok(resp)
}

async fn deploy(
    State(c): Api,
    headers: HeaderMap,
    Body(req): Body<DeployRequest>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Deploy).await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::deployments::deploy(&c, &who, req).await?),
    )
        .into_response())
}

/// Largest `POST /v1/labels` body: the most labels a request may hold,
/// with room (about 100 bytes each).
pub const MAX_LABELS_BYTES: usize = wasmops_api::MAX_LABELS * 400;

async fn post_labels(
    State(c): Api,
    headers: HeaderMap,
    Body(req): Body<wasmops_api::LabelsRequest>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Label).await?;
    let stored = crate::labels::store(&c, &req.labels).await?;
    Ok(Json(wasmops_api::LabelsStored { stored }).into_response())
}

async fn show_deployment(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::deployments::get(&c, &id).await?).into_response())
}

async fn create_rollout(
    State(c): Api,
    headers: HeaderMap,
    Body(req): Body<RolloutRequest>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Deploy).await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::rollouts::create(&c, &who, req).await?),
    )
        .into_response())
}

async fn list_rollouts(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::rollouts::list(&c).await?).into_response())
}

async fn show_rollout(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::rollouts::view(&c, &id).await?).into_response())
}

async fn rollout_action(
    State(c): Api,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Deploy).await?;
    let action = RolloutAction::parse(&action).ok_or_else(|| {
        ApiError::client(
            StatusCode::NOT_FOUND,
            format!("unknown rollout action `{action}` (pause, resume, approve, abort)"),
        )
    })?;
    Ok(Json(crate::rollouts::act(&c, &who, &id, action).await?).into_response())
}

#[derive(Deserialize)]
struct SinceQuery {
    since_ms: Option<i64>,
}

async fn telemetry(
    State(c): Api,
    headers: HeaderMap,
    Query(q): Query<SinceQuery>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::telemetry::summary(&c, q.since_ms.unwrap_or(0)).await?).into_response())
}

async fn create_enrolment(
    State(c): Api,
    headers: HeaderMap,
    Body(req): Body<EnrolmentRequest>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Enrol).await?;
    Ok((
        StatusCode::CREATED,
        Json(crate::enrolment::create(&c, &who, req).await?),
    )
        .into_response())
}

async fn enrol(
    State(c): Api,
    headers: HeaderMap,
    Body(body): Body<EnrolRequest>,
) -> ApiResult<Response> {
    let token = bearer(&headers)?;
    Ok((
        StatusCode::CREATED,
        Json(crate::enrolment::enrol(&c, token, &body.device, body.public_key.as_deref()).await?),
    )
        .into_response())
}

async fn devices(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    let mut list = crate::devices::list(&c).await?;
    crate::groups::annotate(&mut list, &crate::groups::all(&c).await?);
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
}

async fn audit_log(
    State(c): Api,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(audit::list(&c.db, q.limit.unwrap_or(100).clamp(1, 10_000)).await?).into_response())
}

async fn create_token(
    State(c): Api,
    headers: HeaderMap,
    Body(body): Body<TokenRequest>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::ManageTokens).await?;
    let role = Role::parse(&body.role).ok_or_else(|| {
        ApiError::client(
            StatusCode::BAD_REQUEST,
            format!(
                "unknown role `{}` ({})",
                body.role,
                wasmops_api::ROLES.join(", ")
            ),
        )
    })?;
    if body.name.is_empty() || body.name.len() > 64 {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            "token name must be 1-64 characters",
        ));
    }
    // A device credential made here (provisioning `device:ID` by hand, as
    // enrolment would) lasts until revoked unless a validity is given: a
    // silent expiry would cut a gateway off its control plane.
    let valid_for_s = match (body.valid_for_s, role) {
        (Some(s), _) => Some(s),
        (None, Role::Device) => None,
        (None, _) => Some(wasmops_api::DEFAULT_TOKEN_VALIDITY_S),
    };
    if let Some(s) = valid_for_s
        && (s == 0 || s > wasmops_api::MAX_TOKEN_VALIDITY_S)
    {
        return Err(ApiError::client(
            StatusCode::BAD_REQUEST,
            format!(
                "valid_for_s {s}: a token is valid for 1 s to {} days",
                wasmops_api::MAX_TOKEN_VALIDITY_S / 86_400
            ),
        ));
    }
    let expires_at_ms = valid_for_s.map(|s| crate::now_ms() + s as i64 * 1000);
    let mut tx = c.db.pool.begin().await?;
    let token = crate::auth::create(&mut tx, &body.name, role, expires_at_ms).await?;
    audit::record(
        &mut tx,
        &who.name,
        "token.create",
        &body.name,
        serde_json::json!({"role": role.as_str(), "expires_at_ms": expires_at_ms}),
    )
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            name: body.name,
            role: role.as_str().into(),
            token,
            expires_at_ms,
        }),
    )
        .into_response())
}

async fn list_tokens(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::ManageTokens).await?;
    Ok(Json(crate::auth::list(&c.db).await?).into_response())
}

async fn revoke_tokens(
    State(c): Api,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::ManageTokens).await?;
    let revoked = crate::enrolment::revoke(&c, &who, &name, ("token.revoke", &name)).await?;
    if revoked == 0 {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            format!("no live token named `{name}`"),
        ));
    }
    Ok(Json(wasmops_api::TokensRevoked { name, revoked }).into_response())
}

async fn reset_device(
    State(c): Api,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Enrol).await?;
    Ok(Json(crate::enrolment::reset(&c, &who, &id).await?).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(e: CoordinatorError) -> (StatusCode, ErrorBody) {
        let resp = ApiError::from(e).into_response();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    /// Client errors say what was wrong; server faults say only "internal error"
    /// and an incident id, and keep their text (paths, SQL) out of the answer.
    #[tokio::test]
    async fn client_errors_are_4xx_and_faults_5xx_without_internal_text() {
        let (status, b) = body(CoordinatorError::BadRequest(
            "waves must be increasing".into(),
        ))
        .await;
        assert_eq!(
            (status, b.error.as_str(), b.incident),
            (StatusCode::BAD_REQUEST, "waves must be increasing", None)
        );
        assert_eq!(
            body(CoordinatorError::NotFound("no rollout `x`".into()))
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            body(CoordinatorError::Conflict("is aborted".into()))
                .await
                .0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            body(CoordinatorError::Forbidden("no".into())).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            body(CoordinatorError::Untrusted(
                wasmops_trust::TrustError::NoClaims
            ))
            .await
            .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        for fault in [
            CoordinatorError::Internal("cannot open /var/lib/wasmops/secret.db".into()),
            CoordinatorError::Db(sqlx::Error::Protocol("SELECT hash FROM tokens".into())),
            CoordinatorError::Bus("cannot publish to wasmops/v1/devices/gw/desired".into()),
        ] {
            let (status, b) = body(fault).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
            assert_eq!(b.error, "internal error");
            assert!(
                b.incident.as_deref().is_some_and(|i| i.len() == 16),
                "an incident id to find the log line by: {b:?}"
            );
        }
        let (status, b) = body(CoordinatorError::Unavailable(
            "the MQTT connection is not up yet; retry".into(),
        ))
        .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(b.error.contains("retry") && b.incident.is_some());
    }

    /// Hostile monitoring questions (unknown models and versions, extreme
    /// times, malformed selectors, unknown parameters, forbidden methods)
    /// are 4xx naming the problem; the coordinator keeps serving.
    #[tokio::test]
    async fn monitoring_routes_refuse_bad_questions_and_keep_serving() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::open(dir.path()).await;
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(c)).await });
        let http = reqwest::Client::new();
        let ask = async |method: reqwest::Method, path: &str, body: Option<&str>| {
            let mut r = http
                .request(method, format!("http://{addr}{path}"))
                .bearer_auth(token.trim());
            if let Some(b) = body {
                r = r
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        };
        use reqwest::Method;
        for (path, status, says) in [
            (
                "/v1/models/nope/monitor",
                404,
                "no telemetry for model `nope`",
            ),
            (
                "/v1/models/nope/monitor?since_ms=-9223372036854775808&until_ms=9223372036854775807",
                404,
                "no telemetry",
            ),
            (
                "/v1/models/m/monitor?since_ms=5&until_ms=5",
                400,
                "range is empty",
            ),
            (
                "/v1/models/m/monitor?selector=site",
                400,
                "`site` is not key=value",
            ),
            ("/v1/models/m/monitor?colour=red", 400, "colour"),
            (
                "/v1/models/m/monitor?version=1.0.0",
                404,
                "no version `1.0.0`",
            ),
            (
                "/v1/models/m/samples?version=1.0.0",
                404,
                "no version `1.0.0`",
            ),
            ("/v1/models/m/monitor.html", 404, "no telemetry"),
        ] {
            let (got, text) = ask(Method::GET, path, None).await;
            assert_eq!(got, status, "{path}: {text}");
            assert!(text.contains(says), "{path}: {text}");
        }
        for (body, status, says) in [
            (r#"{"method":"ks"}"#, 400, "needs raw samples"),
            (r#"{"threshold":-1}"#, 400, "positive"),
            (r#"{"columns":{"a":{"methd":"psi"}}}"#, 400, "methd"),
            (r#"{"method":"psi"}"#, 404, "no model `nope`"),
        ] {
            let (got, text) = ask(Method::PUT, "/v1/models/nope/monitoring", Some(body)).await;
            assert_eq!(got, status, "{body}: {text}");
            assert!(text.contains(says), "{body}: {text}");
        }
        assert_eq!(ask(Method::GET, "/healthz", None).await.0, 200);
    }

    /// An oversized JSON body (a deployment's probe past its limit) is a 413
    /// naming the limit, not a parse error. (axum's default limit, 2 MB,
    /// stands in for `MAX_REQUEST_BYTES` here.)
    #[tokio::test]
    async fn an_oversized_json_body_is_413_naming_the_limit() {
        use axum::extract::FromRequest;
        let big = format!("{{\"x\": \"{}\"}}", "a".repeat(3 << 20));
        let req = axum::http::Request::post("/v1/deployments")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(big))
            .unwrap();
        let Err(e) = Body::<serde_json::Value>::from_request(req, &()).await else {
            panic!("a 3 MB body passed the 2 MB limit");
        };
        let resp = e.into_response();
        assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let b: ErrorBody = serde_json::from_slice(&bytes).unwrap();
        assert!(b.error.contains("at most"), "{b:?}");
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-", 10), Some(0..10));
        assert_eq!(parse_range("bytes=4-6", 10), Some(4..7));
        assert_eq!(parse_range("bytes=4-100", 10), Some(4..10));
        assert_eq!(parse_range("bytes=9-", 10), Some(9..10));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=7-3", 10), None);
        assert_eq!(parse_range("items=0-1", 10), None);
        assert_eq!(parse_range("bytes=0-", 0), None);
    }
}
