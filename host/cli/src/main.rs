//! `wasmops`: build, sign, verify, run and benchmark ML model components.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use wasmops_build::{BuildOptions, InputShape};
use wasmops_cli::{bench, files, tensors};
use wasmops_host::{Host, HostConfig, SignaturePolicy};
use wasmops_sign::{PublicKey, SecretKey};

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
        /// Use this generic guest instead of the built-in one (guest development).
        #[arg(long, hide = true)]
        guest: Option<PathBuf>,
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
    },
    /// Check a component's signature; exit 0 when valid.
    Verify {
        wasm: PathBuf,
        /// Trusted public key file(s).
        #[arg(long, required = true)]
        trust: Vec<PathBuf>,
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
    Bench {
        wasm: PathBuf,
        /// The ONNX model the component was built from (the native baseline).
        #[arg(long)]
        model: PathBuf,
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
    /// Build, sign, verify and run the bundled example model.
    Demo {
        /// Where to leave the demo's keys and component (a temporary directory by default).
        #[arg(long)]
        dir: Option<PathBuf>,
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

#[derive(Args, Clone)]
struct HostArgs {
    /// Trusted public key file(s); the component must be signed by one of them.
    #[arg(long)]
    trust: Vec<PathBuf>,
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
        let signatures = if self.allow_unsigned {
            eprintln!("WARNING: --allow-unsigned: signature checks are OFF; never use this in production");
            SignaturePolicy::AllowUnsigned
        } else if self.trust.is_empty() {
            bail!("no trusted key: pass --trust KEY.pub (or --allow-unsigned during development)");
        } else {
            SignaturePolicy::Trusted(self.trust.iter().map(|p| read_public(p)).collect::<Result<_>>()?)
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

fn read_public(path: &Path) -> Result<PublicKey> {
    PublicKey::from_bytes(&files::read(path)?).with_context(|| format!("{}", path.display()))
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
fn build(model: &Path, out: &Path, pipeline: Option<&Path>, name: Option<String>, version: String, input_shapes: Vec<InputShape>, guest: Option<&Path>, cache: &CacheArgs) -> Result<()> {
    let onnx = files::read(model)?;
    let pipeline = match pipeline {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        None => String::new(),
    };
    let name = name.unwrap_or_else(|| model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into()));
    let guest = guest.map(files::read).transpose()?;
    let opts = BuildOptions { name, version, pipeline, input_shapes, cache_dir: cache.dir(), guest };
    let built = wasmops_build::build(&onnx, &opts).with_context(|| format!("cannot build {}", model.display()))?;
    files::write_atomic(out, &built.component)?;
    eprintln!(
        "built {} ({:.2} MB; model as NNEF {:.2} MB; convert {:.2}s, snapshot {:.2}s)",
        out.display(),
        built.component.len() as f64 / 1e6,
        built.nnef_bytes as f64 / 1e6,
        built.convert_time.as_secs_f64(),
        built.snapshot_time.as_secs_f64()
    );
    Ok(())
}

fn sign(wasm: &Path, key: &Path, out: Option<&Path>) -> Result<()> {
    let key = SecretKey::from_bytes(&files::read(key)?).with_context(|| format!("{}", key.display()))?;
    let signed = wasmops_sign::sign(&files::read(wasm)?, &key).with_context(|| format!("cannot sign {}", wasm.display()))?;
    let out = out.unwrap_or(wasm);
    files::write_atomic(out, &signed)?;
    eprintln!("signed {} with key {}", out.display(), key.public().key_id());
    Ok(())
}

fn verify(wasm: &Path, trust: &[PathBuf]) -> Result<()> {
    let keys = trust.iter().map(|p| read_public(p)).collect::<Result<Vec<_>>>()?;
    let v = wasmops_sign::verify(&files::read(wasm)?, &keys).with_context(|| format!("{} is not trusted", wasm.display()))?;
    println!("{}: valid signature by key {} (content sha256 {})", wasm.display(), v.key_id, hex::encode(v.content_sha256));
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
    let host = host.host()?;
    let loaded = host.load_file(wasm)?;
    let info = loaded.instantiate()?.metadata()?;
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
        "signed_by": loaded.verified.as_ref().map(|v| v.key_id.clone()),
        "inputs": specs(&info.inputs),
        "outputs": specs(&info.outputs),
        "preprocessing": info.preprocessing,
    });
    if json {
        println!("{doc}");
    } else {
        println!("{} {}  ({} bytes, sha256 {})", info.name, info.version, loaded.size_bytes, loaded.sha256);
        if let Some(v) = &loaded.verified {
            println!("signed by key {}", v.key_id);
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

const DEMO_MODEL: &[u8] = include_bytes!("../../../tests/fixtures/tabular_pipeline/model.onnx");
const DEMO_PIPELINE: &str = include_str!("../../../tests/fixtures/tabular_pipeline/pipeline.toml");
const DEMO_INPUT: &str = r#"{"inputs":[
  {"name":"X","shape":[3,3],"data":[52.0, 61.5, 2, 33.0, null, 0, 47.5, 38.0, 1]},
  {"name":"color","shape":[3],"data":["red","blue","green"]}
]}"#;

fn demo(dir: Option<PathBuf>) -> Result<()> {
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
    let step = |n: u32, what: &str| eprintln!("[{n}/5] {what}");
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
    build(&model, &wasm, Some(&pipeline), Some("churn".into()), "1.0.0".into(), vec![], None, &cache)?;
    step(4, "wasmops sign churn.wasm --key release.key && wasmops verify churn.wasm --trust release.pub");
    sign(&wasm, &secret, None)?;
    verify(&wasm, std::slice::from_ref(&public))?;
    step(5, "wasmops run churn.wasm --trust release.pub --input customers.json");
    let host = HostArgs { trust: vec![public], allow_unsigned: false, memory_limit_mb: 256, deadline_ms: 10_000, cache };
    inspect(&wasm, false, &host)?;
    println!("input:  {}", DEMO_INPUT.split_whitespace().collect::<Vec<_>>().join(" "));
    println!("output: {}", run(&wasm, &input, &host)?);
    if keep {
        eprintln!("done; the key pair, model and component are in {}", dir.display());
    } else {
        eprintln!("done (pass --dir DIR to keep the key pair, model and component)");
    }
    Ok(())
}

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WASMOPS_LOG").unwrap_or_else(|_| "warn".into())).with_writer(std::io::stderr).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen { out } => keygen(&out).map(|(s, p)| eprintln!("wrote {} (secret, mode 0600) and {}", s.display(), p.display())),
        Command::Build { model, out, pipeline, name, version, input_shapes, guest, cache } => build(&model, &out, pipeline.as_deref(), name, version, input_shapes, guest.as_deref(), &cache),
        Command::Sign { wasm, key, out } => sign(&wasm, &key, out.as_deref()),
        Command::Verify { wasm, trust } => verify(&wasm, &trust),
        Command::Run { wasm, input, host } => run(&wasm, &input, &host).map(|json| println!("{json}")),
        Command::Inspect { wasm, json, host } => inspect(&wasm, json, &host),
        Command::Bench { wasm, model, pipeline, input, batch, seconds } => (|| {
            let component = files::read(&wasm)?;
            let onnx = files::read(&model)?;
            let mut opts = bench::BenchOptions { batch, budget: Duration::from_secs_f64(seconds), pipeline: bench::read_pipeline(pipeline.as_deref())?, ..Default::default() };
            if let Some(input) = input {
                opts.inputs = Some(std::fs::read_to_string(&input).with_context(|| format!("cannot read {}", input.display()))?);
            }
            let name = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            bench::print(&bench::run(&component, &onnx, &name, &opts)?);
            Ok(())
        })(),
        Command::Demo { dir } => demo(dir),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
