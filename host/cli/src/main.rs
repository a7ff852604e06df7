//! `wasmops`: build, sign, verify, run and benchmark ML model components.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use wasmops_build::{BuildOptions, InputShape};
use wasmops_cli::trust::{TrustCommand, public as read_public};
use wasmops_cli::{bench, files, tensors};
use wasmops_host::{Host, HostConfig, SignaturePolicy};
use wasmops_sign::SecretKey;
use wasmops_trust::claims::ClaimsFile;
use wasmops_trust::{Claims, TrustDir, TrustPolicy};

mod fleet_bench;
mod fleet_demo;

#[derive(Parser)]
#[command(name = "wasmops", version, about = "ML models from the cloud to the edge as signed WebAssembly components")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an Ed25519 key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen {
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Turn an ONNX model (+ preprocessing pipeline) into a self-contained component.
    Build {
        model: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Preprocessing pipeline TOML, run inside the component before the model.
        #[arg(long)]
        pipeline: Option<PathBuf>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long, default_value = "0.1.0")]
        version: String,
        /// Fix or override an input shape, e.g. x=N,3,224,224 (N or ? keeps an axis dynamic).
        #[arg(long = "input-shape", value_name = "NAME=D1,D2,...")]
        input_shapes: Vec<InputShape>,
        /// Training data ({"inputs":[...]}, rows × features): its per-feature deciles become
        /// signed bin edges that devices summarise live inputs with (drift against training).
        #[arg(long)]
        training_data: Option<PathBuf>,
        /// Use this generic guest instead of the built-in one (guest development).
        #[arg(long, hide = true)]
        guest: Option<PathBuf>,
        #[command(flatten)]
        claims: ClaimsArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Embed an Ed25519 signature (wasmsign2 layout) in a component.
    Sign {
        wasm: PathBuf,
        #[arg(long)]
        key: PathBuf,
        /// Write here instead of replacing the input file.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Embed this delegation (from `wasmops trust delegate`) so the component carries its own credentials.
        #[arg(long)]
        delegation: Option<PathBuf>,
    },
    /// Check a component's signature, trust chain, claims and rollback state; exit 0 when valid.
    Verify {
        wasm: PathBuf,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// Manage the root of trust: init, delegate, revoke, rotate-root, show.
    Trust {
        #[command(subcommand)]
        command: TrustCommand,
    },
    /// Run one prediction; prints {"outputs":[...]} on stdout.
    Run {
        wasm: PathBuf,
        /// Input JSON file, or `-` for stdin.
        #[arg(long)]
        input: PathBuf,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Print what a component takes and returns, and its preprocessing.
    Inspect {
        wasm: PathBuf,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// In-wasm vs native tract latency, compile and start times, size. Last line is JSON.
    ///
    /// With `--against B.wasm`: this component against another build of the same
    /// model (a guest or kernel change), both in wasm, in one process.
    Bench {
        wasm: PathBuf,
        /// The ONNX model the component was built from (the native baseline).
        #[arg(long, required_unless_present = "against")]
        model: Option<PathBuf>,
        /// A second component taking the same inputs: time the two head to head
        /// (alternating rounds) and report their outputs' largest difference.
        #[arg(long, conflicts_with_all = ["model", "pipeline"])]
        against: Option<PathBuf>,
        #[arg(long)]
        pipeline: Option<PathBuf>,
        /// Inputs to use instead of synthetic ones.
        #[arg(long)]
        input: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        batch: u32,
        /// Measuring time per side.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
    /// Run the coordinator: registry, artifact store and HTTP API.
    Coordinator {
        /// Where the zero-setup defaults live (SQLite file, artifacts, admin token).
        #[arg(long, default_value = "wasmops-data")]
        data_dir: PathBuf,
        /// postgres://USER@HOST/DB or sqlite://FILE (default: DATA_DIR/wasmops.db).
        #[arg(long)]
        database: Option<String>,
        /// object_store URL for artifacts, e.g. file:///srv/wasmops (default: DATA_DIR/artifacts).
        #[arg(long)]
        artifacts: Option<String>,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Largest component accepted, in MiB.
        #[arg(long, default_value_t = 256)]
        max_artifact_mb: usize,
        /// External MQTT broker, e.g. mqtt://127.0.0.1:1883 (default: an embedded broker).
        #[arg(long)]
        mqtt: Option<String>,
        /// Where the embedded broker listens (away from 1883, where a system broker may run).
        #[arg(long, default_value = "127.0.0.1:18830")]
        mqtt_listen: std::net::SocketAddr,
        /// POST every event (JSON) to this URL; repeatable.
        #[arg(long = "webhook")]
        webhooks: Vec<String>,
        /// Hours of telemetry kept; older windows are deleted.
        #[arg(long, default_value_t = 168)]
        telemetry_retention_hours: u64,
        #[command(flatten)]
        trust: TrustArgs,
    },
    /// The coordinator's model registry: register, list, show, alias, tag.
    Model {
        #[command(subcommand)]
        command: wasmops_cli::coordinator_client::ModelCommand,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Create an API token (admin): roles viewer, data-scientist, operator, admin.
    Token {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: String,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Create an enrolment token (operator): devices matching PATTERN trade it for their own credentials.
    Enrolment {
        /// A device id, or a pattern with `*` (e.g. factory-12-*).
        #[arg(long)]
        devices: String,
        /// How long the token stays valid, in seconds.
        #[arg(long, default_value_t = 86_400)]
        valid_for_s: u64,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Run the device agent: presence, installs from the coordinator, local predictions.
    Agent {
        #[arg(long)]
        config: PathBuf,
    },
    /// Put a registered version (or alias) on devices, by id or label selector.
    Deploy {
        model: String,
        version: String,
        /// Device id; repeatable.
        #[arg(long = "device")]
        devices: Vec<String>,
        /// Label selector KEY=VALUE; repeatable (all must match).
        #[arg(long = "selector")]
        selector: Vec<String>,
        /// Sample input for the devices' health probe ({"inputs":[...]}).
        #[arg(long)]
        probe: Option<PathBuf>,
        /// Wait until every device reports active or failed (seconds).
        #[arg(long)]
        wait: Option<u64>,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Devices the coordinator knows: presence, labels, active model.
    Devices {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// The coordinator's audit log, newest first.
    Audit {
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Canary, blue-green and shadow rollouts: create, list, status, pause, resume, approve, abort.
    Rollout {
        #[command(subcommand)]
        command: wasmops_cli::rollout::RolloutCommand,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Telemetry per model version: predictions, failure rate, latency, features, outputs.
    Telemetry {
        /// Only windows that ended at or after this time (ms since the epoch).
        #[arg(long, default_value_t = 0)]
        since_ms: i64,
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Simulated fleets: `simulate` for tests and demos, benchmarks for load.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Build, sign, verify and run the bundled example model; then start a
    /// coordinator with a simulated fleet and canary a new version across it.
    Demo {
        /// Where to leave the demo's keys, components and coordinator data (a temporary directory by default).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Simulated devices.
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// Stop after the rollout instead of serving until Ctrl-C (the default when not run from a terminal).
        #[arg(long)]
        exit: bool,
    },
}

#[derive(Subcommand)]
enum FleetCommand {
    /// Run N device agents in this process, each with its own MQTT connection.
    Simulate {
        #[arg(long)]
        devices: usize,
        /// Device ids are PREFIX0000, PREFIX0001, …
        #[arg(long, default_value = "sim-")]
        id_prefix: String,
        /// Label every device gets: KEY=VALUE; repeatable.
        #[arg(long = "label")]
        labels: Vec<String>,
        /// A label spread round-robin: KEY=V1,V2,…
        #[arg(long)]
        spread: Option<String>,
        #[arg(long)]
        mqtt: String,
        /// Where each device keeps its state (one directory per device).
        #[arg(long)]
        state_dir: PathBuf,
        #[command(flatten)]
        keys: KeyArgs,
        /// Application traffic: predictions per second per device.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// The application's request ({"inputs":[...]}); no traffic without one.
        #[arg(long)]
        sample: Option<PathBuf>,
        #[arg(long, default_value_t = 1000)]
        telemetry_interval_ms: u64,
        /// The simulator's status API (GET /v1/fleet).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Enrolment token for the fleet's device ids (`wasmops enrolment --devices 'sim-*'`).
        #[arg(long)]
        enrolment_token: String,
        /// Coordinator URL.
        #[command(flatten)]
        conn: wasmops_cli::coordinator_client::Connection,
    },
    /// Time a canary rollout across N simulated devices (coordinator, broker and fleet in this process).
    BenchRollout {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// An external broker (e.g. mqtt://127.0.0.1:1883); the embedded one otherwise.
        #[arg(long)]
        mqtt: Option<String>,
        #[arg(long, default_value_t = 0.2)]
        rate: f64,
    },
    /// Telemetry ingestion through a broker: messages/s stored by the coordinator, against raw broker throughput.
    BenchTelemetry {
        /// An existing broker; by default a private Mosquitto on a free port.
        #[arg(long)]
        mqtt: Option<String>,
        /// Publishing connections (simulated devices).
        #[arg(long, default_value_t = 50)]
        devices: usize,
        #[arg(long, default_value_t = 50_000)]
        messages: usize,
    },
}

#[derive(Args, Clone)]
struct CacheArgs {
    /// Compiled-component cache (default: $WASMOPS_CACHE_DIR or ~/.cache/wasmops).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    #[arg(long)]
    no_cache: bool,
}

impl CacheArgs {
    fn dir(&self) -> Option<PathBuf> {
        if self.no_cache { None } else { Some(self.cache_dir.clone().unwrap_or_else(wasmops_host::default_cache_dir)) }
    }
}

/// Claims `build` embeds besides the ones it computes (see `--claims` for a file).
#[derive(Args, Clone, Default)]
struct ClaimsArgs {
    /// TOML file with sequence, expires, [lineage], [metrics], capabilities; flags override it.
    #[arg(long)]
    claims: Option<PathBuf>,
    /// Monotonic release number for rollback protection (default: build time in seconds).
    #[arg(long)]
    sequence: Option<u64>,
    /// Expiry: RFC 3339 time or a duration such as 180d.
    #[arg(long)]
    expires: Option<String>,
    #[arg(long)]
    dataset_id: Option<String>,
    #[arg(long)]
    dataset_sha256: Option<String>,
    #[arg(long)]
    training_run: Option<String>,
    #[arg(long)]
    code_commit: Option<String>,
    /// Evaluation metric, e.g. auc=0.91; repeatable.
    #[arg(long = "metric", value_name = "NAME=VALUE")]
    metrics: Vec<String>,
    /// Extra capability to require from hosts; repeatable.
    #[arg(long = "capability")]
    capabilities: Vec<String>,
}

impl ClaimsArgs {
    fn resolve(&self) -> Result<ClaimsFile> {
        let mut c = match &self.claims {
            Some(p) => ClaimsFile::from_toml(&std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?).with_context(|| format!("{}", p.display()))?,
            None => ClaimsFile::default(),
        };
        c.sequence = self.sequence.or(c.sequence);
        c.expires = self.expires.clone().or(c.expires);
        let l = &mut c.lineage;
        for (field, value) in [(&mut l.dataset_id, &self.dataset_id), (&mut l.dataset_sha256, &self.dataset_sha256), (&mut l.training_run, &self.training_run), (&mut l.code_commit, &self.code_commit)] {
            if value.is_some() {
                *field = value.clone();
            }
        }
        for m in &self.metrics {
            let (k, v) = m.split_once('=').with_context(|| format!("--metric `{m}`: expected NAME=VALUE"))?;
            let v: f64 = v.trim().parse().with_context(|| format!("--metric `{m}`: `{v}` is not a number"))?;
            c.metrics.insert(k.trim().to_string(), v);
        }
        c.capabilities.extend(self.capabilities.iter().cloned());
        Ok(c)
    }
}

/// Whom to trust: plain keys (`--trust`) or a root and its metadata (`--root`, `--trust-dir`).
#[derive(Args, Clone, Default)]
struct KeyArgs {
    /// Trusted release public key file(s) (no root: development, plain wasmsign2).
    #[arg(long)]
    trust: Vec<PathBuf>,
    /// Root public key: trust the release keys it delegates to in --trust-dir.
    #[arg(long, requires = "trust_dir")]
    root: Option<PathBuf>,
    /// Metadata signed by the root: root.N.json, delegations/, revocations.json.
    #[arg(long, requires = "root")]
    trust_dir: Option<PathBuf>,
}

/// [`KeyArgs`] plus what a host remembers and grants.
#[derive(Args, Clone, Default)]
struct TrustArgs {
    #[command(flatten)]
    keys: KeyArgs,
    /// Rollback protection: refuse a lower sequence than one accepted before, remembered here.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Capabilities granted to components (default: random, clocks, stdio); repeatable.
    #[arg(long = "grant")]
    grants: Vec<String>,
}

impl TrustArgs {
    /// `None` when no trust was configured at all.
    fn policy(&self) -> Result<Option<TrustPolicy>> {
        let k = &self.keys;
        let mut policy = match (&k.root, &k.trust_dir, k.trust.is_empty()) {
            (Some(root), Some(dir), true) => TrustPolicy::root(vec![read_public(root)?], TrustDir::new(dir).load()?),
            (None, None, false) => TrustPolicy::keys(k.trust.iter().map(|p| read_public(p)).collect::<Result<_>>()?),
            (None, None, true) => return Ok(None),
            _ => bail!("give either --trust KEY.pub or --root ROOT.pub --trust-dir DIR, not both"),
        };
        if let Some(dir) = &self.state_dir {
            policy = policy.with_state(wasmops_trust::StateDir::new(dir));
        }
        if !self.grants.is_empty() {
            policy.granted = self.grants.clone();
        }
        Ok(Some(policy))
    }
}

#[derive(Args, Clone)]
struct HostArgs {
    #[command(flatten)]
    trust: TrustArgs,
    /// Development only: run unsigned or untrusted components.
    #[arg(long)]
    allow_unsigned: bool,
    /// Linear memory cap in MiB.
    #[arg(long, default_value_t = 1024)]
    memory_limit_mb: usize,
    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    deadline_ms: u64,
    #[command(flatten)]
    cache: CacheArgs,
}

impl HostArgs {
    fn host(&self) -> Result<Host> {
        let signatures = match (self.allow_unsigned, self.trust.policy()?) {
            (true, _) => {
                eprintln!("WARNING: --allow-unsigned: signature checks are OFF; never use this in production");
                SignaturePolicy::AllowUnsigned
            }
            (false, Some(policy)) => SignaturePolicy::Trusted(policy),
            (false, None) => bail!("no trusted key: pass --trust KEY.pub or --root ROOT.pub --trust-dir DIR (or --allow-unsigned during development)"),
        };
        let config = HostConfig {
            signatures,
            memory_limit: self.memory_limit_mb.checked_mul(1 << 20).context("memory limit too large")?,
            deadline: Duration::from_millis(self.deadline_ms),
            cache_dir: self.cache.dir(),
        };
        Ok(Host::new(config)?)
    }
}

fn keygen(prefix: &Path) -> Result<(PathBuf, PathBuf)> {
    let key = SecretKey::generate()?;
    let secret = prefix.with_extension("key");
    let public = prefix.with_extension("pub");
    files::write_atomic_mode(&secret, &key.to_bytes(), Some(0o600))?;
    files::write_atomic(&public, &key.public().to_bytes())?;
    Ok((secret, public))
}

#[allow(clippy::too_many_arguments)]
fn build(model: &Path, out: &Path, pipeline: Option<&Path>, name: Option<String>, version: String, input_shapes: Vec<InputShape>, training_data: Option<&Path>, guest: Option<&Path>, claims: &ClaimsArgs, cache: &CacheArgs) -> Result<()> {
    let feature_bins = match training_data {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
            let bins = wasmops_devices::telemetry::quantile_edges(&tensors::parse_untyped(&text).with_context(|| format!("{}", p.display()))?, 10);
            anyhow::ensure!(!bins.is_empty(), "{}: no [rows, features] float input with two or more finite rows", p.display());
            bins
        }
        None => Default::default(),
    };
    let onnx = files::read(model)?;
    let pipeline = match pipeline {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => String::new(),
    };
    let name = name.unwrap_or_else(|| model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()));
    let guest = guest.map(files::read).transpose()?;
    let opts = BuildOptions { name, version, pipeline, input_shapes, cache_dir: cache.dir(), guest, claims: claims.resolve()?, feature_bins };
    let built = wasmops_build::build(&onnx, &opts).with_context(|| format!("cannot build {}", model.display()))?;
    files::write_atomic(out, &built.component)?;
    eprintln!(
        "built {} ({:.2} MB, {} guest; model as NNEF {:.2} MB; convert {:.2}s, snapshot {:.2}s)",
        out.display(),
        built.component.len() as f64 / 1e6,
        built.guest,
        built.nnef_bytes as f64 / 1e6,
        built.convert_time.as_secs_f64(),
        built.snapshot_time.as_secs_f64()
    );
    eprintln!("claims: {} {} sequence {}, capabilities {:?}", built.claims.name, built.claims.version, built.claims.sequence, built.claims.capabilities);
    Ok(())
}

fn sign(wasm: &Path, key: &Path, out: Option<&Path>, delegation: Option<&Path>) -> Result<()> {
    let key = SecretKey::from_bytes(&files::read(key)?).with_context(|| format!("{}", key.display()))?;
    let mut bytes = files::read(wasm)?;
    if let Some(d) = delegation {
        let doc = files::read(d)?;
        let parsed = wasmops_trust::Signed::<wasmops_trust::Delegation>::parse(&doc).with_context(|| format!("{}", d.display()))?;
        if parsed.signed.public_key()?.key_id() != key.public().key_id() {
            bail!("{} delegates to key {}, not to the signing key {}", d.display(), parsed.signed.public_key()?.key_id(), key.public().key_id());
        }
        bytes = wasmops_sign::set_custom_section(&bytes, wasmops_trust::policy::DELEGATION_SECTION, Some(&doc))?;
    }
    let signed = wasmops_sign::sign(&bytes, &key).with_context(|| format!("cannot sign {}", wasm.display()))?;
    let out = out.unwrap_or(wasm);
    files::write_atomic(out, &signed)?;
    eprintln!("signed {} with key {}", out.display(), key.public().key_id());
    Ok(())
}

fn verify(wasm: &Path, trust: &TrustArgs) -> Result<()> {
    let policy = trust.policy()?.context("no trusted key: pass --trust KEY.pub or --root ROOT.pub --trust-dir DIR")?;
    let a = policy.check(&files::read(wasm)?).with_context(|| format!("{} is not trusted", wasm.display()))?;
    policy.commit(&a)?;
    let via = a.delegation.as_ref().map(|d| format!(" (delegation `{d}`)")).unwrap_or_default();
    println!("{}: valid signature by key {}{via} (content sha256 {})", wasm.display(), a.verified.key_id, hex::encode(a.verified.content_sha256));
    if let Some(c) = &a.claims {
        println!("claims: {} {} sequence {}", c.name, c.version, c.sequence);
    }
    Ok(())
}

fn run(wasm: &Path, input: &Path, host: &HostArgs) -> Result<String> {
    let host = host.host()?;
    let loaded = host.load_file(wasm).with_context(|| format!("cannot load {}", wasm.display()))?;
    let mut instance = loaded.instantiate()?;
    let info = instance.metadata()?;
    let text = if input == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("cannot read the input from stdin")?
    } else {
        std::fs::read_to_string(input).with_context(|| format!("cannot read {}", input.display()))?
    };
    let inputs = tensors::parse_inputs(&text, &info).with_context(|| format!("{}", input.display()))?;
    let outputs = instance.predict(&inputs)?;
    Ok(tensors::outputs_json(&outputs))
}

fn type_name(t: wasmops_host::bindings::ElementType) -> &'static str {
    use wasmops_host::bindings::ElementType::*;
    match t {
        Float32 => "float32",
        Int64 => "int64",
        Int32 => "int32",
        Boolean => "bool",
        Text => "text",
        Other => "other",
    }
}

fn inspect(wasm: &Path, json: bool, host: &HostArgs) -> Result<()> {
    let bytes = files::read(wasm)?;
    if !host.allow_unsigned && host.trust.policy()?.is_none() {
        return inspect_unverified(wasm, &bytes, json);
    }
    let host = host.host()?;
    let loaded = host.load(&bytes).with_context(|| format!("cannot load {}", wasm.display()))?;
    let info = loaded.instantiate()?.metadata()?;
    // Signed claims when the policy checked them; otherwise what the file says.
    let claims = match loaded.accepted.as_ref().and_then(|a| a.claims.clone()) {
        Some(c) => Some(c),
        None => Claims::read(&bytes)?,
    };
    let dims = |shape: &[wasmops_host::bindings::Dim]| {
        shape
            .iter()
            .map(|d| match d {
                wasmops_host::bindings::Dim::Fixed(v) => v.to_string(),
                wasmops_host::bindings::Dim::Symbol(s) => s.clone(),
            })
            .collect::<Vec<_>>()
    };
    let specs = |v: &[wasmops_host::bindings::TensorSpec]| {
        v.iter().map(|s| serde_json::json!({"name": s.name, "type": type_name(s.element_type), "shape": dims(&s.shape)})).collect::<Vec<_>>()
    };
    let doc = serde_json::json!({
        "name": info.name,
        "version": info.version,
        "sha256": loaded.sha256,
        "size_bytes": loaded.size_bytes,
        "signed_by": loaded.accepted.as_ref().map(|a| a.verified.key_id.clone()),
        "delegation": loaded.accepted.as_ref().and_then(|a| a.delegation.clone()),
        "claims": claims,
        "inputs": specs(&info.inputs),
        "outputs": specs(&info.outputs),
        "preprocessing": info.preprocessing,
    });
    if json {
        println!("{doc}");
    } else {
        println!("{} {}  ({} bytes, sha256 {})", info.name, info.version, loaded.size_bytes, loaded.sha256);
        if let Some(a) = &loaded.accepted {
            let via = a.delegation.as_ref().map(|d| format!(" (delegation `{d}`)")).unwrap_or_default();
            println!("signed by key {}{via}", a.verified.key_id);
        }
        if let Some(c) = &claims {
            print_claims(c);
        }
        for (title, list) in [("inputs", &info.inputs), ("outputs", &info.outputs)] {
            println!("{title}:");
            for s in list {
                println!("  {:<16} {:<8} [{}]", s.name, type_name(s.element_type), dims(&s.shape).join(", "));
            }
        }
        if !info.preprocessing.is_empty() {
            println!("preprocessing:");
            for (i, p) in info.preprocessing.iter().enumerate() {
                println!("  {}. {p}", i + 1);
            }
        }
    }
    Ok(())
}

/// Without trust flags: what the file claims, read without running it and
/// marked unverified (its inputs and outputs need the component to run).
fn inspect_unverified(wasm: &Path, bytes: &[u8], json: bool) -> Result<()> {
    let signed = wasmops_sign::sections(bytes)?.first().and_then(|s| s.custom_name()) == Some(wasmops_sign::SIGNATURE_SECTION);
    let claims = Claims::read(bytes)?;
    if json {
        println!("{}", serde_json::json!({"verified": false, "signed": signed, "size_bytes": bytes.len(), "claims": claims}));
        return Ok(());
    }
    println!("{}  ({} bytes, {})", wasm.display(), bytes.len(), if signed { "signed" } else { "NOT signed" });
    println!("UNVERIFIED: pass --trust KEY.pub or --root ROOT.pub --trust-dir DIR to check the signature and show inputs and outputs");
    match &claims {
        Some(c) => {
            println!("{} {}", c.name, c.version);
            print_claims(c);
        }
        None => println!("no claims"),
    }
    Ok(())
}

fn print_claims(c: &Claims) {
    println!("claims:");
    println!("  sequence         {}", c.sequence);
    println!("  created          {}{}", c.created_at, c.expires_at.map(|e| format!(", expires {e}")).unwrap_or_default());
    println!("  model sha256     {}", c.model_sha256);
    println!("  pipeline sha256  {}", c.pipeline_sha256);
    let l = &c.lineage;
    for (k, v) in [("dataset", &l.dataset_id), ("dataset sha256", &l.dataset_sha256), ("training run", &l.training_run), ("code commit", &l.code_commit)] {
        if let Some(v) = v {
            println!("  {k:<16} {v}");
        }
    }
    for (k, v) in &c.metrics {
        println!("  metric {k:<9} {v}");
    }
    println!("  capabilities     {}", c.capabilities.join(", "));
}

const DEMO_MODEL: &[u8] = include_bytes!("../../../tests/fixtures/tabular_pipeline/model.onnx");
const DEMO_PIPELINE: &str = include_str!("../../../tests/fixtures/tabular_pipeline/pipeline.toml");
const DEMO_INPUT: &str = r#"{"inputs":[
  {"name":"X","shape":[3,3],"data":[52.0, 61.5, 2, 33.0, null, 0, 47.5, 38.0, 1]},
  {"name":"color","shape":[3],"data":["red","blue","green"]}
]}"#;

fn demo(dir: Option<PathBuf>, devices: usize, exit: bool) -> Result<()> {
    let tmp;
    let keep = dir.is_some();
    let dir = match dir {
        Some(d) => {
            std::fs::create_dir_all(&d)?;
            d
        }
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let step = |n: u32, what: &str| eprintln!("[{n}/7] {what}");
    step(1, "writing the bundled churn model (scikit-learn LogisticRegression) and its pipeline");
    let model = dir.join("churn.onnx");
    let pipeline = dir.join("churn.pipeline.toml");
    let input = dir.join("customers.json");
    files::write_atomic(&model, DEMO_MODEL)?;
    files::write_atomic(&pipeline, DEMO_PIPELINE.as_bytes())?;
    files::write_atomic(&input, DEMO_INPUT.as_bytes())?;

    step(2, "wasmops keygen --out release");
    let (secret, public) = keygen(&dir.join("release"))?;
    step(3, "wasmops build churn.onnx --pipeline churn.pipeline.toml --out churn.wasm");
    let wasm = dir.join("churn.wasm");
    let cache = CacheArgs { cache_dir: None, no_cache: false };
    build(&model, &wasm, Some(&pipeline), Some("churn".into()), "1.0.0".into(), vec![], None, None, &ClaimsArgs::default(), &cache)?;
    step(4, "wasmops sign churn.wasm --key release.key && wasmops verify churn.wasm --trust release.pub");
    sign(&wasm, &secret, None, None)?;
    let trust = TrustArgs { keys: KeyArgs { trust: vec![public], ..Default::default() }, ..Default::default() };
    verify(&wasm, &trust)?;
    step(5, "wasmops run churn.wasm --trust release.pub --input customers.json");
    let host = HostArgs { trust, allow_unsigned: false, memory_limit_mb: 256, deadline_ms: 10_000, cache };
    inspect(&wasm, false, &host)?;
    println!("input:  {}", DEMO_INPUT.split_whitespace().collect::<Vec<_>>().join(" "));
    println!("output: {}", run(&wasm, &input, &host)?);

    step(6, "two signed releases for the fleet: churn 1.0.0 (sequence 1) and 1.1.0 (sequence 2)");
    let versions = fleet_demo::build_versions(&dir, &secret, &[("1.0.0", 1), ("1.1.0", 2)])?;
    step(7, &format!("wasmops coordinator (SQLite, local artifacts, embedded MQTT) + {devices} simulated devices; deploy 1.0.0, then canary 1.1.0"));
    let trust_key = host.trust.keys.trust[0].clone();
    let scenario = fleet_demo::Scenario {
        dir: dir.clone(),
        devices,
        mqtt: None,
        v1: versions[0].clone(),
        v2: versions[1].clone(),
        trust_key,
        sample: DEMO_INPUT.to_string(),
        rate: 5.0,
        telemetry_interval_ms: 1000,
        bake_s: 3,
    };
    // Interactive users get a coordinator to look around in; scripts get an exit.
    let keep_serving = !exit && std::io::IsTerminal::is_terminal(&std::io::stdin());
    fleet_demo::run(&scenario, keep_serving, false)?;
    if keep {
        eprintln!("done; the key pair, model and component are in {}", dir.display());
    } else {
        eprintln!("done (pass --dir DIR to keep the key pair, model and component)");
    }
    Ok(())
}

fn fleet(command: FleetCommand) -> Result<()> {
    match command {
        FleetCommand::Simulate { devices, id_prefix, labels, spread, mqtt, state_dir, keys, rate, sample, telemetry_interval_ms, listen, enrolment_token, conn } => {
            let mut label_map = std::collections::BTreeMap::new();
            for l in &labels {
                let (k, v) = l.split_once('=').with_context(|| format!("--label `{l}`: expected KEY=VALUE"))?;
                label_map.insert(k.to_string(), v.to_string());
            }
            let spread = match spread {
                Some(s) => {
                    let (k, vs) = s.split_once('=').with_context(|| format!("--spread `{s}`: expected KEY=V1,V2"))?;
                    Some((k.to_string(), vs.split(',').map(str::to_string).collect()))
                }
                None => None,
            };
            let sample = sample.map(|p| std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))).transpose()?;
            let config = wasmops_devices::fleet::FleetConfig {
                devices,
                id_prefix,
                labels: label_map,
                spread,
                coordinator: conn.coordinator.clone(),
                enrolment_token,
                mqtt,
                state_dir,
                trust: wasmops_devices::agent::TrustConfig { root: keys.root, trust_dir: keys.trust_dir, keys: keys.trust },
                telemetry_interval_ms,
                rate,
                sample,
            };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(wasmops_devices::fleet::run(config, listen, async {
                let _ = tokio::signal::ctrl_c().await;
            }))
        }
        FleetCommand::BenchRollout { devices, mqtt, rate } => fleet_bench::rollout(devices, mqtt, rate),
        FleetCommand::BenchTelemetry { mqtt, devices, messages } => fleet_bench::telemetry(mqtt.as_deref(), devices, messages),
    }
}

fn main() {
    // The embedded broker (rumqttd) logs routine disconnects as errors: silent
    // unless asked for (WASMOPS_LOG=rumqttd=info).
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WASMOPS_LOG").unwrap_or_else(|_| "warn,rumqttd=off".into())).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => keygen(&out).map(|(s, p)| eprintln!("wrote {} (secret, mode 0600) and {}", s.display(), p.display())),
        Command::Build { model, out, pipeline, name, version, input_shapes, training_data, guest, claims, cache } => {
            build(&model, &out, pipeline.as_deref(), name, version, input_shapes, training_data.as_deref(), guest.as_deref(), &claims, &cache)
        }
        Command::Sign { wasm, key, out, delegation } => sign(&wasm, &key, out.as_deref(), delegation.as_deref()),
        Command::Verify { wasm, trust } => verify(&wasm, &trust),
        Command::Trust { command } => wasmops_cli::trust::run(command),
        Command::Run { wasm, input, host } => run(&wasm, &input, &host).map(|json| println!("{json}")),
        Command::Inspect { wasm, json, host } => inspect(&wasm, json, &host),
        Command::Bench { wasm, model, against, pipeline, input, batch, seconds } => (|| {
            let component = files::read(&wasm)?;
            let mut opts = bench::BenchOptions { batch, budget: Duration::from_secs_f64(seconds), pipeline: bench::read_pipeline(pipeline.as_deref())?, ..Default::default() };
            if let Some(input) = input {
                opts.inputs = Some(std::fs::read_to_string(&input).with_context(|| format!("cannot read {}", input.display()))?);
            }
            match (against, model) {
                (Some(against), _) => bench::print_comparison(&bench::compare(&component, &files::read(&against)?, &opts)?),
                (None, Some(model)) => {
                    let name = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    bench::print(&bench::run(&component, &files::read(&model)?, &name, &opts)?)
                }
                (None, None) => bail!("pass --model MODEL.onnx (the native baseline) or --against OTHER.wasm"),
            }
            Ok(())
        })(),
        Command::Demo { dir, devices, exit } => demo(dir, devices, exit),
        Command::Rollout { command, conn } => wasmops_cli::rollout::rollout(&conn, command),
        Command::Telemetry { since_ms, conn } => (|| {
            println!("{}", serde_json::to_string_pretty(&conn.get(&format!("/v1/telemetry?since_ms={since_ms}"))?)?);
            Ok(())
        })(),
        Command::Fleet { command } => fleet(command),
        Command::Coordinator { data_dir, database, artifacts, listen, max_artifact_mb, mqtt, mqtt_listen, webhooks, telemetry_retention_hours, trust } => (|| {
            let trust = trust.policy()?.context("the coordinator needs to know whom to trust: --root ROOT.pub --trust-dir DIR, or --trust KEY.pub")?;
            let mqtt = match mqtt {
                Some(url) => wasmops_cloud::MqttConfig::External(url),
                None => wasmops_cloud::MqttConfig::Embedded(mqtt_listen),
            };
            let telemetry_retention = Duration::from_secs(telemetry_retention_hours.saturating_mul(3600));
            let config = wasmops_cloud::CoordinatorConfig { data_dir, database, artifacts, listen, trust, max_artifact_bytes: max_artifact_mb << 20, mqtt, webhooks, telemetry_retention };
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(wasmops_cloud::serve(config, async {
                let _ = tokio::signal::ctrl_c().await;
            }))
        })(),
        Command::Agent { config } => (|| {
            let config = wasmops_devices::agent::AgentConfig::from_file(&config)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(wasmops_devices::agent::run(config, async {
                let _ = tokio::signal::ctrl_c().await;
            }))
        })(),
        Command::Deploy { model, version, devices, selector, probe, wait, conn } => wasmops_cli::coordinator_client::deploy(&conn, &model, &version, &devices, &selector, probe.as_deref(), wait),
        Command::Devices { json, conn } => wasmops_cli::coordinator_client::devices(&conn, json),
        Command::Model { command, conn } => wasmops_cli::coordinator_client::model(&conn, command),
        Command::Enrolment { devices, valid_for_s, conn } => (|| {
            let r: serde_json::Value = conn.send(conn.request(reqwest::Method::POST, "/v1/enrolments")?.json(&serde_json::json!({"devices": devices, "valid_for_s": valid_for_s})))?.json()?;
            eprintln!("enrolment token for `{devices}`, valid until {} ms; shown only once:", r["expires_at_ms"]);
            println!("{}", r["token"].as_str().unwrap_or_default());
            Ok(())
        })(),
        Command::Token { name, role, conn } => wasmops_cli::coordinator_client::create_token(&conn, &name, &role),
        Command::Audit { limit, json, conn } => wasmops_cli::coordinator_client::audit(&conn, limit, json),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
