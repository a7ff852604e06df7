//! The serverless trigger: `wasmops serve` puts models behind an HTTP
//! predict endpoint, for serverless nodes and anything else that calls a
//! model over HTTP.
//!
//! Data path of `POST /v1/models/{name}/predict`:
//! body (at most [`Settings::max_body_bytes`], else 413) → admission (at most
//! [`Settings::max_waiting`] requests wait, else 503 at once) → the model's
//! queue → a slot among [`Settings::concurrency`], shared by the models
//! ([`slots`]: fewest-held model first, one slot for a model whose last
//! call ran into its deadline; waiting at most [`Settings::queue_timeout`],
//! else 503 with `Retry-After`), unless another
//! request's run takes the body along first → on a blocking thread, the
//! queued bodies parsed as the `run` JSON and typed by the model's metadata
//! ([`wasmops_runtime::tensors_json`]), those that fit together stacked into
//! one batch of at most [`Settings::batch_rows`] rows ([`batch`]) →
//! [`Backend::predict`]: for a component, a fresh instance made from its
//! pre-linked code (the host's pooling allocator maps its memory
//! copy-on-write from the snapshot, so no call sees another's state), run
//! under the host's deadline and memory cap → each request's own rows as
//! `{"outputs": […]}`. [`Metrics`] counts each answer for `/metrics`.
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
mod batch;
pub mod files;
mod metrics;
mod slots;

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
use wasmops_runtime::HostError;
use wasmops_runtime::bindings::{ModelInfo, PredictError, Tensor};
use wasmops_runtime::tensors_json;

pub use backend::{Backend, Prediction, WasmModel};
pub use metrics::Metrics;

/// Rows one call may run when requests wait together. A tabular model's call
/// costs about the same for 1 row or 32 (the instance, tract's per-run
/// set-up): iris on one core, 64 clients, went from 4,433 requests/s (each
/// alone) to 51,440, 19 requests a call on average (session 34). A CNN runs
/// a batch sample by sample, so it gains little either way.
pub const DEFAULT_BATCH_ROWS: usize = 32;

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
    /// Most rows that requests waiting together run as one call
    /// ([`batch`]; 1: each request alone).
    pub batch_rows: usize,
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
            batch_rows: DEFAULT_BATCH_ROWS,
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

/// A served model: what answers it, its waiting requests, and how many rows
/// one call may run.
struct Served {
    name: String,
    /// Its number among the served models, for [`slots::Slots`].
    index: usize,
    backend: Arc<dyn Backend>,
    queue: batch::Queue<Reply>,
    /// 1 when [`batch::probe`] found it cannot be batched.
    batch_rows: usize,
}

/// A request's outputs, or the answer that says why there are none.
type Reply = Result<Vec<Tensor>, Box<Response>>;

/// A taken request and its parsed inputs.
type Parsed = (batch::Job<Reply>, Vec<Tensor>);

