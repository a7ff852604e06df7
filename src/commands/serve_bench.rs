//! `wasmops serve-bench`: `wasmops serve` under a real load generator (`hey`,
//! Debian's package), against the same binary serving the model's ONNX file
//! with native tract (`serve --native`), and, given a `build --http`
//! component of the same model, against `wasmtime serve` running it, in one
//! run.
//!
//! Each server runs pinned to one core with one slot, and `hey` runs on the
//! others, so "requests/s" is per core and the two sides share nothing but
//! the machine. Per side and round: a warm-up, a saturating load (requests/s,
//! p50, p99), then a load at 80 % of that rate (p50, p99). The component's
//! instance creation per request comes from its server's `/metrics`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;

/// Load-test `serve` (wasm) against `serve --native` (tract) on one core each,
/// with `hey`. Prints a table, then the report as one JSON line.
#[derive(Parser)]
pub struct ServeBenchCommand {
    pub wasm: PathBuf,
    /// The ONNX file the component was built from (the native server's model).
    #[arg(long)]
    pub model: PathBuf,
    /// The component's preprocessing pipeline, for the native server.
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    /// The request body: the `run` input JSON.
    #[arg(long)]
    pub input: PathBuf,
    /// Seconds of each load.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Connections `hey` keeps busy during the saturating load.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Rounds per side, alternating wasm and native (a shared VM's speed
    /// drifts over seconds; alternating puts the drift on both sides).
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// A `wasmops build --http` component of the same model: also load-test
    /// `wasmtime serve` running it (wasmtime-cli; scripts/wasmtime-cli.sh
    /// installs the host's version).
    #[arg(long, value_name = "HTTP.wasm")]
    pub http_wasm: Option<PathBuf>,
    /// The wasmtime binary for `--http-wasm`.
    #[arg(long, default_value = "wasmtime")]
    pub wasmtime: PathBuf,
    /// `serve --keep-resident-kb` for the wasm server (its default when not
    /// given): a CNN's activations want ~16 MiB, a small model 256 KiB.
    #[arg(long)]
    pub keep_resident_kb: Option<usize>,
    /// `serve --batch-rows` for both wasmops servers (their default when
    /// not given; 1 runs each request alone).
    #[arg(long)]
    pub batch_rows: Option<usize>,
}

#[derive(Debug, Default, Serialize, Clone, Copy)]
pub struct Load {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Answers other than 200.
    pub failed: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Side {
    pub saturated: Load,
    pub at_80_percent: Load,
}

#[derive(Debug, Serialize)]
pub struct ServeBenchReport {
    pub model: String,
    pub request_bytes: usize,
    pub pinned: bool,
    pub wasm: Side,
    pub native: Side,
    /// `wasmtime serve` on the `build --http` component (`--http-wasm`).
    pub wasmtime_serve: Option<Side>,
    /// wasm requests/s over native requests/s, saturated (goal: ≥ 0.9).
    pub throughput_ratio: f64,
    /// p99 over p50 of the wasm server at 80 % load (goal: < 2).
    pub wasm_p99_over_p50_at_80: f64,
    pub native_p99_over_p50_at_80: f64,
    /// Mean time to make the fresh instance each wasm call ran on.
    pub instantiate_us: f64,
    /// Mean requests one wasm call answered (dynamic batching; 1: alone).
    pub requests_per_call: f64,
}

/// A server child (`wasmops serve`, `wasmtime serve`) and where it listens;
/// killed on drop.
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `taskset -c CPUS PROGRAM` when there are cores to split, else PROGRAM.
fn pinned(cpus: &str, program: &Path) -> Command {
    if cores() >= 2 {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(cpus).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// How a side's server is started.
enum Server<'a> {
    /// `wasmops serve ARGS` (the component, or `--native`).
    Wasmops(&'a [String]),
    /// `wasmtime serve` on a `build --http` component.
    Wasmtime { bin: &'a Path, component: &'a Path },
}

impl Server<'_> {
    fn start(&self) -> Result<ServerProcess> {
        match self {
            Server::Wasmops(args) => start(args),
            Server::Wasmtime { bin, component } => start_wasmtime(pinned("0", bin), component),
        }
    }
}

/// `wasmtime serve` (the wasmtime binary in `cmd`, pinned or not) on a
/// `build --http` component, on a free port. The bench pins it to core 0, as
/// the wasmops servers are; its tokio runtime then has that one core too.
pub fn start_wasmtime(mut cmd: Command, component: &Path) -> Result<ServerProcess> {
    let bin = PathBuf::from(cmd.get_program());
    cmd.args(["serve", "-Scli", "--addr", "127.0.0.1:0"])
        .arg(component)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {} (scripts/wasmtime-cli.sh installs it)",
            bin.display()
        )
    })?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    // "Serving HTTP on http://127.0.0.1:PORT/"; the rest of its log is drained.
    let line = lines.next().transpose()?.unwrap_or_default();
    std::thread::spawn(move || lines.for_each(drop));
    let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
        let _ = child.kill();
        bail!("`wasmtime serve` did not start: {line:?}");
    };
    Ok(ServerProcess {
        url: url.trim_end_matches('/').to_string(),
        child,
    })
}

