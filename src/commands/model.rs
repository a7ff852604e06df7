//! `wasmops model …`: the coordinator's model registry.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use wasmops_api::Version;

use crate::args::Connection;

/// The coordinator's model registry: register, list, show, alias, tag, pull.
#[derive(Parser)]
pub struct ModelCommand {
    #[command(subcommand)]
    pub command: ModelVerb,
    #[command(flatten)]
    pub conn: Connection,
}

#[derive(Subcommand)]
pub enum ModelVerb {
    /// Upload a signed component; the coordinator verifies it and records its claims.
    Register { wasm: PathBuf },
    /// All models with their latest version and aliases.
    List {
        #[arg(long)]
        json: bool,
    },
    /// A model's versions, or one version (number or alias) with its claims and lineage.
    Show {
        name: String,
        version: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Point an alias (champion, challenger, …) at a version, or remove it.
    Alias {
        name: String,
        alias: String,
        version: Option<String>,
        #[arg(long, conflicts_with = "version")]
        delete: bool,
    },
    /// Set a tag on a version: KEY=VALUE.
    Tag {
        name: String,
        version: String,
        tag: String,
    },
    /// Download a version's component (resumes a partial download; checks sha256).
    Pull {
        name: String,
        /// Version or alias.
        version: String,
        #[arg(long)]
        out: PathBuf,
    },
}

impl ModelCommand {
    pub fn execute(self) -> Result<()> {
        let api = self.conn.client()?;
        match self.command {
            ModelVerb::Register { wasm } => {
                let bytes = std::fs::read(&wasm)
                    .with_context(|| format!("cannot read {}", wasm.display()))?;
                let r = api.register(bytes)?;
                let v = &r.version;
                println!(
                    "{} {} {} (sequence {}, sha256 {}, signed by {})",
                    if r.created {
                        "registered"
                    } else {
                        "already registered:"
                    },
                    v.name,
                    v.version,
                    v.sequence,
                    v.sha256,
                    v.signer
                );
            }
            ModelVerb::List { json } => {
                let models = api.models()?;
                if json {
                    println!("{}", serde_json::to_string(&models)?);
                } else {
                    println!(
                        "{:<24} {:>8}  {:<12} aliases",
                        "model", "versions", "latest"
                    );
                    for m in models {
                        let aliases: Vec<String> =
                            m.aliases.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        println!(
                            "{:<24} {:>8}  {:<12} {}",
                            m.name,
                            m.versions,
                            m.latest_version.as_deref().unwrap_or("-"),
                            aliases.join(" ")
                        );
                    }
                }
            }
            ModelVerb::Show {
                name,
                version: Some(v),
                json,
            } => {
                let doc = api.version(&name, &v)?;
                if json {
                    println!("{}", serde_json::to_string(&doc)?);
                } else {
                    print_version(&doc);
                }
            }
            ModelVerb::Show {
                name,
                version: None,
                json,
            } => {
                let doc = api.model(&name)?;
                if json {
                    println!("{}", serde_json::to_string(&doc)?);
                } else {
                    for v in &doc.versions {
                        print_version(v);
                        println!();
                    }
                }
            }
            ModelVerb::Alias {
                name,
                alias,
                version,
                delete,
            } => {
                if delete {
                    api.delete_alias(&name, &alias)?;
                    println!("removed alias {alias} of {name}");
                } else {
                    let version = version
                        .context("give the VERSION the alias should point at (or --delete)")?;
                    api.set_alias(&name, &alias, &version)?;
                    println!("{name}:{alias} → {version}");
                }
            }
            ModelVerb::Tag { name, version, tag } => {
                let (k, v) = tag
                    .split_once('=')
                    .with_context(|| format!("tag `{tag}`: expected KEY=VALUE"))?;
                api.set_tag(&name, &version, k, v)?;
                println!("{name}@{version}: {k}={v}");
            }
            ModelVerb::Pull { name, version, out } => {
                let v = api.version(&name, &version)?;
                let size = u64::try_from(v.size_bytes).unwrap_or(0);
                let http = self.conn.tls()?.http().build()?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let request = wasmops_agent::download::Request {
                    coordinator: api.base(),
                    token: api.token(),
                    sha256: &v.sha256,
                    size,
                    max_bytes: u64::MAX,
                    out: &out,
                };
                let resumed = rt.block_on(wasmops_agent::download::download(&http, &request))?;
                println!(
                    "{} {} → {} ({size} bytes, sha256 verified{})",
                    name,
                    v.version,
                    out.display(),
                    if resumed > 0 {
                        format!(", resumed at byte {resumed}")
                    } else {
                        String::new()
                    }
                );
            }
        }
        Ok(())
    }
}

fn print_version(v: &Version) {
    let c = &v.claims;
    println!(
        "{} {}  sequence {}  aliases {:?}",
        v.name, v.version, v.sequence, v.aliases
    );
    println!("  sha256       {}  ({} bytes)", v.sha256, v.size_bytes);
    println!(
        "  signed by    {}{}",
        v.signer,
        v.delegation
            .as_deref()
            .map(|d| format!(" (delegation {d})"))
            .unwrap_or_default()
    );
    println!(
        "  registered   by {} at {} ms",
        v.registered_by, v.registered_at_ms
    );
    for (k, val) in c["lineage"].as_object().into_iter().flatten() {
        println!("  {k:<12} {}", val.as_str().unwrap_or_default());
    }
    for (k, val) in c["metrics"].as_object().into_iter().flatten() {
        println!("  metric {k:<5} {val}");
    }
    for (k, val) in &v.tags {
        println!("  tag {k} = {val}");
    }
}
