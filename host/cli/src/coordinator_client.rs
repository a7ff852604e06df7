//! `wasmops model …`, `wasmops token …`, `wasmops audit`: the coordinator's HTTP
//! API from the command line.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;

#[derive(Args, Clone)]
pub struct Connection {
    /// Coordinator URL.
    #[arg(long, global = true, env = "WASMOPS_COORDINATOR", default_value = "http://127.0.0.1:8080")]
    pub coordinator: String,
    /// API token (or WASMOPS_TOKEN, or --token-file).
    #[arg(long, global = true, env = "WASMOPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ModelCommand {
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
    Tag { name: String, version: String, tag: String },
    /// Download a version's component (resumes a partial download; checks sha256).
    Pull {
        name: String,
        /// Version or alias.
        version: String,
        #[arg(long)]
        out: PathBuf,
    },
}

impl Connection {
    pub fn token(&self) -> Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        if let Some(p) = &self.token_file {
            return Ok(std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?.trim().to_string());
        }
        bail!("no API token: pass --token, --token-file or set WASMOPS_TOKEN")
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> Result<RequestBuilder> {
        let client = Client::builder().timeout(std::time::Duration::from_secs(300)).build()?;
        Ok(client.request(method, format!("{}{path}", self.coordinator.trim_end_matches('/'))).bearer_auth(self.token()?))
    }

    /// Sends, and turns an error status into the API's error message.
    pub fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().with_context(|| format!("cannot reach the coordinator at {}", self.coordinator))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        bail!("{status}: {}", body["error"].as_str().unwrap_or("(no message)"))
    }

    pub fn get(&self, path: &str) -> Result<Value> {
        Ok(self.send(self.request(reqwest::Method::GET, path)?)?.json()?)
    }
}

fn seg(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>().replace('+', "%20")
}

pub fn model(conn: &Connection, cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Register { wasm } => {
            let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            let resp = conn.send(conn.request(reqwest::Method::POST, "/v1/models")?.header("content-type", "application/wasm").body(bytes))?;
            let created = resp.status() == reqwest::StatusCode::CREATED;
            let r: Value = resp.json()?;
            let v = &r["version"];
            println!(
                "{} {} {} (sequence {}, sha256 {}, signed by {})",
                if created { "registered" } else { "already registered:" },
                v["name"].as_str().unwrap_or_default(),
                v["version"].as_str().unwrap_or_default(),
                v["sequence"],
                v["sha256"].as_str().unwrap_or_default(),
                v["signer"].as_str().unwrap_or_default()
            );
        }
        ModelCommand::List { json } => {
            let models = conn.get("/v1/models")?;
            if json {
                println!("{models}");
            } else {
                println!("{:<24} {:>8}  {:<12} aliases", "model", "versions", "latest");
                for m in models.as_array().into_iter().flatten() {
                    let aliases: Vec<String> = m["aliases"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
                    println!("{:<24} {:>8}  {:<12} {}", m["name"].as_str().unwrap_or_default(), m["versions"], m["latest_version"].as_str().unwrap_or("-"), aliases.join(" "));
                }
            }
        }
        ModelCommand::Show { name, version, json } => {
            let doc = match &version {
                Some(v) => conn.get(&format!("/v1/models/{}/versions/{}", seg(&name), seg(v)))?,
                None => conn.get(&format!("/v1/models/{}", seg(&name)))?,
            };
            if json {
                println!("{doc}");
            } else if version.is_some() {
                print_version(&doc);
            } else {
                for v in doc["versions"].as_array().into_iter().flatten() {
                    print_version(v);
                    println!();
                }
            }
        }
        ModelCommand::Alias { name, alias, version, delete } => {
            let path = format!("/v1/models/{}/aliases/{}", seg(&name), seg(&alias));
            if delete {
                conn.send(conn.request(reqwest::Method::DELETE, &path)?)?;
                println!("removed alias {alias} of {name}");
            } else {
                let version = version.context("give the VERSION the alias should point at (or --delete)")?;
                conn.send(conn.request(reqwest::Method::PUT, &path)?.json(&serde_json::json!({"version": version})))?;
                println!("{name}:{alias} → {version}");
            }
        }
        ModelCommand::Tag { name, version, tag } => {
            let (k, v) = tag.split_once('=').with_context(|| format!("tag `{tag}`: expected KEY=VALUE"))?;
            let path = format!("/v1/models/{}/versions/{}/tags/{}", seg(&name), seg(&version), seg(k));
            conn.send(conn.request(reqwest::Method::PUT, &path)?.json(&serde_json::json!({"value": v})))?;
            println!("{name}@{version}: {k}={v}");
        }
        ModelCommand::Pull { name, version, out } => {
            let v = conn.get(&format!("/v1/models/{}/versions/{}", seg(&name), seg(&version)))?;
            let sha = v["sha256"].as_str().context("no sha256 in the registry's answer")?.to_string();
            let size = v["size_bytes"].as_u64().unwrap_or(0);
            let http = reqwest::Client::new();
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let resumed = rt.block_on(wasmops_devices::download::download(&http, &conn.coordinator, &conn.token()?, &sha, size, u64::MAX, &out))?;
            println!("{} {} → {} ({size} bytes, sha256 verified{})", name, v["version"].as_str().unwrap_or_default(), out.display(), if resumed > 0 { format!(", resumed at byte {resumed}") } else { String::new() });
        }
    }
    Ok(())
}

