//! `wasmops worker`: pulls runs from a coordinator and carries them out
//! (train, build, validate, sign, register). `wasmops coordinator` runs one
//! in its own process unless told not to; more run anywhere.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Result;
use clap::Parser;
use wasmops_worker::{Worker, WorkerConfig};

use crate::args::{CacheArgs, Connection};

/// Carry out training runs for a coordinator.
#[derive(Parser)]
pub struct WorkerCommand {
    /// How runs name this worker.
    #[arg(long, default_value = "worker")]
    pub name: String,
    /// The release key candidates are signed with.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The delegation that lets --key sign the models it trains
    /// (`wasmops trust delegate --models NAME`).
    #[arg(long)]
    pub delegation: Option<PathBuf>,
    /// Where command trainers run.
    #[arg(long, default_value = ".")]
    pub workdir: PathBuf,
    /// Run command trainers (`retrain --command`, `trainer = "python …"`):
    /// each runs as this worker's user.
    #[arg(long)]
    pub allow_commands: bool,
    /// Stop after this many runs (default: work until stopped).
    #[arg(long)]
    pub runs: Option<usize>,
    #[command(flatten)]
    pub cache: CacheArgs,
    #[command(flatten)]
    pub conn: Connection,
}

impl WorkerCommand {
    pub fn execute(self) -> Result<()> {
        let worker = Worker::new(WorkerConfig {
            coordinator: self.conn.coordinator.clone(),
            tls: self.conn.tls()?,
            token: self.conn.token()?,
            name: self.name.clone(),
            release_key: self.key.clone(),
            delegation: self.delegation.clone(),
            workdir: self.workdir.clone(),
            allow_commands: self.allow_commands,
            cache_dir: self.cache.dir(),
            poll: Duration::from_secs(1),
        })?;
        match self.runs {
            None => worker.serve(&AtomicBool::new(false)),
            Some(n) => {
                let mut done = 0;
                while done < n {
                    match worker.run_next()? {
                        Some(run) => {
                            println!("{}", super::runs::describe(&run));
                            done += 1;
                        }
                        None => std::thread::sleep(Duration::from_secs(1)),
                    }
                }
            }
        }
        Ok(())
    }
}
