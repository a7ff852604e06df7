//! The HTTP API (JSON). Every route but `/healthz` needs `Authorization: Bearer TOKEN`.
//!
//! | method | path | role |
//! |---|---|---|
//! | POST | /v1/models (body: signed component) | data-scientist |
//! | GET | /v1/models, /v1/models/{name}, /v1/models/{name}/versions/{version-or-alias} | viewer |
//! | PUT, DELETE | /v1/models/{name}/aliases/{alias} (`{"version": "1.2.0"}`) | data-scientist, operator |
//! | PUT | /v1/models/{name}/versions/{version}/tags/{key} (`{"value": "…"}`) | data-scientist, operator |
//! | GET | /v1/artifacts/{sha256} (honours `Range: bytes=…`) | device, viewer |
//! | GET | /v1/datasets, /v1/runs, /v1/audit?limit=N | viewer |
//! | POST | /v1/tokens (`{"name": "ci", "role": "operator"}`) | admin |
//! | POST | /v1/enrolments (`{"devices": "gw-7" or "factory-*", "valid_for_s": 86400}`) → one enrolment token | operator |
//! | POST | /v1/enrol (`{"device": "gw-7"}`, bearer = enrolment token) → the device's own credential | enrolment token |
//! | GET | /v1/devices (presence from MQTT: state, labels, last seen, active model) | viewer |
//! | POST | /v1/deployments (`{"model","version","devices":[…]` or `"selector":{…}`, `"probe"`}) | operator |
//! | GET | /v1/deployments/{id} (each device's install state) | viewer |
//! | POST | /v1/rollouts ([`RolloutRequest`](crate::rollouts::RolloutRequest): model, version, selector, strategy, waves, gates, probe) | operator |
//! | GET | /v1/rollouts, /v1/rollouts/{id} (state, waves, candidate telemetry) | viewer |
//! | POST | /v1/rollouts/{id}/pause, …/resume, …/approve, …/abort | operator |
//! | GET | /v1/telemetry?since_ms=T (per model version: counts, failure rate, latency quantiles, features, outputs) | viewer |

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

use crate::auth::{Action, Principal, Role};
use crate::registry::{self, RegistryError};
use crate::{Coordinator, audit};

pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let status = match &e {
            RegistryError::Untrusted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RegistryError::Forbidden(_) => StatusCode::FORBIDDEN,
            RegistryError::Conflict(_) => StatusCode::CONFLICT,
            RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
            RegistryError::BadRequest(_) => StatusCode::BAD_REQUEST,
            RegistryError::Db(_) | RegistryError::Store(_) => {
                tracing::error!("{e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError(status, e.to_string())
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("{e}");
    ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

type Api = State<Arc<Coordinator>>;
type ApiResult<T> = Result<T, ApiError>;

/// The caller, if their token allows `action`.
fn bearer(headers: &HeaderMap) -> ApiResult<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "missing `Authorization: Bearer TOKEN`".into()))
}

async fn allow(c: &Coordinator, headers: &HeaderMap, action: Action) -> ApiResult<Principal> {
    let token = bearer(headers)?;
    let who = crate::auth::authenticate(&c.db, token).await.map_err(internal)?.ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "unknown or revoked token".into()))?;
    if !who.role.allows(action) {
        return Err(ApiError(StatusCode::FORBIDDEN, format!("role {} may not {action:?}", who.role.as_str())));
    }
    Ok(who)
}