fn print_version(v: &Value) {
    let c = &v["claims"];
    println!("{} {}  sequence {}  aliases {:?}", v["name"].as_str().unwrap_or_default(), v["version"].as_str().unwrap_or_default(), v["sequence"], v["aliases"]);
    println!("  sha256       {}  ({} bytes)", v["sha256"].as_str().unwrap_or_default(), v["size_bytes"]);
    println!("  signed by    {}{}", v["signer"].as_str().unwrap_or_default(), v["delegation"].as_str().map(|d| format!(" (delegation {d})")).unwrap_or_default());
    println!("  registered   by {} at {} ms", v["registered_by"].as_str().unwrap_or_default(), v["registered_at_ms"]);
    for (k, val) in c["lineage"].as_object().into_iter().flatten() {
        println!("  {k:<12} {}", val.as_str().unwrap_or_default());
    }
    for (k, val) in c["metrics"].as_object().into_iter().flatten() {
        println!("  metric {k:<5} {val}");
    }
    for (k, val) in v["tags"].as_object().into_iter().flatten() {
        println!("  tag {k} = {}", val.as_str().unwrap_or_default());
    }
}

pub fn create_token(conn: &Connection, name: &str, role: &str) -> Result<()> {
    let r: Value = conn.send(conn.request(reqwest::Method::POST, "/v1/tokens")?.json(&serde_json::json!({"name": name, "role": role})))?.json()?;
    eprintln!("created {} token `{}`; it is shown only once:", r["role"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default());
    println!("{}", r["token"].as_str().unwrap_or_default());
    Ok(())
}

pub fn audit(conn: &Connection, limit: u32, json: bool) -> Result<()> {
    let entries = conn.get(&format!("/v1/audit?limit={limit}"))?;
    if json {
        println!("{entries}");
        return Ok(());
    }
    for e in entries.as_array().into_iter().flatten() {
        println!("{:>6} {} {:<12} {:<16} {:<28} {}", e["id"], e["at_ms"], e["actor"].as_str().unwrap_or_default(), e["action"].as_str().unwrap_or_default(), e["target"].as_str().unwrap_or_default(), e["detail"]);
    }
    Ok(())
}

/// `KEY=VALUE` flags as a JSON object.
pub fn parse_selector(selector: &[String]) -> Result<serde_json::Map<String, Value>> {
    let mut sel = serde_json::Map::new();
    for s in selector {
        let (k, v) = s.split_once('=').with_context(|| format!("--selector `{s}`: expected KEY=VALUE"))?;
        sel.insert(k.to_string(), Value::from(v));
    }
    Ok(sel)
}

/// A probe sample file (`{"inputs":[…]}`), if given.
pub fn read_probe(probe: Option<&std::path::Path>) -> Result<Option<Value>> {
    probe
        .map(|p| -> Result<Value> { serde_json::from_str(&std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?).with_context(|| format!("{} is not JSON", p.display())) })
        .transpose()
}

pub fn deploy(conn: &Connection, model: &str, version: &str, devices: &[String], selector: &[String], probe: Option<&std::path::Path>, wait: Option<u64>) -> Result<()> {
    if let Some(d) = deploy_and_wait(conn, model, version, devices, selector, probe, wait)? {
        println!("{d}");
    }
    Ok(())
}

/// Creates a deployment; with `wait`, follows it with a progress bar and returns its final state.
pub fn deploy_and_wait(conn: &Connection, model: &str, version: &str, devices: &[String], selector: &[String], probe: Option<&std::path::Path>, wait: Option<u64>) -> Result<Option<Value>> {
    let sel = parse_selector(selector)?;
    let probe = read_probe(probe)?;
    let body = serde_json::json!({"model": model, "version": version, "devices": devices, "selector": sel, "probe": probe});
    let dep: Value = conn.send(conn.request(reqwest::Method::POST, "/v1/deployments")?.json(&body))?.json()?;
    let id = dep["id"].as_str().unwrap_or_default().to_string();
    let n = dep["targets"].as_array().map(|t| t.len()).unwrap_or(0);
    eprintln!("deployment {id}: {} {} to {n} device(s)", dep["model"].as_str().unwrap_or_default(), dep["version"].as_str().unwrap_or_default());
    let Some(secs) = wait else {
        println!("{id}");
        return Ok(None);
    };
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} devices done {msg}").expect("valid template"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let d = conn.get(&format!("/v1/deployments/{id}"))?;
        let targets = d["targets"].as_array().cloned().unwrap_or_default();
        let done = targets.iter().filter(|t| t["state"] == "active" || t["state"] == "failed").count();
        let failed: Vec<String> = targets.iter().filter(|t| t["state"] == "failed").map(|t| format!("{}: {}", t["device"].as_str().unwrap_or_default(), t["error"].as_str().unwrap_or_default())).collect();
        bar.set_position(done as u64);
        bar.set_message(if failed.is_empty() { String::new() } else { format!("({} failed)", failed.len()) });
        if done == targets.len() {
            bar.finish();
            if !failed.is_empty() {
                bail!("deployment {id} failed on {} device(s):\n  {}", failed.len(), failed.join("\n  "));
            }
            return Ok(Some(d));
        }
        if std::time::Instant::now() > deadline {
            bar.abandon();
            bail!("deployment {id}: {done}/{} devices done after {secs} s", targets.len());
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

pub fn devices(conn: &Connection, json: bool) -> Result<()> {
    let list = conn.get("/v1/devices")?;
    if json {
        println!("{list}");
        return Ok(());
    }
    println!("{:<24} {:<8} {:<24} labels", "device", "state", "active");
    for d in list.as_array().into_iter().flatten() {
        let active = match (d["active_model"].as_str(), d["active_version"].as_str()) {
            (Some(m), Some(v)) => format!("{m} {v}"),
            _ => "-".into(),
        };
        let labels: Vec<String> = d["labels"].as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
        println!("{:<24} {:<8} {:<24} {}", d["id"].as_str().unwrap_or_default(), d["state"].as_str().unwrap_or_default(), active, labels.join(" "));
    }
    Ok(())
}
