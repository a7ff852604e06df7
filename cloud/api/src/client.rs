//! A blocking client for the coordinator's API, typed by this crate's bodies.

use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::*;

/// Why a call did not get the answer it wanted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot reach the coordinator at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The coordinator answered with an error status.
    #[error("{status}: {message}")]
    Refused { status: u16, message: String },
    #[error("the coordinator's answer to {path} is not what this client understands: {source}")]
    Decode {
        path: String,
        source: reqwest::Error,
    },
    #[error("cannot set up an HTTP client: {0}")]
    Setup(reqwest::Error),
    #[error("TLS settings: {0}")]
    Tls(#[from] wasmops_tls::TlsError),
    /// The event stream broke off or carried something this client cannot read.
    #[error("the event stream from {url}: {message}")]
    Stream { url: String, message: String },
    /// The reader fell behind and the coordinator dropped events for it; the
    /// stream goes on after this.
    #[error("{0} events were missed (the reader fell behind)")]
    Missed(u64),
}

impl ApiError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// One URL path segment, percent-encoded (names and aliases may hold anything).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The coordinator at `base` (e.g. `https://127.0.0.1:8080`) as one caller.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
    tls: wasmops_tls::ClientTls,
}

impl Client {
    /// A client trusting the system's certificate authorities.
    pub fn new(base: &str, token: &str) -> Result<Client, ApiError> {
        Client::with_tls(base, token, wasmops_tls::ClientTls::new(None)?)
    }

