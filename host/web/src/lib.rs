//! `wasmops web`: one signed model component as a static bundle a browser runs.
//!
//! Data path, at build time (here): signed `model.wasm` → jco's transpiler
//! (Node, `js/transpile.mjs`) → the ES glue `model/model.js`; each core module
//! jco cut out is matched to its section of the signed component and dropped
//! (the page cuts them from the verified bytes itself) → the bundle:
//!
//! ```text
//! DIR/index.html      demo page: a form from the model's inputs, outputs, timings
//! DIR/wasmops.js      the page API: load(url, trust) → {metadata(), predict(inputs)}
//! DIR/worker.js       the module Worker the model runs in, around engine.js
//! DIR/engine.js       fetch → verify → compile → instantiate → predict (in the
//!                     Worker, or on the page's thread with `{inline: true}`)
//! DIR/verifier.js     glue of verifier.wasm (host/web/verifier: the host's trust
//!                     check, and the agent's telemetry counting)
//! DIR/tensors.js      `run`'s JSON ⇄ the WIT tensors, typed and checked
//! DIR/model/model.js  jco's glue, with modules.json: core file → section index
//! DIR/shim/*.js       @bytecodealliance/preview2-shim's browser WASI
//! DIR/model.wasm      the signed component, byte for byte
//! DIR/trust.json      whom the demo page trusts (a PortableTrust document)
//! DIR/config.json     the demo page's telemetry settings ({} : off)
//! ```
//!
//! In the page: the engine (in `worker.js`) fetches `model.wasm`, `verifier.wasm` checks it
//! against the trust document with the browser's clock, and only then are the
//! core modules compiled, from slices of the bytes just verified.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;
use wasmops_trust::PortableTrust;

/// The page's files, kept beside this crate so they read as JavaScript.
const ASSETS: &[(&str, &str)] = &[
    ("index.html", include_str!("../assets/index.html")),
    ("wasmops.js", include_str!("../assets/wasmops.js")),
    ("worker.js", include_str!("../assets/worker.js")),
    ("engine.js", include_str!("../assets/engine.js")),
    ("verifier.js", include_str!("../assets/verifier.js")),
    ("tensors.js", include_str!("../assets/tensors.js")),
];

/// The jco-transpile package whose presence says the build tools are installed.
const TRANSPILER: &str = "node_modules/@bytecodealliance/jco-transpile/package.json";
/// preview2-shim's browser build, copied into every bundle.
const SHIM_DIR: &str = "node_modules/@bytecodealliance/preview2-shim/dist/browser";

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("the build tools of `wasmops web` are missing: {0}")]
    Tools(String),
    #[error("jco could not transpile the component: {0}")]
    Transpile(String),
    #[error("the component is not a wasmops model component: {0}")]
    NotAComponent(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WebError + '_ {
    move |e| WebError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Where the build tools are: Node and the npm package in `js/`.
#[derive(Debug, Clone)]
pub struct Tools {
    pub node: PathBuf,
    pub npm: PathBuf,
    /// A directory holding `package.json`, `package-lock.json` and
    /// `transpile.mjs` (this crate's `js/`).
    pub js_dir: PathBuf,
}

impl Default for Tools {
    fn default() -> Tools {
        Tools {
            node: "node".into(),
            npm: "npm".into(),
            js_dir: std::env::var_os("WASMOPS_WEB_JS")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("js")),
        }
    }
}

impl Tools {
    /// Installs the pinned npm packages (`npm ci`) when they are missing.
    pub fn ensure(&self) -> Result<(), WebError> {
        if self.js_dir.join(TRANSPILER).is_file() {
            return Ok(());
        }
        if !self.js_dir.join("package-lock.json").is_file() {
            return Err(WebError::Tools(format!(
                "{} holds no package-lock.json (set WASMOPS_WEB_JS to wasmops' host/web/js)",
                self.js_dir.display()
            )));
        }
        npm_ci(&self.npm, &self.js_dir)?;
        if !self.js_dir.join(TRANSPILER).is_file() {
            return Err(WebError::Tools(format!(
                "`npm ci` left {} without jco-transpile",
                self.js_dir.display()
            )));
        }
        Ok(())
    }
}

/// `npm ci --prefix DIR`: the packages pinned by DIR's package-lock.json.
pub fn npm_ci(npm: &Path, dir: &Path) -> Result<(), WebError> {
    let status = Command::new(npm)
        .args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(dir)
        .status()
        .map_err(|e| WebError::Tools(format!("cannot run {}: {e}", npm.display())))?;
    if !status.success() {
        return Err(WebError::Tools(format!(
            "`npm ci --prefix {}` failed ({status})",
            dir.display()
        )));
    }
    Ok(())
}

/// What goes into a bundle.
pub struct Bundle<'a> {
    /// The signed component, shipped byte for byte.
    pub component: &'a [u8],
    /// Whom the demo page trusts.
    pub trust: &'a PortableTrust,
    /// `verifier.wasm` (`wasmops-web-verifier` for `wasm32-unknown-unknown`).
    pub verifier: &'a [u8],
    /// Where the demo page reports telemetry (none: it does not).
    pub telemetry: Option<&'a Telemetry>,
}

/// The demo page's telemetry settings, written to `config.json` (`{}` when
/// off). The token is a device credential (`device:{device}`, role device:
/// it may download artifacts and post this device's telemetry, nothing
/// else); anyone who can load the page can read it.
#[derive(Debug, Clone, Serialize)]
pub struct Telemetry {
    /// The coordinator's base URL, as the browser reaches it.
    pub coordinator: String,
    pub device: String,
    pub token: String,
    /// Seconds between reports.
    pub every_s: u64,
    /// Raw input rows kept per window (0: none).
    pub sample_rows: usize,
}

