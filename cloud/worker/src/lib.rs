//! A training worker: the closed loop's compute, apart from the control plane.
//!
//! Data path of one run (`wasmops worker`, or inside `wasmops coordinator`
//! for the zero-setup default):
//! 1. claim the oldest queued run (`POST /v1/runs/claim`), then hold its
//!    lease by heartbeats that carry the log lines ([`report`]);
//! 2. download its dataset versions and check their sha256 ([`job`]);
//! 3. train (`wasmops-trainer`: built in, or the run's command under its
//!    time limit) → ONNX;
//! 4. build the candidate component with lineage claims (dataset, run, code,
//!    metrics) and the training profile, next version and sequence;
//! 5. validate it ([`gate`]): on the holdout rows, the component in the same
//!    wasmtime host devices use against the champion component, plus latency,
//!    size, input schema and agreement with its own ONNX run natively;
//! 6. sign it with the worker's release key (and its delegation, scoped to
//!    the model by whoever granted it) and register it ([`release`]);
//! 7. report the run's end: metrics, candidate, validation, or why it failed.
//!
//! A run that fails at any step says which, and nothing is registered.

pub mod gate;
mod job;
pub mod release;
mod report;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmops_api::{ApiError, Client, Run, RunResult, RunStatus};
use wasmops_sign::SecretKey;

/// Why a worker cannot work (a run's own failures are reported in the run).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0}")]
    Api(#[from] ApiError),
    #[error("worker setup: {0}")]
    Setup(String),
}

pub struct WorkerConfig {
    pub coordinator: String,
    /// What the worker trusts to reach the coordinator (its private CA).
    pub tls: wasmops_tls::ClientTls,
    /// A token with the worker role.
    pub token: String,
    /// How runs and logs name this worker.
    pub name: String,
    /// The release key candidates are signed with; `None`: runs stop after
    /// the gate and register nothing.
    pub release_key: Option<PathBuf>,
    /// The delegation that lets that key sign (embedded in each candidate).
    pub delegation: Option<PathBuf>,
    /// Where command trainers run (their scripts' directory).
    pub workdir: PathBuf,
    /// Whether runs may name a command trainer: it runs as this worker's
    /// user, so whoever may queue runs may then run programs here. Off
    /// unless asked for.
    pub allow_commands: bool,
    /// The compile cache for building and loading components.
    pub cache_dir: Option<PathBuf>,
    /// How long to wait between claims when nothing is queued.
    pub poll: Duration,
}

pub struct Worker {
    config: WorkerConfig,
    client: Client,
    key: Option<SecretKey>,
    delegation: Option<Vec<u8>>,
}

impl Worker {
    pub fn new(config: WorkerConfig) -> Result<Worker, WorkerError> {
        let name_ok = !config.name.is_empty()
            && config.name.len() <= 64
            && config
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !name_ok {
            return Err(WorkerError::Setup(format!(
                "worker name `{}`: 1-64 of [A-Za-z0-9._-]",
                config.name
            )));
        }
        let client = Client::with_tls(&config.coordinator, &config.token, config.tls.clone())?;
        let key = config
            .release_key
            .as_deref()
            .map(wasmops_trust::ops::read_secret)
            .transpose()
            .map_err(|e| WorkerError::Setup(format!("release key: {e}")))?;
        let delegation = match &config.delegation {
            None => None,
            Some(path) => {
                let doc = std::fs::read(path)
                    .map_err(|e| WorkerError::Setup(format!("{}: {e}", path.display())))?;
                let parsed = wasmops_trust::Signed::<wasmops_trust::Delegation>::parse(&doc)
                    .map_err(|e| WorkerError::Setup(format!("{}: {e}", path.display())))?;
                let delegated = parsed
                    .signed
                    .public_key()
                    .map_err(|e| WorkerError::Setup(e.to_string()))?
                    .key_id();
                match &key {
                    Some(k) if k.public().key_id() == delegated => {}
                    _ => {
                        return Err(WorkerError::Setup(format!(
                            "{} delegates to key {delegated}, not to the release key",
                            path.display()
                        )));
                    }
                }
                Some(doc)
            }
        };
        Ok(Worker {
            config,
            client,
            key,
            delegation,
        })
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Claims one queued run and carries it out; the run as it ended, or
    /// `None` when nothing was queued.
    pub fn run_next(&self) -> Result<Option<Run>, WorkerError> {
        let Some(run) = self.client.claim_run(&self.config.name)? else {
            return Ok(None);
        };
        tracing::info!(
            "worker {}: run {} of {:?}",
            self.config.name,
            run.id,
            run.model
        );
        let reporter = report::Reporter::start(self.client.clone(), &run.id, &self.config.name);
        let outcome = job::execute(self, &run, &reporter);
        let result = match outcome {
            Ok(done) => RunResult {
                worker: self.config.name.clone(),
                status: RunStatus::Succeeded,
                metrics: done.metrics,
                error: None,
                candidate: done.candidate,
                code: done.code,
                validation: done.validation,
            },
            Err(failed) => {
                reporter.line(format!("failed: {}", failed.error));
                RunResult {
                    worker: self.config.name.clone(),
                    status: RunStatus::Failed,
                    metrics: failed.metrics,
                    error: Some(failed.error),
                    candidate: None,
                    code: failed.code,
                    validation: failed.validation,
                }
            }
        };
        let cancelled = reporter.stop();
        if cancelled {
            tracing::info!(
                "run {} was taken from this worker; its result is dropped",
                run.id
            );
            return Ok(Some(self.client.run(&run.id)?));
        }
        Ok(Some(self.client.finish_run(&run.id, &result)?))
    }

    /// Works until `stop` is set: a run at a time, polling when idle; an
    /// unreachable coordinator is retried.
    pub fn serve(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            match self.run_next() {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => tracing::warn!("worker {}: {e}", self.config.name),
            }
            let mut waited = Duration::ZERO;
            while waited < self.config.poll && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                waited += Duration::from_millis(100);
            }
        }
    }
}