pub fn router(c: Arc<Coordinator>) -> Router {
    let limit = c.max_artifact_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/models", post(register).get(list_models).layer(DefaultBodyLimit::max(limit)))
        .route("/v1/models/{name}", get(show_model))
        .route("/v1/models/{name}/versions/{version}", get(show_version))
        .route("/v1/models/{name}/aliases/{alias}", put(set_alias).delete(delete_alias))
        .route("/v1/models/{name}/versions/{version}/tags/{key}", put(set_tag))
        .route("/v1/artifacts/{sha256}", get(artifact))
        .route("/v1/datasets", get(datasets))
        .route("/v1/runs", get(runs))
        .route("/v1/audit", get(audit_log))
        .route("/v1/tokens", post(create_token))
        .route("/v1/devices", get(devices))
        .route("/v1/enrolments", post(create_enrolment))
        .route("/v1/enrol", post(enrol))
        .route("/v1/deployments", post(deploy))
        .route("/v1/deployments/{id}", get(show_deployment))
        .route("/v1/rollouts", post(create_rollout).get(list_rollouts))
        .route("/v1/rollouts/{id}", get(show_rollout))
        .route("/v1/rollouts/{id}/{action}", post(rollout_action))
        .route("/v1/telemetry", get(telemetry))
        .with_state(c)
}

async fn register(State(c): Api, headers: HeaderMap, body: Bytes) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Register).await?;
    let r = registry::register(&c, &who, body.to_vec()).await?;
    let status = if r.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(r)).into_response())
}

async fn list_models(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(registry::list(&c).await?).into_response())
}

async fn show_model(State(c): Api, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(serde_json::json!({"name": name, "versions": registry::versions(&c, &name).await?})).into_response())
}

async fn show_version(State(c): Api, headers: HeaderMap, Path((name, version)): Path<(String, String)>) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(registry::resolve(&c, &name, &version).await?).into_response())
}

#[derive(Deserialize)]
struct AliasBody {
    version: String,
}

async fn set_alias(State(c): Api, headers: HeaderMap, Path((name, alias)): Path<(String, String)>, Json(body): Json<AliasBody>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Alias).await?;
    Ok(Json(registry::set_alias(&c, &who, &name, &alias, &body.version).await?).into_response())
}

async fn delete_alias(State(c): Api, headers: HeaderMap, Path((name, alias)): Path<(String, String)>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Alias).await?;
    registry::delete_alias(&c, &who, &name, &alias).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
struct TagBody {
    value: String,
}

async fn set_tag(State(c): Api, headers: HeaderMap, Path((name, version, key)): Path<(String, String, String)>, Json(body): Json<TagBody>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Alias).await?;
    Ok(Json(registry::set_tag(&c, &who, &name, &version, &key, &body.value).await?).into_response())
}

/// `bytes=START-` or `bytes=START-END` (inclusive), the forms resumable downloads use.
fn parse_range(header: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = header.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = if end.trim().is_empty() { size.checked_sub(1)? } else { end.trim().parse::<u64>().ok()?.min(size.checked_sub(1)?) };
    (start <= end).then_some(start..end + 1)
}

async fn artifact(State(c): Api, headers: HeaderMap, Path(sha256): Path<String>) -> ApiResult<Response> {
    allow(&c, &headers, Action::Download).await?;
    if !crate::artifacts::is_sha256(&sha256) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "artifacts are addressed by 64 lowercase hex digits".into()));
    }
    let size = match c.artifacts.size(&sha256).await {
        Ok(s) => s,
        Err(object_store::Error::NotFound { .. }) => return Err(ApiError(StatusCode::NOT_FOUND, format!("no artifact {sha256}"))),
        Err(e) => return Err(internal(e)),
    };
    let requested = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, range) = match requested {
        None => (StatusCode::OK, 0..size),
        Some(h) => match parse_range(h, size) {
            Some(r) => (StatusCode::PARTIAL_CONTENT, r),
            None => {
                let mut resp = ApiError(StatusCode::RANGE_NOT_SATISFIABLE, format!("range `{h}` outside 0..{size}")).into_response();
                resp.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"));
                return Ok(resp);
            }
        },
    };
    let bytes = if range.is_empty() { Bytes::new() } else { c.artifacts.get_range(&sha256, range.clone()).await.map_err(internal)? };
    let mut resp = (status, bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/wasm"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, HeaderValue::from_str(&format!("\"{sha256}\"")).expect("hex"));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(header::CONTENT_RANGE, HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1)).expect("ascii"));
    }
    Ok(resp)
}

async fn datasets(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(registry::datasets(&c).await?).into_response())
}

