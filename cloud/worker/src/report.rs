//! A run's heartbeat: log lines are buffered and sent with a lease renewal
//! every [`BEAT`] (and at the end); a 409 means the run is no longer this
//! worker's (cancelled, or its lease ran out), and the job stops at its next step.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmops_api::{Client, RunProgress};

/// Well inside the coordinator's lease (`RUN_LEASE_MS`, 60 s).
const BEAT: Duration = Duration::from_secs(2);

pub struct Reporter {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    cancelled: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Reporter {
    pub fn start(client: Client, run: &str, worker: &str) -> Reporter {
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let cancelled = Arc::new(AtomicBool::new(false));
        let thread = {
            let (lines, stop, cancelled) = (lines.clone(), stop.clone(), cancelled.clone());
            let (run, worker) = (run.to_string(), worker.to_string());
            std::thread::spawn(move || {
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    let batch = std::mem::take(&mut *lines.lock().unwrap());
                    let progress = RunProgress {
                        worker: worker.clone(),
                        lines: batch.clone(),
                    };
                    match client.run_progress(&run, &progress) {
                        Ok(()) => {}
                        Err(e) if e.status() == Some(409) || e.status() == Some(404) => {
                            cancelled.store(true, Ordering::Relaxed);
                            return;
                        }
                        Err(e) => {
                            // Not lost: sent with the next beat.
                            tracing::warn!("run {run}: heartbeat failed: {e}");
                            let mut pending = lines.lock().unwrap();
                            let newer = std::mem::take(&mut *pending);
                            *pending = batch;
                            pending.extend(newer);
                        }
                    }
                    if last {
                        return;
                    }
                    let mut slept = Duration::ZERO;
                    while slept < BEAT && !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        slept += Duration::from_millis(50);
                    }
                }
            })
        };
        Reporter {
            lines,
            stop,
            cancelled,
            thread: Some(thread),
        }
    }

    /// Appends a line to the run's log.
    pub fn line(&self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!("{line}");
        self.lines.lock().unwrap().push(line);
    }

    /// Whether the run was taken from this worker.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Sends what is left; whether the run was taken from this worker.
    pub fn stop(mut self) -> bool {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.cancelled()
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
