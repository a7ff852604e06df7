//! A private Mosquitto broker on a free port (benchmarks and tests that must
//! restart the broker). Queues are sized so a slow subscriber is queued, not
//! dropped. Killed on drop.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub struct Mosquitto {
    child: Option<std::process::Child>,
    pub port: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Mosquitto {
    pub fn start() -> Result<Mosquitto> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\nmax_inflight_messages 1000\npersistence false\n"
            ),
        )?;
        let mut m = Mosquitto {
            child: None,
            port,
            conf,
            _dir: dir,
        };
        m.restart()?;
        Ok(m)
    }

    /// A broker run from `conf` (e.g. what `wasmops mosquitto-config`
    /// wrote), listening on 127.0.0.1:`port` as that file says.
    pub fn start_with(conf: PathBuf, port: u16) -> Result<Mosquitto> {
        let mut m = Mosquitto {
            child: None,
            port,
            conf,
            _dir: tempfile::tempdir()?,
        };
        m.restart()?;
        Ok(m)
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: no goodbye to anyone, nothing kept.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts (again) on the same port; returns once it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let started = Instant::now();
        loop {
            let mut child = std::process::Command::new("mosquitto")
                .arg("-c")
                .arg(&self.conf)
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("cannot start mosquitto (is it installed?)")?;
            // Up when it accepts a connection; if it exits, the port may still be
            // held by the killed broker's sockets: try again.
            loop {
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    self.child = Some(child);
                    return Ok(());
                }
                if child.try_wait()?.is_some() || started.elapsed() > Duration::from_secs(20) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            if started.elapsed() > Duration::from_secs(20) {
                bail!("mosquitto did not listen on port {}", self.port);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
