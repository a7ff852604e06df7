//! The serverless trigger: `wasmops serve` puts models behind an HTTP
//! predict endpoint, for serverless nodes and anything else that calls a
//! model over HTTP.
//!
//! Data path of `POST /v1/models/{name}/predict`:
//! body (at most [`Settings::max_body_bytes`], else 413) → admission (at most
//! [`Settings::max_waiting`] requests wait, else 503 at once) → a slot among
//! [`Settings::concurrency`] (waiting at most [`Settings::queue_timeout`],
//! else 503 with `Retry-After`) → a blocking thread: the body parsed as the
//! `run` JSON and typed by the model's metadata
//! ([`wasmops_runtime::tensors_json`]) → [`Backend::predict`]: for a
//! component, a fresh instance made from its pre-linked code (the host's
//! pooling allocator maps its memory copy-on-write from the snapshot, so no
//! request sees another's state), run under the host's deadline and memory
//! cap → `{"outputs": […]}`. [`Metrics`] counts each answer for `/metrics`.
//!
//! Errors name the problem: 400 for a body that is not the `run` JSON, 404
//! for a model nobody serves, 422 for tensors the model refuses, 503 when
//! busy, 504 past the deadline, 500 when the model fails (its text goes to
//! the log, not to the caller).
//!
//! Routes: `GET /v1/models`, `GET /v1/models/{name}`,
//! `POST /v1/models/{name}/predict`, `GET /v1/health`, `GET /metrics`; with
//! [`Settings::web`], every other `GET` is a file of that directory (a
//! browser bundle from `wasmops web`, [`files`]).

mod backend;
pub mod files;
mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use wasmops_runtime::HostError;
use wasmops_runtime::bindings::PredictError;
use wasmops_runtime::tensors_json;

pub use backend::{Backend, Prediction, WasmModel};
pub use metrics::Metrics;

/// Limits of one server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Largest request body. The default, 16 MiB, holds a batch of 8
    /// 224×224×3 images as JSON numbers (~1.5 MB each) with room to spare.
    pub max_body_bytes: usize,
    /// Requests running a model at once. Inference is CPU-bound: one per
    /// core keeps every core busy, more only time-slice the same cores and
    /// stretch every request's latency.
    pub concurrency: usize,
    /// Requests waiting for a slot; past this the server answers 503 at
    /// once instead of holding more bodies in memory.
    pub max_waiting: usize,
    /// Longest a request waits for a slot before it gets 503.
    pub queue_timeout: Duration,
    /// A directory served as static files beside the API (a browser bundle).
    pub web: Option<std::path::PathBuf>,
}

impl Settings {
    /// One slot per core, 64 waiting per slot, a second's wait.
    pub fn for_this_machine() -> Settings {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Settings {
            max_body_bytes: 16 << 20,
            concurrency: cores,
            max_waiting: cores * 64,
            queue_timeout: Duration::from_secs(1),
            web: None,
        }
    }

    /// `n` slots (at least one), 64 waiting per slot.
    pub fn with_concurrency(self, n: usize) -> Settings {
        let concurrency = n.max(1);
        Settings {
            concurrency,
            max_waiting: concurrency * 64,
            ..self
        }
    }
}

/// Why a server cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("two models are named `{0}`: each needs its own name")]
    DuplicateName(String),
    #[error("a model has no name; give it one")]
    NoName,
    #[error("nothing to serve: give at least one model or a directory of files")]
    NoModels,
    #[error("cannot serve files from {path}: {reason}")]
    Web { path: String, reason: String },
    #[error("model name `{0}` cannot be part of a URL path (use letters, digits, `-`, `_`, `.`)")]
    BadName(String),
}

struct Shared {
    models: BTreeMap<String, Arc<dyn Backend>>,
    /// The canonical directory of [`Settings::web`].
    web: Option<Arc<std::path::PathBuf>>,
    settings: Settings,
    slots: Arc<Semaphore>,
    metrics: Metrics,
    /// Numbers the 500s, so a caller's report finds its log line.
    incidents: AtomicU64,
}

/// Named models and the limits they are served under.
pub struct Server {
    shared: Arc<Shared>,
}