    /// A client trusting what `tls` does (e.g. the coordinator's private CA).
    /// Calls time out after five minutes (a large registration on a slow link).
    pub fn with_tls(
        base: &str,
        token: &str,
        tls: wasmops_tls::ClientTls,
    ) -> Result<Client, ApiError> {
        let http = tls
            .http_blocking()
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(ApiError::Setup)?;
        Ok(Client {
            base: base.trim_end_matches('/').to_string(),
            token: token.trim().to_string(),
            http,
            tls,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    /// Sends, and turns an error status into the API's error message.
    fn send(&self, req: RequestBuilder) -> Result<Response, ApiError> {
        let resp = req.send().map_err(|source| ApiError::Unreachable {
            url: self.base.clone(),
            source,
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let message = match resp.json::<ErrorBody>() {
            Ok(ErrorBody {
                error,
                incident: Some(id),
            }) => format!("{error} (incident {id} in the coordinator's log)"),
            Ok(ErrorBody {
                error,
                incident: None,
            }) => error,
            Err(_) => "(no message)".into(),
        };
        Err(ApiError::Refused {
            status: status.as_u16(),
            message: format!(
                "{} {message}",
                status.canonical_reason().unwrap_or_default()
            )
            .trim()
            .to_string(),
        })
    }

    fn json<T: DeserializeOwned>(&self, path: &str, req: RequestBuilder) -> Result<T, ApiError> {
        self.send(req)?.json().map_err(|source| ApiError::Decode {
            path: path.to_string(),
            source,
        })
    }

    /// `GET path` as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.json(path, self.request(Method::GET, path))
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ApiError> {
        self.json(path, self.request(Method::POST, path).json(body))
    }

    fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, ApiError> {
        self.json(path, self.request(Method::PUT, path).json(body))
    }

    /// Uploads a signed component; the coordinator verifies it and records its claims.
    pub fn register(&self, component: Vec<u8>) -> Result<Registered, ApiError> {
        self.json(
            "/v1/models",
            self.request(Method::POST, "/v1/models")
                .header("content-type", "application/wasm")
                .body(component),
        )
    }

    pub fn models(&self) -> Result<Vec<ModelSummary>, ApiError> {
        self.get("/v1/models")
    }

    pub fn model(&self, name: &str) -> Result<ModelVersions, ApiError> {
        self.get(&format!("/v1/models/{}", seg(name)))
    }

    /// A version, by number or alias.
    pub fn version(&self, name: &str, version: &str) -> Result<Version, ApiError> {
        self.get(&format!(
            "/v1/models/{}/versions/{}",
            seg(name),
            seg(version)
        ))
    }

    pub fn set_alias(&self, name: &str, alias: &str, version: &str) -> Result<Version, ApiError> {
        self.put(
            &format!("/v1/models/{}/aliases/{}", seg(name), seg(alias)),
            &AliasRequest {
                version: version.into(),
            },
        )
    }

    pub fn delete_alias(&self, name: &str, alias: &str) -> Result<(), ApiError> {
        self.send(self.request(
            Method::DELETE,
            &format!("/v1/models/{}/aliases/{}", seg(name), seg(alias)),
        ))
        .map(drop)
    }

    pub fn set_tag(
        &self,
        name: &str,
        version: &str,
        key: &str,
        value: &str,
    ) -> Result<Version, ApiError> {
        self.put(
            &format!(
                "/v1/models/{}/versions/{}/tags/{}",
                seg(name),
                seg(version),
                seg(key)
            ),
            &TagRequest {
                value: value.into(),
            },
        )
    }

    pub fn datasets(&self) -> Result<Vec<Dataset>, ApiError> {
        self.get("/v1/datasets")
    }

    /// The newest runs (of `model`), oldest first: [`crate::DEFAULT_RUNS_PAGE`]
    /// unless `limit` says otherwise; `before_ms` pages back (runs queued
    /// before then).
    pub fn runs(
        &self,
        model: Option<&str>,
        limit: Option<usize>,
        before_ms: Option<i64>,
    ) -> Result<Vec<Run>, ApiError> {
        let mut query = vec![];
        if let Some(m) = model {
            query.push(format!("model={}", seg(m)));
        }
        if let Some(n) = limit {
            query.push(format!("limit={n}"));
        }
        if let Some(t) = before_ms {
            query.push(format!("before_ms={t}"));
        }
        let mut path = "/v1/runs".to_string();
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        self.get(&path)
    }

    /// Stores `bytes` as the next version of dataset `name` (or answers the
    /// version that already holds these bytes).
    pub fn push_dataset(
        &self,
        name: &str,
        push: &DatasetPush,
        bytes: Vec<u8>,
    ) -> Result<DatasetVersion, ApiError> {
        let path = format!("/v1/datasets/{}", seg(name));
        let mut query = vec![("label", push.label.clone())];
        if let Some(f) = push.format {
            query.push(("format", f.as_str().into()));
        }
        if let Some(f) = &push.file {
            query.push(("file", f.clone()));
        }
        self.json(
            &path,
            self.request(Method::POST, &path)
                .query(&query)
                .header("content-type", "application/octet-stream")
                .body(bytes),
        )
    }

    pub fn dataset_from_production(
        &self,
        name: &str,
        req: &FromProduction,
    ) -> Result<DatasetVersion, ApiError> {
        self.post(&format!("/v1/datasets/{}/from-production", seg(name)), req)
    }

    pub fn dataset(&self, name: &str) -> Result<DatasetVersions, ApiError> {
        self.get(&format!("/v1/datasets/{}", seg(name)))
    }

    /// A version by number, or the newest for `latest`.
    pub fn dataset_version(&self, name: &str, version: &str) -> Result<DatasetVersion, ApiError> {
        self.get(&format!(
            "/v1/datasets/{}/versions/{}",
            seg(name),
            seg(version)
        ))
    }

    /// An artifact's bytes (a component), checked against its address.
    pub fn artifact(&self, sha256: &str) -> Result<Vec<u8>, ApiError> {
        let path = format!("/v1/artifacts/{}", seg(sha256));
        let resp = self.send(self.request(Method::GET, &path))?;
        resp.bytes()
            .map(|b| b.to_vec())
            .map_err(|source| ApiError::Decode { path, source })
    }

    /// A dataset version's file.
    pub fn dataset_data(&self, name: &str, version: u32) -> Result<Vec<u8>, ApiError> {
        let path = format!("/v1/datasets/{}/versions/{version}/data", seg(name));
        let resp = self.send(self.request(Method::GET, &path))?;
        resp.bytes()
            .map(|b| b.to_vec())
            .map_err(|source| ApiError::Decode { path, source })
    }

    pub fn loop_settings(&self, model: &str) -> Result<LoopView, ApiError> {
        self.get(&format!("/v1/models/{}/loop", seg(model)))
    }

    pub fn set_loop(&self, model: &str, settings: &LoopSettings) -> Result<LoopView, ApiError> {
        self.put(&format!("/v1/models/{}/loop", seg(model)), settings)
    }

    /// A run of `model`'s loop now, as its loop file says.
    pub fn trigger_loop(&self, model: &str) -> Result<Run, ApiError> {
        self.post(
            &format!("/v1/models/{}/loop/trigger", seg(model)),
            &serde_json::json!({}),
        )
    }

    /// Lets a passed candidate waiting for approval go on to its rollout.
    pub fn approve_run(&self, id: &str) -> Result<Promotion, ApiError> {
        self.post(
            &format!("/v1/runs/{}/approve", seg(id)),
            &serde_json::json!({}),
        )
    }

    pub fn create_run(&self, req: &RunRequest) -> Result<Run, ApiError> {
        self.post("/v1/runs", req)
    }

    pub fn run(&self, id: &str) -> Result<Run, ApiError> {
        self.get(&format!("/v1/runs/{}", seg(id)))
    }

    pub fn run_logs(&self, id: &str) -> Result<String, ApiError> {
        let path = format!("/v1/runs/{}/logs", seg(id));
        let resp = self.send(self.request(Method::GET, &path))?;
        resp.text()
            .map_err(|source| ApiError::Decode { path, source })
    }

    pub fn cancel_run(&self, id: &str) -> Result<Run, ApiError> {
        self.post(
            &format!("/v1/runs/{}/cancel", seg(id)),
            &serde_json::json!({}),
        )
    }

    /// The oldest queued run, now this worker's (`None`: nothing to do).
    pub fn claim_run(&self, worker: &str) -> Result<Option<Run>, ApiError> {
        let path = "/v1/runs/claim";
        let resp = self.send(self.request(Method::POST, path).json(&ClaimRequest {
            worker: worker.into(),
        }))?;
        if resp.status().as_u16() == 204 {
            return Ok(None);
        }
        resp.json().map(Some).map_err(|source| ApiError::Decode {
            path: path.into(),
            source,
        })
    }

    /// Renews the lease on run `id` and appends `lines` to its log.
    pub fn run_progress(&self, id: &str, progress: &RunProgress) -> Result<(), ApiError> {
        let path = format!("/v1/runs/{}/heartbeat", seg(id));
        self.send(self.request(Method::POST, &path).json(progress))
            .map(drop)
    }

    pub fn finish_run(&self, id: &str, result: &RunResult) -> Result<Run, ApiError> {
        self.post(&format!("/v1/runs/{}/finish", seg(id)), result)
    }

    /// Newest first.
    /// The trust metadata in force (`wasmops_trust::TrustMetadata` as JSON).
    pub fn trust_metadata(&self) -> Result<serde_json::Value, ApiError> {
        self.get("/v1/trust")
    }

    /// Publishes trust metadata (`wasmops_trust::TrustMetadata` as JSON).
    pub fn publish_trust(&self, metadata: &serde_json::Value) -> Result<TrustPublished, ApiError> {
        self.json(
            "/v1/trust",
            self.request(Method::PUT, "/v1/trust").json(metadata),
        )
    }

    pub fn audit(&self, limit: u32) -> Result<Vec<AuditEntry>, ApiError> {
        self.get(&format!("/v1/audit?limit={limit}"))
    }

    pub fn create_token(&self, req: &TokenRequest) -> Result<TokenCreated, ApiError> {
        self.post("/v1/tokens", req)
    }

    /// Every token (names, roles, times; never the secrets).
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, ApiError> {
        self.get("/v1/tokens")
    }

    /// Revokes every live token named `name`.
    pub fn revoke_tokens(&self, name: &str) -> Result<TokensRevoked, ApiError> {
        self.post(&format!("/v1/tokens/{}/revoke", seg(name)), &())
    }

    /// Revokes a device's credential: it must enrol again, with a token an
    /// operator gives it.
    pub fn reset_device(&self, device: &str) -> Result<TokensRevoked, ApiError> {
        self.post(&format!("/v1/devices/{}/reset", seg(device)), &())
    }

    pub fn create_enrolment(&self, req: &EnrolmentRequest) -> Result<Enrolment, ApiError> {
        self.post("/v1/enrolments", req)
    }

    /// Trades this client's token (an enrolment token) for `device`'s own credential.
    pub fn enrol(&self, device: &str) -> Result<Credential, ApiError> {
        self.post(
            "/v1/enrol",
            &EnrolRequest {
                device: device.into(),
                public_key: None,
            },
        )
    }

    pub fn devices(&self) -> Result<Vec<Device>, ApiError> {
        self.get("/v1/devices")
    }

    pub fn deploy(&self, req: &DeployRequest) -> Result<Deployment, ApiError> {
        self.post("/v1/deployments", req)
    }

    pub fn deployment(&self, id: &str) -> Result<Deployment, ApiError> {
        self.get(&format!("/v1/deployments/{}", seg(id)))
    }

    pub fn create_rollout(&self, req: &RolloutRequest) -> Result<RolloutView, ApiError> {
        self.post("/v1/rollouts", req)
    }

    pub fn rollouts(&self) -> Result<Vec<RolloutSummary>, ApiError> {
        self.get("/v1/rollouts")
    }

    pub fn rollout(&self, id: &str) -> Result<RolloutView, ApiError> {
        self.get(&format!("/v1/rollouts/{}", seg(id)))
    }

    pub fn rollout_action(&self, id: &str, action: RolloutAction) -> Result<RolloutView, ApiError> {
        let path = format!("/v1/rollouts/{}/{}", seg(id), action.as_str());
        self.json(&path, self.request(Method::POST, &path))
    }

    /// Per model version telemetry whose windows ended at or after `since_ms`.
    pub fn telemetry(&self, since_ms: i64) -> Result<serde_json::Value, ApiError> {
        self.get(&format!("/v1/telemetry?since_ms={since_ms}"))
    }

    /// Posts outcomes for predictions: all are stored, or none.
    pub fn post_labels(&self, req: &LabelsRequest) -> Result<LabelsStored, ApiError> {
        self.post("/v1/labels", req)
    }

    /// A model version's monitoring (`version`: the latest with telemetry
    /// when `None`); `selector` as `k=v,…`.
    pub fn monitor(
        &self,
        model: &str,
        version: Option<&str>,
        since_ms: i64,
        selector: Option<&str>,
    ) -> Result<MonitorReport, ApiError> {
        let mut path = format!("/v1/models/{}/monitor?since_ms={since_ms}", seg(model));
        if let Some(v) = version {
            path.push_str(&format!("&version={}", seg(v)));
        }
        if let Some(s) = selector {
            path.push_str(&format!("&selector={}", seg(s)));
        }
        self.get(&path)
    }

    /// Raw input rows devices sampled (newest first, at most `limit`).
    pub fn samples(
        &self,
        model: &str,
        version: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Samples, ApiError> {
        self.get(&format!(
            "/v1/models/{}/samples?version={}&since_ms={since_ms}&limit={limit}",
            seg(model),
            seg(version)
        ))
    }

    pub fn monitor_settings(&self, model: &str) -> Result<MonitorSettings, ApiError> {
        self.get(&format!("/v1/models/{}/monitoring", seg(model)))
    }

    pub fn set_monitor_settings(
        &self,
        model: &str,
        settings: &MonitorSettings,
    ) -> Result<MonitorSettings, ApiError> {
        self.put(&format!("/v1/models/{}/monitoring", seg(model)), settings)
    }
}

/// The fleet's events as they happen ([`Client::events`]); each item is an
/// event, [`ApiError::Missed`] after a gap (the stream goes on), or
/// [`ApiError::Stream`] when the stream ended (the last item).
pub struct Events {
    url: String,
    reader: std::io::BufReader<Response>,
    parser: crate::SseParser,
    ended: bool,
}

/// The longest SSE line read: an event is far smaller; a longer line is a
/// broken or hostile peer.
const MAX_EVENT_LINE: u64 = 1 << 20;

impl Iterator for Events {
    type Item = Result<Event, ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::{BufRead, Read};
        while !self.ended {
            let mut line = Vec::new();
            let read = (&mut self.reader)
                .take(MAX_EVENT_LINE)
                .read_until(b'\n', &mut line);
            let broken = |message: String| ApiError::Stream {
                url: self.url.clone(),
                message,
            };
            match read {
                Ok(0) => {
                    self.ended = true;
                    return Some(Err(broken("the coordinator closed it".into())));
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(broken(e.to_string())));
                }
                Ok(_) if !line.ends_with(b"\n") => {
                    self.ended = true;
                    return Some(Err(broken(format!("a line over {MAX_EVENT_LINE} bytes"))));
                }
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            let Some(message) = self.parser.line(text.trim_end_matches(['\n', '\r'])) else {
                continue;
            };
            if message.event == crate::MISSED {
                let missed = serde_json::from_str::<crate::Missed>(&message.data)
                    .map(|m| m.missed)
                    .unwrap_or(0);
                return Some(Err(ApiError::Missed(missed)));
            }
            return Some(
                serde_json::from_str(&message.data)
                    .map_err(|e| broken(format!("an event that is not an event ({e})"))),
            );
        }
        None
    }
}

impl Client {
    /// Streams the fleet's events of `kinds` (all when empty) from now on.
    /// The first item comes when the first event happens; the stream is
    /// subscribed once this returns.
    pub fn events(&self, kinds: &[&str]) -> Result<Events, ApiError> {
        let http = self
            .tls
            .http_blocking()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .build()
            .map_err(ApiError::Setup)?;
        let mut path = "/v1/events".to_string();
        if !kinds.is_empty() {
            path.push_str(&format!("?kind={}", seg(&kinds.join(","))));
        }
        let req = http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        let resp = self.send(req)?;
        Ok(Events {
            url: format!("{}{path}", self.base),
            reader: std::io::BufReader::new(resp),
            parser: Default::default(),
            ended: false,
        })
    }
}

/// How following a deployment or rollout ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed<T> {
    /// It reached an end state (every device settled; a rollout succeeded or aborted).
    Ended(T),
    /// The time ran out first; its last state.
    TimedOut(T),
}

impl Client {
    /// Polls the deployment every 200 ms, showing each state to `observe`,
    /// until every target is `active` or `failed`, or `timeout` passes.
    pub fn follow_deployment(
        &self,
        id: &str,
        timeout: Duration,
        mut observe: impl FnMut(&Deployment),
    ) -> Result<Followed<Deployment>, ApiError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let d = self.deployment(id)?;
            observe(&d);
            if d.settled() {
                return Ok(Followed::Ended(d));
            }
            if std::time::Instant::now() > deadline {
                return Ok(Followed::TimedOut(d));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls the rollout every 300 ms, showing each state to `observe`, until
    /// it succeeds or aborts, or `timeout` passes.
    pub fn follow_rollout(
        &self,
        id: &str,
        timeout: Duration,
        mut observe: impl FnMut(&RolloutView),
    ) -> Result<Followed<RolloutView>, ApiError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let r = self.rollout(id)?;
            observe(&r);
            if r.state.is_terminal() {
                return Ok(Followed::Ended(r));
            }
            if std::time::Instant::now() > deadline {
                return Ok(Followed::TimedOut(r));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::seg("churn v2/x"), "churn%20v2%2Fx");
        assert_eq!(super::seg("a-b_c.1~"), "a-b_c.1~");
    }
}