struct Shared {
    models: BTreeMap<String, Arc<Served>>,
    /// The canonical directory of [`Settings::web`].
    web: Option<Arc<std::path::PathBuf>>,
    settings: Settings,
    slots: slots::Slots,
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
        let mut named: BTreeMap<String, Arc<Served>> = BTreeMap::new();
        for (index, (name, model)) in models.into_iter().enumerate() {
            if name.is_empty() {
                return Err(ServeError::NoName);
            }
            if !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                return Err(ServeError::BadName(name));
            }
            if named.contains_key(&name) {
                return Err(ServeError::DuplicateName(name));
            }
            let batch_rows = match settings.batch_rows {
                0 | 1 => 1,
                rows => match batch::probe(model.as_ref()) {
                    Ok(()) => {
                        tracing::info!(model = %name, "requests waiting together run as one batch of up to {rows} rows");
                        rows
                    }
                    Err(why) => {
                        tracing::info!(model = %name, "each request runs alone: {why}");
                        1
                    }
                },
            };
            let served = Served {
                name: name.clone(),
                index,
                backend: model,
                queue: batch::Queue::new(),
                batch_rows,
            };
            named.insert(name, Arc::new(served));
        }
        let metrics = Metrics::new(named.keys());
        let slots = slots::Slots::new(settings.concurrency, named.len());
        Ok(Server {
            shared: Arc::new(Shared {
                models: named,
                web,
                slots,
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
            serde_json::json!({"name": name, "version": m.backend.info().version, "runtime": m.backend.runtime()})
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
    let info = m.backend.info();
    let mut doc = m.backend.describe();
    doc["runtime"] = m.backend.runtime().into();
    doc["batch_rows"] = m.batch_rows.into();
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
    let mut text = s.metrics.render();
    metrics::render_probation(
        &mut text,
        s.models
            .iter()
            .map(|(name, m)| (name.as_str(), s.slots.on_probation(m.index))),
    );
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

/// Counts requests as waiting, then in flight, for the gauges.
struct Gauge<'a>(&'a std::sync::atomic::AtomicI64, i64);
impl<'a> Gauge<'a> {
    fn up(g: &'a std::sync::atomic::AtomicI64, n: i64) -> Gauge<'a> {
        g.fetch_add(n, Ordering::Relaxed);
        Gauge(g, n)
    }
}
impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(self.1, Ordering::Relaxed);
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
    let response = answer(&s, &model, body).await;
    s.metrics
        .record(&name, response.status().as_u16(), started.elapsed());
    response
}

async fn answer(
    s: &Arc<Shared>,
    model: &Arc<Served>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return too_large(s.settings.max_body_bytes);
        }
        Err(e) => return failure(e.status(), e.body_text()),
    };
    // Admission: a bounded number wait; the rest are told at once.
    let waiting = Gauge::up(&s.metrics.waiting, 1);
    if s.metrics.waiting.load(Ordering::Relaxed) as usize > s.settings.max_waiting {
        return busy(s);
    }
    let (reply, mut answered) = tokio::sync::oneshot::channel();
    let id = model.queue.push(body, reply);
    // Either a slot comes free, and this request runs what is queued (its
    // own body among it), or another request's run takes this body along.
    let slot = tokio::select! {
        biased;
        done = &mut answered => return respond(s, done),
        slot = tokio::time::timeout(s.settings.queue_timeout, s.slots.acquire(model.index)) => slot,
    };
    drop(waiting);
    match slot {
        Ok(permit) if model.queue.holds(id) => {
            let (shared, model) = (s.clone(), model.clone());
            tokio::task::spawn_blocking(move || drain(&shared, &model, id, permit));
        }
        Ok(_taken_along) => {}
        _ if model.queue.remove(id) => return busy(s),
        _ => {}
    }
    respond(s, answered.await)
}

/// A request's answer, once its body has run.
fn respond(s: &Shared, done: Result<Reply, tokio::sync::oneshot::error::RecvError>) -> Response {
    match done {
        Ok(Ok(outputs)) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            tensors_json::outputs_json(&outputs),
        )
            .into_response(),
        Ok(Err(response)) => *response,
        // The run that took this body panicked (its message is in the log).
        Err(_) => incident(s, "a predict run ended without answering", "internal error"),
    }
}

/// A 500 whose cause stays in the log: the log line and the answer share
/// an incident number, so a caller's report finds it.
fn incident(s: &Shared, logged: impl std::fmt::Display, said: &str) -> Response {
    let n = s.incidents.fetch_add(1, Ordering::Relaxed) + 1;
    tracing::error!(incident = n, "{logged}");
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{said} (incident {n} in the server log)"),
    )
}

/// Runs a model's queued requests on a slot, in batches, until request `own`
/// has been taken (by this run or another): every body in the queue has a
/// request waiting for a slot, so none is left behind, and a run does not
/// hold its slot past its own request.
fn drain(s: &Shared, model: &Served, own: u64, _slot: slots::Permit) {
    while model.queue.holds(own) {
        let mut parsed: Vec<Parsed> = vec![];
        for job in model.queue.take(model.batch_rows) {
            match parse(&job.body, model.backend.info()) {
                Ok(inputs) => parsed.push((job, inputs)),
                Err(refusal) => _ = job.reply.send(Err(refusal)),
            }
        }
        // Requests that can share a call, in arrival order, at most
        // `batch_rows` rows a call.
        let mut groups: Vec<(batch::Layout, usize, Vec<Parsed>)> = vec![];
        for (job, inputs) in parsed {
            let Some((layout, rows)) = batch::layout(&inputs).filter(|_| model.batch_rows > 1)
            else {
                run(s, model, vec![(job, inputs)]);
                continue;
            };
            match groups
                .iter_mut()
                .find(|(l, n, _)| *l == layout && n + rows <= model.batch_rows)
            {
                Some((_, n, members)) => {
                    *n += rows;
                    members.push((job, inputs));
                }
                None => groups.push((layout, rows, vec![(job, inputs)])),
            }
        }
        for (_, _, members) in groups {
            run(s, model, members);
        }
    }
}