impl Server {
    pub fn new(
        models: Vec<(String, Arc<dyn Backend>)>,
        settings: Settings,
    ) -> Result<Server, ServeError> {
        if models.is_empty() && settings.web.is_none() {
            return Err(ServeError::NoModels);
        }
        let web = match &settings.web {
            Some(dir) if dir.is_dir() => Some(Arc::new(dir.canonicalize().map_err(|e| {
                ServeError::Web {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                }
            })?)),
            Some(dir) => {
                return Err(ServeError::Web {
                    path: dir.display().to_string(),
                    reason: "not a directory".into(),
                });
            }
            None => None,
        };
        let mut named = BTreeMap::new();
        for (name, model) in models {
            if name.is_empty() {
                return Err(ServeError::NoName);
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(ServeError::BadName(name));
            }
            if named.insert(name.clone(), model).is_some() {
                return Err(ServeError::DuplicateName(name));
            }
        }
        let metrics = Metrics::new(named.keys());
        let concurrency = settings.concurrency.max(1);
        Ok(Server {
            shared: Arc::new(Shared {
                models: named,
                web,
                slots: Arc::new(Semaphore::new(concurrency)),
                settings,
                metrics,
                incidents: AtomicU64::new(0),
            }),
        })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn router(&self) -> Router {
        let limit = self.shared.settings.max_body_bytes;
        let api = Router::new()
            .route("/v1/models", get(list))
            .route("/v1/models/{name}", get(describe))
            .route("/v1/models/{name}/predict", post(predict))
            .route("/v1/health", get(health))
            .route("/metrics", get(metrics));
        let api =
            match &self.shared.web {
                Some(dir) => api
                    .fallback_service(Router::new().fallback(files::serve).with_state(dir.clone())),
                None => api
                    .fallback(|| async { failure(StatusCode::NOT_FOUND, "no such route".into()) }),
            };
        api.layer(DefaultBodyLimit::max(limit))
            .layer(axum::middleware::from_fn_with_state(
                limit,
                announced_length,
            ))
            .with_state(self.shared.clone())
    }
}

fn too_large(limit: usize) -> Response {
    failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the request body is larger than this server's limit of {limit} bytes"),
    )
}

/// A body announced larger than the limit is refused before a byte of it is
/// read (a body without a length is cut off at the limit instead).
async fn announced_length(
    State(limit): State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(n) if n > limit as u64 => too_large(limit),
        _ => next.run(request).await,
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

fn failure(status: StatusCode, message: String) -> Response {
    json(status, serde_json::json!({"error": message}))
}

async fn list(State(s): State<Arc<Shared>>) -> Response {
    let models: Vec<_> = s
        .models
        .iter()
        .map(|(name, m)| {
            serde_json::json!({"name": name, "version": m.info().version, "runtime": m.runtime()})
        })
        .collect();
    json(StatusCode::OK, serde_json::json!({"models": models}))
}

fn unknown(s: &Shared, name: &str) -> Response {
    s.metrics.unknown_model();
    let names: Vec<&String> = s.models.keys().collect();
    // The name is echoed only when it is short and printable.
    let shown = if name.len() <= 64 && name.chars().all(|c| !c.is_control()) {
        format!("`{name}`")
    } else {
        "that name".into()
    };
    failure(
        StatusCode::NOT_FOUND,
        format!("no model {shown} is served here (served: {names:?})"),
    )
}

async fn describe(State(s): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let Some(m) = s.models.get(&name) else {
        return unknown(&s, &name);
    };
    let info = m.info();
    let mut doc = m.describe();
    doc["runtime"] = m.runtime().into();
    doc["name"] = name.into();
    doc["model"] = info.name.clone().into();
    doc["version"] = info.version.clone().into();
    doc["inputs"] = tensors_json::specs_json(&info.inputs);
    doc["outputs"] = tensors_json::specs_json(&info.outputs);
    doc["preprocessing"] = serde_json::json!(info.preprocessing);
    json(StatusCode::OK, doc)
}

async fn health(State(s): State<Arc<Shared>>) -> Response {
    json(
        StatusCode::OK,
        serde_json::json!({"status": "ok", "models": s.models.len()}),
    )
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// Counts a request as waiting, then in flight, for the gauges.
struct Gauge<'a>(&'a std::sync::atomic::AtomicI64);
impl<'a> Gauge<'a> {
    fn up(g: &'a std::sync::atomic::AtomicI64) -> Gauge<'a> {
        g.fetch_add(1, Ordering::Relaxed);
        Gauge(g)
    }
}
impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn predict(
    State(s): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let Some(model) = s.models.get(&name).cloned() else {
        return unknown(&s, &name);
    };
    let (response, instantiate) = answer(&s, model, body).await;
    s.metrics.record(
        &name,
        response.status().as_u16(),
        started.elapsed(),
        instantiate,
    );
    response
}

async fn answer(
    s: &Arc<Shared>,
    model: Arc<dyn Backend>,
    body: Result<Bytes, BytesRejection>,
) -> (Response, Option<Duration>) {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return (too_large(s.settings.max_body_bytes), None);
        }
        Err(e) => return (failure(e.status(), e.body_text()), None),
    };
    // Admission: a bounded number wait; the rest are told at once.
    let waiting = Gauge::up(&s.metrics.waiting);
    if s.metrics.waiting.load(Ordering::Relaxed) as usize > s.settings.max_waiting {
        return (busy(s), None);
    }
    let permit =
        match tokio::time::timeout(s.settings.queue_timeout, s.slots.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => p,
            _ => return (busy(s), None),
        };
    drop(waiting);
    let shared = s.clone();
    let work = tokio::task::spawn_blocking(move || {
        let _in_flight = Gauge::up(&shared.metrics.in_flight);
        let _permit = permit;
        // Boxed: a response is large, and this is the rare path.
        let text = std::str::from_utf8(&body).map_err(|e| {
            Box::new(failure(
                StatusCode::BAD_REQUEST,
                format!("the request body is not UTF-8 JSON: {e}"),
            ))
        })?;
        let inputs = tensors_json::parse_inputs(text, model.info())
            .map_err(|e| Box::new(failure(StatusCode::BAD_REQUEST, format!("{e:#}"))))?;
        model
            .predict(&inputs)
            .map_err(|e| Box::new(model_failure(&shared, &e)))
    });
    match work.await {
        Ok(Ok(p)) => {
            let body = tensors_json::outputs_json(&p.outputs);
            let response = (
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                body,
            )
                .into_response();
            (response, p.instantiate)
        }
        Ok(Err(response)) => (*response, None),
        Err(e) => {
            let n = s.incidents.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(incident = n, "predict task failed: {e}");
            (
                failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal error (incident {n} in the server log)"),
                ),
                None,
            )
        }
    }
}