async fn runs(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(registry::runs(&c).await?).into_response())
}

async fn deploy(State(c): Api, headers: HeaderMap, Json(req): Json<crate::deployments::DeployRequest>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Deploy).await?;
    Ok((StatusCode::CREATED, Json(crate::deployments::deploy(&c, &who, req).await?)).into_response())
}

async fn show_deployment(State(c): Api, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::deployments::get(&c, &id).await?).into_response())
}

async fn create_rollout(State(c): Api, headers: HeaderMap, Json(req): Json<crate::rollouts::RolloutRequest>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Deploy).await?;
    Ok((StatusCode::CREATED, Json(crate::rollouts::create(&c, &who, req).await?)).into_response())
}

async fn list_rollouts(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::rollouts::list(&c).await?).into_response())
}

async fn show_rollout(State(c): Api, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::rollouts::view(&c, &id).await?).into_response())
}

async fn rollout_action(State(c): Api, headers: HeaderMap, Path((id, action)): Path<(String, String)>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Deploy).await?;
    let action: crate::rollouts::Action =
        serde_json::from_value(serde_json::Value::String(action.clone())).map_err(|_| ApiError(StatusCode::NOT_FOUND, format!("unknown rollout action `{action}` (pause, resume, approve, abort)")))?;
    Ok(Json(crate::rollouts::act(&c, &who, &id, action).await?).into_response())
}

#[derive(Deserialize)]
struct SinceQuery {
    since_ms: Option<i64>,
}

async fn telemetry(State(c): Api, headers: HeaderMap, Query(q): Query<SinceQuery>) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::telemetry::summary(&c, q.since_ms.unwrap_or(0)).await.map_err(internal)?).into_response())
}

async fn create_enrolment(State(c): Api, headers: HeaderMap, Json(req): Json<crate::enrolment::EnrolmentRequest>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::Enrol).await?;
    Ok((StatusCode::CREATED, Json(crate::enrolment::create(&c, &who, req).await?)).into_response())
}

#[derive(Deserialize)]
struct EnrolBody {
    device: String,
}

async fn enrol(State(c): Api, headers: HeaderMap, Json(body): Json<EnrolBody>) -> ApiResult<Response> {
    let token = bearer(&headers)?;
    Ok((StatusCode::CREATED, Json(crate::enrolment::enrol(&c, token, &body.device).await?)).into_response())
}

async fn devices(State(c): Api, headers: HeaderMap) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(crate::mqtt::devices(&c).await.map_err(internal)?).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
}

async fn audit_log(State(c): Api, headers: HeaderMap, Query(q): Query<AuditQuery>) -> ApiResult<Response> {
    allow(&c, &headers, Action::Read).await?;
    Ok(Json(audit::list(&c.db, q.limit.unwrap_or(100).clamp(1, 10_000)).await.map_err(internal)?).into_response())
}

#[derive(Deserialize)]
struct TokenBody {
    name: String,
    role: String,
}

async fn create_token(State(c): Api, headers: HeaderMap, Json(body): Json<TokenBody>) -> ApiResult<Response> {
    let who = allow(&c, &headers, Action::ManageTokens).await?;
    let role = Role::parse(&body.role).ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, format!("unknown role `{}` (device, viewer, data-scientist, operator, admin)", body.role)))?;
    if body.name.is_empty() || body.name.len() > 64 {
        return Err(ApiError(StatusCode::BAD_REQUEST, "token name must be 1-64 characters".into()));
    }
    let mut tx = c.db.pool.begin().await.map_err(internal)?;
    let token = crate::auth::create(&mut tx, &body.name, role).await.map_err(internal)?;
    audit::record(&mut tx, &who.name, "token.create", &body.name, serde_json::json!({"role": role.as_str()})).await.map_err(internal)?;
    tx.commit().await.map_err(internal)?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({"name": body.name, "role": role.as_str(), "token": token}))).into_response())
}

#[cfg(test)]
mod tests {
    use super::parse_range;

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
