//! `wasmops inspect`: what a component takes and returns, its claims and preprocessing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use wasmops_trust::Claims;

use wasmops_runtime::tensors_json::{dims, specs_json, type_name};

use crate::args::HostArgs;
use crate::files;

/// Print what a component takes and returns, and its preprocessing.
#[derive(Parser)]
pub struct InspectCommand {
    pub wasm: PathBuf,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub host: HostArgs,
}

impl InspectCommand {
    pub fn execute(self) -> Result<()> {
        inspect(&self.wasm, self.json, &self.host)
    }
}

pub fn inspect(wasm: &Path, json: bool, host: &HostArgs) -> Result<()> {
    let bytes = files::read(wasm)?;
    if !host.allow_unsigned && host.trust.policy()?.is_none() {
        return inspect_unverified(wasm, &bytes, json);
    }
    let host = host.host()?;
    let loaded = host
        .load(&bytes)
        .with_context(|| format!("cannot load {}", wasm.display()))?;
    let info = loaded.instantiate()?.metadata()?;
    // Signed claims when the policy checked them; otherwise what the file says.
    let claims = match loaded.accepted.as_ref().and_then(|a| a.claims.clone()) {
        Some(c) => Some(c),
        None => Claims::read(&bytes)?,
    };
    let doc = serde_json::json!({
        "name": info.name,
        "version": info.version,
        "sha256": loaded.sha256,
        "size_bytes": loaded.size_bytes,
        "signed_by": loaded.accepted.as_ref().map(|a| a.verified.key_id.clone()),
        "delegation": loaded.accepted.as_ref().and_then(|a| a.delegation.clone()),
        "claims": claims,
        "inputs": specs_json(&info.inputs),
        "outputs": specs_json(&info.outputs),
        "preprocessing": info.preprocessing,
    });
    if json {
        println!("{doc}");
    } else {
        println!(
            "{} {}  ({} bytes, sha256 {})",
            info.name, info.version, loaded.size_bytes, loaded.sha256
        );
        if let Some(a) = &loaded.accepted {
            let via = a
                .delegation
                .as_ref()
                .map(|d| format!(" (delegation `{d}`)"))
                .unwrap_or_default();
            println!("signed by key {}{via}", a.verified.key_id);
        }
        if let Some(c) = &claims {
            print_claims(c);
        }
        for (title, list) in [("inputs", &info.inputs), ("outputs", &info.outputs)] {
            println!("{title}:");
            for s in list {
                println!(
                    "  {:<16} {:<8} [{}]",
                    s.name,
                    type_name(s.element_type),
                    dims(&s.shape).join(", ")
                );
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
    let signed = wasmops_sign::sections(bytes)?
        .first()
        .and_then(|s| s.custom_name())
        == Some(wasmops_sign::SIGNATURE_SECTION);
    let claims = Claims::read(bytes)?;
    if json {
        println!(
            "{}",
            serde_json::json!({"verified": false, "signed": signed, "size_bytes": bytes.len(), "claims": claims})
        );
        return Ok(());
    }
    println!(
        "{}  ({} bytes, {})",
        wasm.display(),
        bytes.len(),
        if signed { "signed" } else { "NOT signed" }
    );
    println!(
        "UNVERIFIED: pass --trust KEY.pub or --root ROOT.pub --trust-dir DIR to check the signature and show inputs and outputs"
    );
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
    println!(
        "  created          {}{}",
        c.created_at,
        c.expires_at
            .map(|e| format!(", expires {e}"))
            .unwrap_or_default()
    );
    println!("  model sha256     {}", c.model_sha256);
    println!("  pipeline sha256  {}", c.pipeline_sha256);
    let l = &c.lineage;
    for (k, v) in [
        ("dataset", &l.dataset_id),
        ("dataset sha256", &l.dataset_sha256),
        ("training run", &l.training_run),
        ("code commit", &l.code_commit),
    ] {
        if let Some(v) = v {
            println!("  {k:<16} {v}");
        }
    }
    for (k, v) in &c.metrics {
        println!("  metric {k:<9} {v}");
    }
    println!("  capabilities     {}", c.capabilities.join(", "));
    if let Some(p) = &c.profile {
        print_profile(p);
    }
}

/// The reference profile, one line a column (at most 50 per part).
fn print_profile(p: &wasmops_profile::Profile) {
    println!(
        "profile of {} training rows{}:",
        p.rows,
        p.input
            .as_ref()
            .map(|i| format!(" (features of input `{i}`)"))
            .unwrap_or_default()
    );
    let parts = [
        ("input", p.columns.iter().collect::<Vec<_>>()),
        ("label", p.label.iter().collect()),
        ("output", p.outputs.iter().collect()),
    ];
    for (part, columns) in parts {
        for c in columns.iter().take(50) {
            let missing = c.missing as f64 / c.rows.max(1) as f64 * 100.0;
            let shape = if c.is_categorical() {
                let mut top: Vec<(&String, &u64)> = c.domain.iter().collect();
                top.sort_by(|a, b| b.1.cmp(a.1));
                let shown: Vec<String> = top
                    .iter()
                    .take(4)
                    .map(|(k, n)| format!("{k}:{n}"))
                    .collect();
                format!(
                    "{} values ({}{})",
                    c.distinct,
                    shown.join(" "),
                    if top.len() > 4 { " …" } else { "" }
                )
            } else {
                let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.4}"));
                format!(
                    "range {} … {}, mean {} std {}, {} bins",
                    f(c.min),
                    f(c.max),
                    f(c.mean),
                    f(c.std),
                    c.edges.len() + 1
                )
            };
            println!(
                "  {part:<6} {:<20} {:<11} missing {missing:>5.1}%  {shape}",
                c.name,
                format!("{:?}", c.kind).to_lowercase(),
            );
        }
        if columns.len() > 50 {
            println!(
                "  {part:<6} … and {} more columns (--json shows all)",
                columns.len() - 50
            );
        }
    }
}