fn busy(s: &Shared) -> Response {
    let mut r = failure(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "busy: all {} slots are taken and no slot came free within {} ms; retry",
            s.settings.concurrency,
            s.settings.queue_timeout.as_millis()
        ),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// What the caller learns of a model's failure. Input problems are the
/// caller's to fix and named in full; a model's own failure is logged with
/// an incident number, and the caller gets the number.
fn model_failure(s: &Shared, e: &HostError) -> Response {
    use PredictError::*;
    match e {
        HostError::Predict(
            UnknownInput(_) | MissingInput(_) | BadShape(_) | BadType(_) | InvalidValue(_),
        ) => failure(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        HostError::Deadline(_) => failure(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
        HostError::MemoryLimit(_) => failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        _ => {
            let n = s.incidents.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(incident = n, "predict failed: {e}");
            let what = match e {
                HostError::Trap(_) => "the model trapped",
                HostError::Predict(_) => "the model failed on this input",
                _ => "no instance of the model could be made",
            };
            failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("{what} (incident {n} in the server log)"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Named(wasmops_runtime::bindings::ModelInfo);
    impl Backend for Named {
        fn info(&self) -> &wasmops_runtime::bindings::ModelInfo {
            &self.0
        }
        fn runtime(&self) -> &'static str {
            "test"
        }
        fn describe(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn predict(
            &self,
            _: &[wasmops_runtime::bindings::Tensor],
        ) -> Result<Prediction, HostError> {
            unreachable!("not called: only construction is tested here")
        }
    }

    fn model() -> Arc<dyn Backend> {
        Arc::new(Named(wasmops_runtime::bindings::ModelInfo {
            name: "m".into(),
            version: "1".into(),
            inputs: vec![],
            outputs: vec![],
            preprocessing: vec![],
        }))
    }

    #[test]
    fn names_must_be_unique_present_and_fit_a_path() {
        let s = Settings::for_this_machine;
        let err = |models| Server::new(models, s()).err().unwrap().to_string();
        assert!(err(vec![("a".into(), model()), ("a".into(), model())]).contains("two models"));
        assert!(err(vec![(String::new(), model())]).contains("no name"));
        assert!(err(vec![("a/b".into(), model())]).contains("cannot be part of a URL"));
        assert!(err(vec![]).contains("nothing to serve"));
        assert!(Server::new(vec![("iris-1.0".into(), model())], s()).is_ok());
    }
}