fn parse(body: &[u8], info: &ModelInfo) -> Result<Vec<Tensor>, Box<Response>> {
    // Boxed: a response is large, and this is the rare path.
    let text = std::str::from_utf8(body).map_err(|e| {
        Box::new(failure(
            StatusCode::BAD_REQUEST,
            format!("the request body is not UTF-8 JSON: {e}"),
        ))
    })?;
    tensors_json::parse_inputs(text, info)
        .map_err(|e| Box::new(failure(StatusCode::BAD_REQUEST, format!("{e:#}"))))
}

/// Runs requests that share a layout as one call on one instance, and
/// answers each with its own rows. When that call fails, each runs alone,
/// so the failure is answered to the request that caused it only.
fn run(s: &Shared, model: &Served, members: Vec<Parsed>) {
    let _in_flight = Gauge::up(&s.metrics.in_flight, members.len() as i64);
    if members.len() > 1 {
        let inputs: Vec<&[Tensor]> = members.iter().map(|(_, i)| i.as_slice()).collect();
        let rows: Vec<usize> = members
            .iter()
            .map(|(_, i)| i[0].shape[0] as usize)
            .collect();
        match call(s, model, &batch::concat(&inputs)) {
            Ok(p) => {
                if let Some(parts) = batch::split(p.outputs, &rows) {
                    s.metrics
                        .instance(&model.name, p.instantiate, members.len());
                    for ((job, _), outputs) in members.into_iter().zip(parts) {
                        let _ = job.reply.send(Ok(outputs));
                    }
                    return;
                }
                tracing::warn!(model = %model.name, "a batch's outputs lack its rows; running its requests one by one");
            }
            Err(e) => {
                tracing::debug!(model = %model.name, "a batch of {} failed ({e}); running its requests one by one", members.len())
            }
        }
    }
    for (job, inputs) in members {
        let answer = call(s, model, &inputs);
        let answer = match answer {
            Ok(p) => {
                s.metrics.instance(&model.name, p.instantiate, 1);
                Ok(p.outputs)
            }
            Err(e) => Err(Box::new(model_failure(s, &e))),
        };
        let _ = job.reply.send(answer);
    }
}