fn start(args: &[String]) -> Result<ServerProcess> {
    let exe = std::env::current_exe().context("cannot find this wasmops binary")?;
    let mut cmd = pinned("0", &exe);
    cmd.arg("serve")
        .args(args)
        .args(["--addr", "127.0.0.1:0", "--concurrency", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().context("cannot start `wasmops serve`")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .context("reading the server's first line")?;
    let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) else {
        let _ = child.kill();
        bail!("`wasmops serve {}` did not start: {line:?}", args.join(" "));
    };
    Ok(ServerProcess {
        url: url.to_string(),
        child,
    })
}

/// Runs `hey` against `url`: `rate` is the whole load's requests/s (`None`:
/// as fast as the connections go).
fn hey(
    url: &str,
    body: &Path,
    seconds: u64,
    connections: usize,
    rate: Option<f64>,
) -> Result<Load> {
    let hey = Path::new("hey");
    let mut cmd = pinned(&format!("1-{}", cores().max(2) - 1), hey);
    cmd.args(["-z", &format!("{seconds}s"), "-c", &connections.to_string()])
        .args(["-m", "POST", "-T", "application/json", "-D"])
        .arg(body);
    if let Some(r) = rate {
        cmd.args(["-q", &format!("{:.3}", r / connections as f64)]);
    }
    let out = cmd.arg(url).output().map_err(|e| {
        anyhow::anyhow!(
            "cannot run `hey` ({e}): install it with `apt-get install hey` (scripts/bench-deps.sh)"
        )
    })?;
    if !out.status.success() {
        bail!("hey failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    parse_hey(&String::from_utf8_lossy(&out.stdout))
}

/// Reads hey's summary: `Requests/sec:`, the latency distribution's 50 % and
/// 99 % lines, and the status code distribution.
pub fn parse_hey(text: &str) -> Result<Load> {
    let mut load = Load::default();
    let (mut p50, mut p99, mut ok) = (None, None, 0u64);
    let mut errors = false;
    for line in text.lines().map(str::trim) {
        let number = |s: &str| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<f64>().ok())
        };
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            load.requests_per_s = number(rest).context("hey: Requests/sec")?;
        } else if let Some(rest) = line.strip_prefix("50% in ") {
            p50 = number(rest).map(|s| s * 1e3);
        } else if let Some(rest) = line.strip_prefix("99% in ") {
            p99 = number(rest).map(|s| s * 1e3);
        } else if line.starts_with("Error distribution:") {
            errors = true;
        } else if let Some(rest) = line.strip_prefix('[')
            && let Some((first, second)) = rest.split_once(']')
        {
            // `[200]\t81352 responses`, or under errors `[3]\tGet …: refused`.
            if errors {
                load.failed += first.parse::<u64>().unwrap_or(1);
            } else if first == "200" {
                ok += number(second).unwrap_or(0.0) as u64;
            } else {
                load.failed += number(second).unwrap_or(0.0) as u64;
            }
        }
    }
    load.p50_ms = p50.context("hey printed no 50% latency (no request succeeded?)")?;
    load.p99_ms = p99.context("hey printed no 99% latency")?;
    if ok == 0 {
        bail!("no request was answered 200:\n{text}");
    }
    Ok(load)
}