/// What was written: each file and its size (what a browser downloads is
/// measured in the browser: `wasmops web-bench`).
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub files: Vec<(String, u64)>,
    /// jco's import list: the WASI interfaces the shims provide.
    pub imports: Vec<String>,
    /// SIMD instructions in the largest core module: the page runs the
    /// component's own modules, so this is what the browser compiles.
    pub simd_instructions: usize,
}

#[derive(serde::Deserialize)]
struct Transpiled {
    files: Vec<String>,
    imports: Vec<String>,
}

/// Writes the bundle for `bundle` into `out` (created; files already there
/// under the same names are replaced).
pub fn write(bundle: &Bundle, tools: &Tools, out: &Path) -> Result<Written, WebError> {
    tools.ensure()?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let scratch = tempfile::tempdir().map_err(io(out))?;
    let component_path = scratch.path().join("model.wasm");
    std::fs::write(&component_path, bundle.component).map_err(io(&component_path))?;
    let glue = scratch.path().join("model");
    let output = Command::new(&tools.node)
        .arg(tools.js_dir.join("transpile.mjs"))
        .arg(&component_path)
        .arg(&glue)
        .output()
        .map_err(|e| WebError::Tools(format!("cannot run {}: {e}", tools.node.display())))?;
    if !output.status.success() {
        return Err(WebError::Transpile(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let transpiled: Transpiled = serde_json::from_slice(&output.stdout)
        .map_err(|e| WebError::Transpile(format!("unreadable transpiler output: {e}")))?;

    // Each core module jco wrote must be a section of the signed component:
    // the page compiles that section, never a file beside it.
    let sections = wasmops_sign::sections(bundle.component)
        .map_err(|e| WebError::NotAComponent(e.to_string()))?;
    let modules: Vec<&[u8]> = sections
        .iter()
        .filter(|s| s.id == 1)
        .map(|s| s.contents)
        .collect();
    let model_dir = out.join("model");
    std::fs::create_dir_all(&model_dir).map_err(io(&model_dir))?;
    let mut cores = serde_json::Map::new();
    for file in &transpiled.files {
        let path = glue.join(file);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if file.ends_with(".wasm") {
            let index = modules
                .iter()
                .position(|m| *m == bytes.as_slice())
                .ok_or_else(|| {
                    WebError::Transpile(format!(
                        "jco's core module {file} is not one of the component's {} core modules byte for byte",
                        modules.len()
                    ))
                })?;
            cores.insert(file.clone(), index.into());
        } else if file.ends_with(".js") {
            let dest = model_dir.join(file);
            std::fs::write(&dest, bytes).map_err(io(&dest))?;
        }
    }
    let modules_json = model_dir.join("modules.json");
    let manifest = serde_json::json!({"cores": cores, "imports": transpiled.imports});
    std::fs::write(&modules_json, manifest.to_string()).map_err(io(&modules_json))?;

    let shim_src = tools.js_dir.join(SHIM_DIR);
    let shim = out.join("shim");
    std::fs::create_dir_all(&shim).map_err(io(&shim))?;
    for entry in std::fs::read_dir(&shim_src).map_err(io(&shim_src))? {
        let path = entry.map_err(io(&shim_src))?.path();
        if path.extension().is_some_and(|e| e == "js") {
            let dest = shim.join(path.file_name().unwrap());
            std::fs::copy(&path, &dest).map_err(io(&dest))?;
        }
    }
    for (name, text) in ASSETS {
        let dest = out.join(name);
        std::fs::write(&dest, text).map_err(io(&dest))?;
    }
    for (name, bytes) in [
        ("model.wasm", bundle.component.to_vec()),
        ("verifier.wasm", bundle.verifier.to_vec()),
        ("trust.json", bundle.trust.to_json().into_bytes()),
        ("config.json", config_json(bundle.telemetry)),
    ] {
        let dest = out.join(name);
        std::fs::write(&dest, bytes).map_err(io(&dest))?;
    }
    let largest = modules
        .iter()
        .max_by_key(|m| m.len())
        .copied()
        .unwrap_or(&[]);
    Ok(Written {
        files: list(out)?,
        imports: transpiled.imports,
        simd_instructions: simd_instructions(largest)?,
    })
}

fn config_json(telemetry: Option<&Telemetry>) -> Vec<u8> {
    match telemetry {
        Some(t) => serde_json::json!({ "telemetry": t }),
        None => serde_json::json!({}),
    }
    .to_string()
    .into_bytes()
}

/// Instructions with the SIMD prefix (0xfd) in a core module's code.
pub fn simd_instructions(module: &[u8]) -> Result<usize, WebError> {
    let bad =
        |e: wasmparser::BinaryReaderError| WebError::NotAComponent(format!("core module: {e}"));
    let mut n = 0;
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::CodeSectionEntry(body) = payload.map_err(bad)? {
            let mut ops = body.get_operators_reader().map_err(bad)?;
            while !ops.eof() {
                // Operators are read relative to the module's own bytes.
                let at = ops.original_position();
                n += usize::from(module.get(at) == Some(&0xfd));
                ops.read().map_err(bad)?;
            }
        }
    }
    Ok(n)
}

/// Every file under `dir`, relative, with its size, sorted.
fn list(dir: &Path) -> Result<Vec<(String, u64)>, WebError> {
    let mut out = vec![];
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).map_err(io(&d))? {
            let entry = entry.map_err(io(&d))?;
            let meta = entry.metadata().map_err(io(&d))?;
            if meta.is_dir() {
                todo.push(entry.path());
            } else {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, meta.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}