/// One call of the model; a call that runs into its deadline puts the model
/// on probation ([`slots`]), one that ends in time takes it off.
fn call(s: &Shared, model: &Served, inputs: &[Tensor]) -> Result<Prediction, HostError> {
    let answer = model.backend.predict(inputs);
    let overran = matches!(answer, Err(HostError::Deadline(_)));
    if s.slots.ended(model.index, overran) {
        if overran {
            tracing::warn!(model = %model.name, "a call ran into its deadline: the model runs on one slot until a call ends in time");
        } else {
            tracing::info!(model = %model.name, "a call ended in time: the model may use every slot again");
        }
    }
    answer
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
            let what = match e {
                HostError::Trap(_) => "the model trapped",
                HostError::Predict(_) => "the model failed on this input",
                _ => "no instance of the model could be made",
            };
            incident(s, format_args!("predict failed: {e}"), what)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model with no inputs: served, never batched, never called.
    fn model() -> Arc<dyn Backend> {
        Arc::new(Doubling(
            wasmops_runtime::bindings::ModelInfo {
                name: "m".into(),
                version: "1".into(),
                inputs: vec![],
                outputs: vec![],
                preprocessing: vec![],
            },
            AtomicU64::new(0),
        ))
    }

    /// Doubles each row of `x`; refuses a negative value as a model refuses
    /// an invalid one. Counts its calls.
    struct Doubling(wasmops_runtime::bindings::ModelInfo, AtomicU64);
    impl Backend for Doubling {
        fn info(&self) -> &wasmops_runtime::bindings::ModelInfo {
            &self.0
        }
        fn runtime(&self) -> &'static str {
            "test"
        }
        fn describe(&self) -> serde_json::Value {
            serde_json::json!({})
        }
        fn predict(&self, inputs: &[Tensor]) -> Result<Prediction, HostError> {
            self.1.fetch_add(1, Ordering::Relaxed);
            let wasmops_runtime::bindings::TensorData::Float32(x) = &inputs[0].data else {
                panic!("float input");
            };
            if x.iter().any(|v| *v < 0.0) {
                return Err(HostError::Predict(PredictError::InvalidValue(
                    "negative".into(),
                )));
            }
            let y = x.iter().map(|v| v * 2.0).collect();
            Ok(Prediction {
                outputs: vec![Tensor {
                    name: "y".into(),
                    shape: inputs[0].shape.clone(),
                    data: wasmops_runtime::bindings::TensorData::Float32(y),
                }],
                instantiate: Some(Duration::from_micros(1)),
            })
        }
    }

    #[test]
    fn queued_requests_run_in_batches_and_a_bad_one_fails_alone() {
        use wasmops_runtime::bindings::{Dim, ElementType, TensorSpec};
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            element_type: ElementType::Float32,
            shape: vec![Dim::Symbol("N".into()), Dim::Fixed(1)],
        };
        let backend = Arc::new(Doubling(
            wasmops_runtime::bindings::ModelInfo {
                name: "m".into(),
                version: "1".into(),
                inputs: vec![spec("x")],
                outputs: vec![spec("y")],
                preprocessing: vec![],
            },
            AtomicU64::new(0),
        ));
        let settings = Settings {
            batch_rows: 4,
            ..Settings::for_this_machine().with_concurrency(1)
        };
        let server = Server::new(vec![("m".into(), backend.clone())], settings).unwrap();
        let probed = backend.1.swap(0, Ordering::Relaxed);
        assert_eq!(probed, 4, "three rows together, then each alone");
        let model = server.shared.models["m"].clone();
        assert_eq!(model.batch_rows, 4);

        let row = |v: &str| format!(r#"{{"inputs":[{{"name":"x","shape":[1,1],"data":[{v}]}}]}}"#);
        let bodies = [
            row("1"),
            row("2"),
            row("-1"),
            row("3"),
            "not json".into(),
            row("4"),
            row("5"),
        ];
        let mut waiting = vec![];
        let mut last = 0;
        for body in bodies {
            let (tx, rx) = tokio::sync::oneshot::channel();
            last = model.queue.push(Bytes::from(body), tx);
            waiting.push(rx);
        }
        let slot = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(server.shared.slots.acquire(model.index));
        drain(&server.shared, &model, last, slot);
        let answers: Vec<Result<f32, u16>> = waiting
            .into_iter()
            .map(|mut rx| match rx.try_recv().expect("answered") {
                Ok(outputs) => match &outputs[0].data {
                    wasmops_runtime::bindings::TensorData::Float32(y) => Ok(y[0]),
                    other => panic!("{other:?}"),
                },
                Err(response) => Err(response.status().as_u16()),
            })
            .collect();
        assert_eq!(
            answers,
            [
                Ok(2.0),
                Ok(4.0),
                Err(422),
                Ok(6.0),
                Err(400),
                Ok(8.0),
                Ok(10.0)
            ]
        );
        // The first four rows failed together, then ran alone; the last two
        // ran together.
        assert_eq!(backend.1.load(Ordering::Relaxed), 1 + 4 + 1);
        let metrics = server.metrics().render();
        for line in [
            "wasmops_serve_batch_requests_sum{model=\"m\"} 5",
            "wasmops_serve_batch_requests_count{model=\"m\"} 4",
            "wasmops_serve_instantiate_seconds_count{model=\"m\"} 4",
        ] {
            assert!(metrics.contains(line), "no {line} in {metrics}");
        }
        assert!(!model.queue.holds(last));
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
