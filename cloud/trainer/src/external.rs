//! Any program as a trainer: `python train.py --data {data} --out {out}`.
//!
//! The placeholders become shell-quoted paths (`{data}`: the training
//! dataset file, `{holdout}`: the holdout file, `{out}`: where the ONNX file
//! must be written, `{metrics}`: where a metrics JSON object may be written)
//! and the label column's name (`{label}`). The command runs under `sh -c`
//! in its own process group, its output lines are handed to the caller as
//! they come, and the whole group is killed at the time limit. The code
//! identity of the run is the command plus the sha256 of every file it names
//! that exists (the script).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::TrainerError;

/// Where the placeholders point.
pub struct Paths<'a> {
    pub data: &'a Path,
    pub holdout: &'a Path,
    pub out: &'a Path,
    pub metrics: &'a Path,
    pub label: &'a str,
}

/// What a command trainer left behind.
#[derive(Debug)]
pub struct Output {
    pub onnx: Vec<u8>,
    /// Its metrics file, if it wrote one (a JSON object).
    pub metrics: Option<serde_json::Value>,
    /// The command and the sha256 of the files it names.
    pub code: String,
}

/// Largest ONNX file a command may leave (bigger is refused, not read).
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// `s` quoted for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// The command line with its placeholders filled in.
pub fn expand(command: &str, p: &Paths) -> String {
    let path = |x: &Path| quote(&x.to_string_lossy());
    command
        .replace("{data}", &path(p.data))
        .replace("{holdout}", &path(p.holdout))
        .replace("{out}", &path(p.out))
        .replace("{metrics}", &path(p.metrics))
        .replace("{label}", &quote(p.label))
}

/// The command plus `file sha256:…` for each word of it that names a file
/// under `workdir` (placeholders excluded).
pub fn code_identity(command: &str, workdir: &Path) -> String {
    let mut parts = vec![format!("command: {command}")];
    for word in command.split_whitespace() {
        if word.contains('{') {
            continue;
        }
        let path = workdir.join(word.trim_matches(['\'', '"']));
        if path.is_file()
            && let Ok(bytes) = std::fs::read(&path)
        {
            parts.push(format!(
                "{word} sha256:{}",
                hex::encode(sha2::Sha256::digest(&bytes))
            ));
        }
    }
    parts.join("; ")
}

/// Runs `command` in `workdir` within `limit`; `line` gets each output line
/// (stdout and stderr) as it comes.
pub fn run(
    command: &str,
    workdir: &Path,
    paths: &Paths,
    limit: Duration,
    line: &mut dyn FnMut(String),
) -> Result<Output, TrainerError> {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::remove_file(paths.out);
    let _ = std::fs::remove_file(paths.metrics);
    let expanded = expand(command, paths);
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&expanded)
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| TrainerError::Command(format!("cannot start `sh -c {expanded}`: {e}")))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stream).lines() {
                match l {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        })
    })
    .collect();
    drop(tx);
    let started = Instant::now();
    let mut last: Vec<String> = vec![];
    let mut timed_out = false;
    let status = loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => {
                last.push(l.clone());
                if last.len() > 5 {
                    last.remove(0);
                }
                line(l);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Output closed: wait for the exit, still within the limit.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            break status;
        }
        if started.elapsed() > limit {
            timed_out = true;
            kill_group(child.id());
            break child
                .wait()
                .map_err(|e| TrainerError::Command(e.to_string()))?;
        }
    };
    kill_group(child.id()); // anything the command left running
    for r in readers {
        let _ = r.join();
    }
    for l in rx.try_iter() {
        line(l);
    }
    if timed_out {
        return Err(TrainerError::TimedOut(limit.as_secs()));
    }
    if !status.success() {
        return Err(TrainerError::Command(format!(
            "`{command}` {status}; its last lines: {}",
            if last.is_empty() {
                "(none)".to_string()
            } else {
                last.join(" | ")
            }
        )));
    }
    let size = std::fs::metadata(paths.out).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Err(TrainerError::Command(format!(
            "`{command}` finished but wrote no model at {{out}} ({})",
            paths.out.display()
        )));
    }
    if size > MAX_MODEL_BYTES {
        return Err(TrainerError::Command(format!(
            "the model it wrote is {size} bytes; at most {MAX_MODEL_BYTES}"
        )));
    }
    let onnx = std::fs::read(paths.out).map_err(|e| TrainerError::Command(e.to_string()))?;
    let metrics = match std::fs::read(paths.metrics) {
        Err(_) => None,
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(v) if v.is_object() => Some(v),
            _ => {
                return Err(TrainerError::Command(
                    "its metrics file is not a JSON object".into(),
                ));
            }
        },
    };
    Ok(Output {
        onnx,
        metrics,
        code: code_identity(command, workdir),
    })
}

/// SIGKILL to the process group `pid` leads (the command and its children).
fn kill_group(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// A scratch directory for one run's files, removed on drop.
pub struct Scratch(pub PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join("data.csv"),
            dir.join("model.onnx"),
            dir.join("metrics.json"),
        )
    }

    #[test]
    fn commands_fail_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let (data, out, metrics) = paths(dir.path());
        std::fs::write(&data, "a,y\n1,0\n").unwrap();
        let p = Paths {
            data: &data,
            holdout: &data,
            out: &out,
            metrics: &metrics,
            label: "y",
        };
        let mut lines = vec![];
        let mut keep = |l: String| lines.push(l);
        let second = Duration::from_secs(5);
        // Crashes, with its last words.
        let e = run(
            "echo starting; echo boom >&2; exit 3",
            dir.path(),
            &p,
            second,
            &mut keep,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("exit status: 3") && e.to_string().contains("boom"),
            "{e}"
        );
        // Writes nothing.
        let e = run("true", dir.path(), &p, second, &mut keep).unwrap_err();
        assert!(e.to_string().contains("wrote no model"), "{e}");
        // Hangs (with a child that would outlive it): stopped at the limit.
        let started = Instant::now();
        let e = run(
            "sleep 30 & sleep 30",
            dir.path(),
            &p,
            Duration::from_millis(500),
            &mut keep,
        )
        .unwrap_err();
        assert!(matches!(e, TrainerError::TimedOut(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // Bad metrics.
        let e = run(
            "echo x > {out}; echo '[1]' > {metrics}",
            dir.path(),
            &p,
            second,
            &mut keep,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a JSON object"), "{e}");
        // Works: placeholders quoted, metrics read, the script hashed.
        std::fs::write(
            dir.path().join("t.sh"),
            "cp \"$1\" \"$2\"; echo '{\"f1\": 0.5}' > \"$3\"; echo done $4",
        )
        .unwrap();
        let o = run(
            "sh t.sh {data} {out} {metrics} {label}",
            dir.path(),
            &p,
            second,
            &mut keep,
        )
        .unwrap();
        assert_eq!(o.onnx, b"a,y\n1,0\n");
        assert_eq!(o.metrics.unwrap()["f1"], 0.5);
        assert!(o.code.contains("t.sh sha256:"), "{}", o.code);
        assert!(
            lines.contains(&"starting".to_string()) && lines.contains(&"done y".to_string()),
            "{lines:?}"
        );
    }
}
