//! `wasmops web`: a signed model component as a static bundle for browsers
//! (`wasmops_web`); `wasmops serve --web DIR` serves it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use wasmops_trust::PortableTrust;

use crate::args::KeyArgs;
use crate::files;

/// Write a browser bundle: the component transpiled for JavaScript (jco, at
/// build time), the WASI shims, the verifier compiled to wasm, `wasmops.js`
/// (load, predict, metadata in a module Worker) and a demo page. The page
/// verifies the signature and claims against the given trust before it runs
/// anything. Needs Node and npm here; the browser needs only the files.
#[derive(Parser)]
pub struct WebCommand {
    /// The signed model component.
    pub wasm: PathBuf,
    /// Where the bundle goes (created).
    #[arg(long)]
    pub out: PathBuf,
    /// Whom the demo page trusts (written to trust.json).
    #[command(flatten)]
    pub keys: KeyArgs,
    /// The coordinator the demo page reports telemetry to, as browsers reach
    /// it (e.g. https://coordinator.example:8443). Telemetry is off without it.
    #[arg(long, requires_all = ["device", "token"])]
    pub coordinator: Option<String>,
    /// The device id the page reports as (make its credential with `wasmops
    /// token create --name device:ID --role device`).
    #[arg(long, requires = "coordinator")]
    pub device: Option<String>,
    /// That device's token. It ships in config.json: anyone who loads the
    /// page can read it, and it may only post this device's telemetry and
    /// download artifacts.
    #[arg(long, requires = "coordinator")]
    pub token: Option<String>,
    /// Seconds between the page's telemetry reports.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub report_every_s: u64,
    /// Raw input rows each report keeps as a sample (0: none).
    #[arg(long, default_value_t = 0)]
    pub sample_rows: usize,
}

impl WebCommand {
    pub fn execute(self) -> Result<()> {
        let telemetry = match (&self.coordinator, &self.device, &self.token) {
            (Some(coordinator), Some(device), Some(token)) => Some(wasmops_web::Telemetry {
                coordinator: coordinator.clone(),
                device: device.clone(),
                token: token.clone(),
                every_s: self.report_every_s,
                sample_rows: self.sample_rows,
            }),
            _ => None,
        };
        let bundled = write_bundle(&self.wasm, &self.keys, &self.out, telemetry.as_ref())?;
        let (accepted, written) = (&bundled.accepted, &bundled.written);
        let total: u64 = written.files.iter().map(|(_, n)| n).sum();
        println!(
            "wrote {} ({} files, {:.2} MB) for {} signed by {}; SIMD instructions in its main core module: {}",
            self.out.display(),
            written.files.len(),
            total as f64 / 1e6,
            accepted
                .claims
                .as_ref()
                .map(|c| format!("{} {}", c.name, c.version))
                .unwrap_or_else(|| self.wasm.display().to_string()),
            accepted.verified.key_id,
            written.simd_instructions,
        );
        if let Some(t) = &telemetry {
            println!(
                "the demo page reports telemetry as device `{}` to {} every {} s",
                t.device, t.coordinator, t.every_s
            );
        }
        println!("serve it: wasmops serve --web {}", self.out.display());
        Ok(())
    }
}

/// What [`write_bundle`] wrote, and what it checked first.
pub struct Bundled {
    pub accepted: wasmops_trust::Accepted,
    pub trust: PortableTrust,
    pub written: wasmops_web::Written,
}

/// Checks the component at `wasm` against `keys` (refusing here what the
/// page would refuse there) and writes its bundle to `out`; `web` and
/// `web-bench` both start here.
pub fn write_bundle(
    wasm: &Path,
    keys: &KeyArgs,
    out: &Path,
    telemetry: Option<&wasmops_web::Telemetry>,
) -> Result<Bundled> {
    let component = files::read(wasm)?;
    let policy = keys.policy()?.context(
        "a page must know whom to trust: pass --trust KEY.pub or --root ROOT.pub --trust-dir DIR",
    )?;
    let accepted = policy
        .check(&component)
        .with_context(|| format!("{} is not trusted", wasm.display()))?;
    let trust = PortableTrust::from_policy(&policy);
    let bundle = wasmops_web::Bundle {
        component: &component,
        trust: &trust,
        verifier: wasmops_guest_artifacts::WEB_VERIFIER,
        telemetry,
    };
    let written = wasmops_web::write(&bundle, &wasmops_web::Tools::default(), out)
        .with_context(|| format!("cannot write the bundle to {}", out.display()))?;
    Ok(Bundled {
        accepted,
        trust,
        written,
    })
}
