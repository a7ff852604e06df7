//! `wasmops serve`: signed model components behind an HTTP predict endpoint
//! (`wasmops_serve`), for serverless nodes; `--native` serves ONNX files with
//! native tract instead, the baseline `serve-bench` measures against;
//! `--web DIR` serves a browser bundle (`wasmops web`) beside the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use wasmops_runtime::{Host, Pooling};
use wasmops_serve::{Backend, Server, Settings, WasmModel};

use crate::args::HostArgs;

/// Serve models over HTTP: `POST /v1/models/{name}/predict` (the `run`
/// JSON), `GET /v1/models[/{name}]`, `GET /v1/health`, `GET /metrics`.
///
/// Each request runs on a fresh instance of its component (pooling
/// allocator, memory copy-on-write from the snapshot), at most
/// `--concurrency` at once. Components are checked as `run` checks them.
#[derive(Parser)]
pub struct ServeCommand {
    /// Signed model components; each is served under its metadata's name.
    pub wasm: Vec<PathBuf>,
    /// `[NAME=]MODEL.onnx` run by native tract, unsigned and unsandboxed: the
    /// baseline for benchmarks (name: the file's stem). Repeatable.
    #[arg(long, value_name = "[NAME=]MODEL.onnx")]
    pub native: Vec<String>,
    /// The preprocessing pipeline of the `--native` models.
    #[arg(long, requires = "native")]
    pub pipeline: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Requests running at once (default: one per core).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Requests waiting for a slot before the server answers 503 at once
    /// (default: 64 per slot).
    #[arg(long)]
    pub max_waiting: Option<usize>,
    /// Longest wait for a slot, in milliseconds, before a 503.
    #[arg(long, default_value_t = 1000)]
    pub queue_ms: u64,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 16)]
    pub max_body_mb: usize,
    /// KiB of each freed instance's memory and tables kept mapped (its
    /// dirtied pages reset in place, on Linux ≥ 6.7) for the next instance
    /// in its slot, instead of returned to the kernel. 16 MiB holds a CNN's
    /// activations: MobileNetV2-style, 4 clients, wasm/native 0.79 at 256
    /// KiB, 0.86 at 16 MiB; iris the same at both (0.97–1.00, 64 clients;
    /// session 41). Older kernels reset the lowest bytes with memset, where
    /// 16 MiB cost iris ~20 % (session 33): give 256 there.
    #[arg(long, default_value_t = 16384)]
    pub keep_resident_kb: usize,
    /// Freed instance slots returned to the kernel in one batch of madvise
    /// calls. With 256 KiB kept resident: 3,225 → 4,003 requests/s on one
    /// core (iris model, session 33).
    #[arg(long, default_value_t = 16)]
    pub decommit_batch: usize,
    /// Most rows that requests waiting at the same moment run as one call,
    /// on one instance (1: each request alone). Only for models whose rows
    /// a start-up check finds independent; nothing waits to fill a batch.
    #[arg(long, default_value_t = wasmops_serve::DEFAULT_BATCH_ROWS)]
    pub batch_rows: usize,
    /// Also serve this directory's files (a `wasmops web` bundle) at `/`.
    #[arg(long, value_name = "DIR")]
    pub web: Option<PathBuf>,
    #[command(flatten)]
    pub host: HostArgs,
}

impl ServeCommand {
    pub fn execute(self) -> Result<()> {
        if self.wasm.is_empty() && self.native.is_empty() && self.web.is_none() {
            bail!("give model components to serve (or --native MODEL.onnx, or --web DIR)");
        }
        let mut settings = Settings::for_this_machine();
        if let Some(c) = self.concurrency {
            settings = settings.with_concurrency(c);
        }
        settings.web = self.web.clone();
        settings.batch_rows = self.batch_rows;
        if let Some(w) = self.max_waiting {
            settings.max_waiting = w;
        }
        settings.queue_timeout = Duration::from_millis(self.queue_ms);
        settings.max_body_bytes = self
            .max_body_mb
            .checked_mul(1 << 20)
            .context("--max-body-mb is too large")?;
        let models = self.models(&settings)?;
        let names: Vec<String> = models.iter().map(|(n, _)| n.clone()).collect();
        let server = Server::new(models, settings)?;
        let rt = tokio::runtime::Runtime::new()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(self.addr)
                .await
                .with_context(|| format!("cannot listen on {}", self.addr))?;
            let addr = listener.local_addr()?;
            // One line: whoever started the server may read only that.
            let files = self
                .web
                .as_ref()
                .map(|d| format!("; files of {} at /", d.display()))
                .unwrap_or_default();
            println!(
                "listening on http://{addr} (models: {}){files}",
                names.join(", ")
            );
            axum::serve(listener, server.router())
                .with_graceful_shutdown(shutdown())
                .await
                .context("serving")
        })
    }

    fn models(&self, settings: &Settings) -> Result<Vec<(String, Arc<dyn Backend>)>> {
        let mut models: Vec<(String, Arc<dyn Backend>)> = vec![];
        if !self.wasm.is_empty() {
            let mut config = self.host.config()?;
            // Slots for every running request plus those whose instance is
            // still being torn down.
            config.pooling = Some(Pooling {
                instances: (settings.concurrency * 2 + self.decommit_batch) as u32,
                keep_resident: self.keep_resident_kb << 10,
                decommit_batch: self.decommit_batch,
            });
            let host = Host::new(config)?;
            for path in &self.wasm {
                let loaded = host
                    .load_file(path)
                    .with_context(|| format!("cannot load {}", path.display()))?;
                let model = WasmModel::new(loaded)
                    .with_context(|| format!("{}: no metadata", path.display()))?;
                let name = model.info().name.clone();
                models.push((name, Arc::new(model)));
            }
        }
        let pipeline = crate::commands::bench::read_pipeline(self.pipeline.as_deref())?;
        for spec in &self.native {
            let (name, path) = match spec.split_once('=') {
                Some((n, p)) => (n.to_string(), PathBuf::from(p)),
                None => {
                    let p = PathBuf::from(spec);
                    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
                    (stem.unwrap_or_default(), p)
                }
            };
            let onnx = crate::files::read(&path)?;
            let model =
                crate::native::NativeModel::load(&onnx, pipeline.as_deref(), &name, "native")
                    .with_context(|| format!("cannot load {}", path.display()))?;
            models.push((name, Arc::new(model)));
        }
        Ok(models)
    }
}

/// Ctrl-C or SIGTERM (what a serverless platform sends before it stops a
/// node): stop accepting, finish the requests in flight.
async fn shutdown() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