/// Means of the histograms `names` (one model) on a server's `/metrics`.
fn histogram_means<const N: usize>(url: &str, names: [&str; N]) -> Result<[f64; N]> {
    let text = reqwest::blocking::get(format!("{url}/metrics"))?.text()?;
    let value = |name: String| -> Result<f64> {
        text.lines()
            .find(|l| l.starts_with(&name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in /metrics"))
    };
    let mut means = [0.0; N];
    for (mean, name) in means.iter_mut().zip(names) {
        let (sum, count) = (
            value(format!("{name}_sum"))?,
            value(format!("{name}_count"))?,
        );
        *mean = if count > 0.0 { sum / count } else { 0.0 };
    }
    Ok(means)
}

fn average(loads: &[Load]) -> Load {
    let n = loads.len().max(1) as f64;
    let mut a = Load::default();
    for l in loads {
        a.requests_per_s += l.requests_per_s / n;
        a.p50_ms += l.p50_ms / n;
        a.p99_ms += l.p99_ms / n;
        a.failed += l.failed;
    }
    a
}

impl ServeBenchCommand {
    pub fn execute(self) -> Result<()> {
        let report = self.run()?;
        print(&report);
        Ok(())
    }

    pub fn run(&self) -> Result<ServeBenchReport> {
        let request_bytes = std::fs::metadata(&self.input)
            .with_context(|| format!("cannot read {}", self.input.display()))?
            .len() as usize;
        // Signed with a fresh key the wasm server trusts: the device path.
        let dir = tempfile::tempdir()?;
        let key = wasmops_sign::SecretKey::generate()?;
        let signed = dir.path().join("model.wasm");
        let public = dir.path().join("bench.pub");
        std::fs::write(
            &signed,
            wasmops_sign::sign(&crate::files::read(&self.wasm)?, &key)?,
        )?;
        std::fs::write(&public, key.public().to_bytes())?;
        let name = |p: &Path| p.display().to_string();
        let mut wasm_args = vec![name(&signed), "--trust".into(), name(&public)];
        if let Some(kb) = self.keep_resident_kb {
            wasm_args.extend(["--keep-resident-kb".into(), kb.to_string()]);
        }
        let mut native_args = vec![
            "--native".to_string(),
            format!("model={}", name(&self.model)),
        ];
        if let Some(p) = &self.pipeline {
            native_args.extend(["--pipeline".into(), name(p)]);
        }
        if let Some(rows) = self.batch_rows {
            for args in [&mut wasm_args, &mut native_args] {
                args.extend(["--batch-rows".into(), rows.to_string()]);
            }
        }

        let mut servers = vec![Server::Wasmops(&wasm_args), Server::Wasmops(&native_args)];
        if let Some(component) = &self.http_wasm {
            servers.push(Server::Wasmtime {
                bin: &self.wasmtime,
                component,
            });
        }
        let mut loads = vec![(vec![], vec![]); servers.len()];
        let mut model = String::new();
        let (mut instantiate_us, mut requests_per_call) = (vec![], vec![]);
        for _ in 0..self.rounds.max(1) {
            for (i, server) in servers.iter().enumerate() {
                let is_wasm = i == 0;
                let server = server.start()?;
                let list: serde_json::Value =
                    reqwest::blocking::get(format!("{}/v1/models", server.url))?.json()?;
                let served = list["models"][0]["name"].as_str().unwrap_or("model");
                if is_wasm {
                    model = served.to_string();
                }
                let url = format!("{}/v1/models/{served}/predict", server.url);
                // Warm-up: its numbers are not kept (a slow model's second of
                // requests is too few for hey to print a 99th percentile).
                let _ = hey(&url, &self.input, 1, 1, None);
                let full = hey(&url, &self.input, self.seconds, self.connections, None)?;
                let rate = 0.8 * full.requests_per_s;
                let at80 = hey(
                    &url,
                    &self.input,
                    self.seconds,
                    self.connections,
                    Some(rate),
                )?;
                loads[i].0.push(full);
                loads[i].1.push(at80);
                if is_wasm {
                    let [instantiate, batch] = histogram_means(
                        &server.url,
                        [
                            "wasmops_serve_instantiate_seconds",
                            "wasmops_serve_batch_requests",
                        ],
                    )?;
                    instantiate_us.push(instantiate * 1e6);
                    requests_per_call.push(batch);
                }
            }
        }
        let side = |(full, at80): &(Vec<Load>, Vec<Load>)| Side {
            saturated: average(full),
            at_80_percent: average(at80),
        };
        let mut sides = loads.iter().map(side);
        let (wasm, native) = (
            sides.next().expect("wasm side"),
            sides.next().expect("native side"),
        );
        let wasmtime_serve = sides.next();
        Ok(ServeBenchReport {
            model,
            request_bytes,
            pinned: cores() >= 2,
            throughput_ratio: wasm.saturated.requests_per_s / native.saturated.requests_per_s,
            wasm_p99_over_p50_at_80: wasm.at_80_percent.p99_ms / wasm.at_80_percent.p50_ms,
            native_p99_over_p50_at_80: native.at_80_percent.p99_ms / native.at_80_percent.p50_ms,
            instantiate_us: instantiate_us.iter().sum::<f64>() / instantiate_us.len() as f64,
            requests_per_call: requests_per_call.iter().sum::<f64>()
                / requests_per_call.len() as f64,
            wasm,
            native,
            wasmtime_serve,
        })
    }
}

pub fn print(r: &ServeBenchReport) {
    println!(
        "wasmops serve-bench: {} ({} byte requests{})",
        r.model,
        r.request_bytes,
        if r.pinned {
            "; each server on one core, hey on the others"
        } else {
            ""
        }
    );
    println!(
        "  {:<22} {:>12} {:>9} {:>9} | {:>12} {:>9} {:>9}",
        "", "req/s", "p50 ms", "p99 ms", "80%: req/s", "p50 ms", "p99 ms"
    );
    let rows = [
        ("wasmops serve (wasm)", Some(&r.wasm)),
        ("native tract", Some(&r.native)),
        ("wasmtime serve (http)", r.wasmtime_serve.as_ref()),
    ];
    for (label, s) in rows.iter().filter_map(|(l, s)| Some((l, (*s)?))) {
        println!(
            "  {:<22} {:>12.0} {:>9.3} {:>9.3} | {:>12.0} {:>9.3} {:>9.3}",
            label,
            s.saturated.requests_per_s,
            s.saturated.p50_ms,
            s.saturated.p99_ms,
            s.at_80_percent.requests_per_s,
            s.at_80_percent.p50_ms,
            s.at_80_percent.p99_ms
        );
    }
    println!(
        "  wasm / native throughput {:.3} (goal ≥ 0.9); wasm p99/p50 at 80 % {:.2} (goal < 2); native {:.2}",
        r.throughput_ratio, r.wasm_p99_over_p50_at_80, r.native_p99_over_p50_at_80
    );
    if let Some(w) = &r.wasmtime_serve {
        println!(
            "  wasmtime serve / native throughput {:.3}; wasmtime serve / wasmops serve {:.3}",
            w.saturated.requests_per_s / r.native.saturated.requests_per_s,
            w.saturated.requests_per_s / r.wasm.saturated.requests_per_s
        );
    }
    println!(
        "  instance per call: {:.1} us on average; {:.2} requests per call",
        r.instantiate_us, r.requests_per_call
    );
    let failed: u64 = rows
        .iter()
        .filter_map(|(_, s)| *s)
        .map(|s| s.saturated.failed + s.at_80_percent.failed)
        .sum();
    if failed > 0 {
        println!("  WARNING: {failed} requests were not answered 200");
    }
    println!("{}", serde_json::to_string(r).expect("report serialises"));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hey 0.1.4's summary, as printed for a run with a few failures.
    const HEY: &str = "
Summary:
  Total:\t1.0012 secs
  Slowest:\t0.0210 secs
  Fastest:\t0.0003 secs
  Average:\t0.0012 secs
  Requests/sec:\t8134.1232
  
  Total data:\t4232 bytes
  Size/request:\t52 bytes

Latency distribution:
  10% in 0.0008 secs
  50% in 0.0011 secs
  99% in 0.0030 secs

Status code distribution:
  [200]\t8130 responses
  [503]\t3 responses

Error distribution:
  [1]\tPost \"http://127.0.0.1:1/\": EOF
";

    #[test]
    fn hey_summaries_are_read_with_their_failures() {
        let l = parse_hey(HEY).unwrap();
        assert_eq!(l.requests_per_s, 8134.1232);
        assert!((l.p50_ms - 1.1).abs() < 1e-9 && (l.p99_ms - 3.0).abs() < 1e-9);
        assert_eq!(l.failed, 4);
        let none = HEY.replace("[200]\t8130", "[500]\t8130");
        assert!(
            parse_hey(&none)
                .unwrap_err()
                .to_string()
                .contains("no request")
        );
    }
}
