//! Flags several commands share: where compiled components are cached, whom
//! to trust, host limits, claims to embed, and how to reach the coordinator.
//! The binary is the only place that reads environment variables
//! (`WASMOPS_CACHE_DIR`, `WASMOPS_COORDINATOR`, `WASMOPS_TOKEN`, `WASMOPS_PROFILER`,
//! `WASMOPS_LOG`, `SOURCE_DATE_EPOCH`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use wasmops_runtime::{Host, HostConfig, Profiler, SignaturePolicy};
use wasmops_trust::TrustPolicy;
use wasmops_trust::claims::ClaimsFile;

/// `$WASMOPS_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmops`, else `~/.cache/wasmops`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WASMOPS_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("wasmops");
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/wasmops"))
        .unwrap_or_else(|| std::env::temp_dir().join("wasmops-cache"))
}

/// `WASMOPS_PROFILER=perfmap` or `jitdump` lets `perf` name guest functions.
pub fn profiler() -> Profiler {
    match std::env::var("WASMOPS_PROFILER").as_deref() {
        Ok("perfmap") => Profiler::PerfMap,
        Ok("jitdump") => Profiler::JitDump,
        _ => Profiler::None,
    }
}

#[derive(Args, Clone, Default)]
pub struct CacheArgs {
    /// Compiled-component cache (default: $WASMOPS_CACHE_DIR or ~/.cache/wasmops).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheArgs {
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            Some(self.cache_dir.clone().unwrap_or_else(default_cache_dir))
        }
    }
}

/// Claims `build` embeds besides the ones it computes (see `--claims` for a file).
#[derive(Args, Clone, Default)]
pub struct ClaimsArgs {
    /// TOML file with sequence, expires, [lineage], [metrics], capabilities; flags override it.
    #[arg(long)]
    pub claims: Option<PathBuf>,
    /// Monotonic release number for rollback protection (default: build time in seconds).
    #[arg(long)]
    pub sequence: Option<u64>,
    /// Expiry: RFC 3339 time or a duration such as 180d.
    #[arg(long)]
    pub expires: Option<String>,
    #[arg(long)]
    pub dataset_id: Option<String>,
    #[arg(long)]
    pub dataset_sha256: Option<String>,
    #[arg(long)]
    pub training_run: Option<String>,
    #[arg(long)]
    pub code_commit: Option<String>,
    /// Evaluation metric, e.g. auc=0.91; repeatable.
    #[arg(long = "metric", value_name = "NAME=VALUE")]
    pub metrics: Vec<String>,
    /// Extra capability to require from hosts; repeatable.
    #[arg(long = "capability")]
    pub capabilities: Vec<String>,
}

impl ClaimsArgs {
    pub fn resolve(&self) -> Result<ClaimsFile> {
        let mut c = match &self.claims {
            Some(p) => ClaimsFile::from_toml(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{}", p.display()))?,
            None => ClaimsFile::default(),
        };
        c.sequence = self.sequence.or(c.sequence);
        c.expires = self.expires.clone().or(c.expires);
        let l = &mut c.lineage;
        for (field, value) in [
            (&mut l.dataset_id, &self.dataset_id),
            (&mut l.dataset_sha256, &self.dataset_sha256),
            (&mut l.training_run, &self.training_run),
            (&mut l.code_commit, &self.code_commit),
        ] {
            if value.is_some() {
                *field = value.clone();
            }
        }
        for m in &self.metrics {
            let (k, v) = m
                .split_once('=')
                .with_context(|| format!("--metric `{m}`: expected NAME=VALUE"))?;
            let v: f64 = v
                .trim()
                .parse()
                .with_context(|| format!("--metric `{m}`: `{v}` is not a number"))?;
            c.metrics.insert(k.trim().to_string(), v);
        }
        c.capabilities.extend(self.capabilities.iter().cloned());
        Ok(c)
    }
}

/// Whom to trust: plain keys (`--trust`) or a root and its metadata (`--root`, `--trust-dir`).
#[derive(Args, Clone, Default)]
pub struct KeyArgs {
    /// Trusted release public key file(s) (no root: development, plain wasmsign2).
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// Root public key: trust the release keys it delegates to in --trust-dir.
    #[arg(long, requires = "trust_dir")]
    pub root: Option<PathBuf>,
    /// Metadata signed by the root: root.N.json, delegations/, revocations.json.
    #[arg(long, requires = "root")]
    pub trust_dir: Option<PathBuf>,
}

impl KeyArgs {
    /// `None` when no trust was configured at all.
    pub fn policy(&self) -> Result<Option<TrustPolicy>> {
        if !self.trust.is_empty() && (self.root.is_some() || self.trust_dir.is_some()) {
            bail!("give either --trust KEY.pub or --root ROOT.pub --trust-dir DIR, not both");
        }
        Ok(wasmops_trust::ops::policy_from_files(
            self.root.as_deref(),
            self.trust_dir.as_deref(),
            &self.trust,
        )?)
    }
}

/// [`KeyArgs`] plus what a host remembers and grants.
#[derive(Args, Clone, Default)]
pub struct TrustArgs {
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Rollback protection: refuse a lower sequence than one accepted before, remembered here.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Capabilities granted to components (default: random, clocks, stdio); repeatable.
    #[arg(long = "grant")]
    pub grants: Vec<String>,
}

impl TrustArgs {
    /// `None` when no trust was configured at all.
    pub fn policy(&self) -> Result<Option<TrustPolicy>> {
        let Some(mut policy) = self.keys.policy()? else {
            return Ok(None);
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
pub struct HostArgs {
    #[command(flatten)]
    pub trust: TrustArgs,
    /// Development only: run unsigned or untrusted components.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Linear memory cap in MiB.
    #[arg(long, default_value_t = wasmops_runtime::DEFAULT_MEMORY_LIMIT >> 20)]
    pub memory_limit_mb: usize,
    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = wasmops_runtime::DEFAULT_DEADLINE.as_millis() as u64)]
    pub deadline_ms: u64,
    #[command(flatten)]
    pub cache: CacheArgs,
}

impl HostArgs {
    /// Trusting `trust`, with the default limits.
    pub fn trusting(trust: TrustArgs) -> HostArgs {
        HostArgs {
            trust,
            allow_unsigned: false,
            memory_limit_mb: wasmops_runtime::DEFAULT_MEMORY_LIMIT >> 20,
            deadline_ms: wasmops_runtime::DEFAULT_DEADLINE.as_millis() as u64,
            cache: CacheArgs::default(),
        }
    }

    pub fn host(&self) -> Result<Host> {
        Ok(Host::new(self.config()?)?)
    }

    /// The host's settings from these flags (`serve` adds its pool).
    pub fn config(&self) -> Result<HostConfig> {
        let signatures = match (self.allow_unsigned, self.trust.policy()?) {
            (true, _) => {
                eprintln!(
                    "WARNING: --allow-unsigned: signature checks are OFF; never use this in production"
                );
                SignaturePolicy::AllowUnsigned
            }
            (false, Some(policy)) => SignaturePolicy::Trusted(policy),
            (false, None) => bail!(
                "no trusted key: pass --trust KEY.pub or --root ROOT.pub --trust-dir DIR (or --allow-unsigned during development)"
            ),
        };
        Ok(HostConfig {
            memory_limit: self
                .memory_limit_mb
                .checked_mul(1 << 20)
                .context("memory limit too large")?,
            deadline: Duration::from_millis(self.deadline_ms),
            cache_dir: self.cache.dir(),
            profiler: profiler(),
            ..HostConfig::new(signatures)
        })
    }
}

/// How to reach the coordinator's API.
#[derive(Args, Clone)]
pub struct Connection {
    /// Coordinator URL.
    #[arg(
        long,
        global = true,
        env = "WASMOPS_COORDINATOR",
        default_value = "https://127.0.0.1:8080"
    )]
    pub coordinator: String,
    /// The CA certificate the coordinator's TLS certificate is checked
    /// against, besides the system's (default: the zero-setup coordinator's
    /// `wasmops-data/tls/ca.pem`, when it is here).
    #[arg(long, global = true, env = "WASMOPS_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// API token (or WASMOPS_TOKEN, or --token-file).
    #[arg(long, global = true, env = "WASMOPS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

impl Connection {
    pub fn token(&self) -> Result<String> {
        if let Some(t) = &self.token {
            return Ok(t.trim().to_string());
        }
        if let Some(p) = &self.token_file {
            return Ok(std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .trim()
                .to_string());
        }
        bail!("no API token: pass --token, --token-file or set WASMOPS_TOKEN")
    }

    pub fn client(&self) -> Result<wasmops_api::Client> {
        let tls = self.tls()?;
        Ok(wasmops_api::Client::with_tls(
            &self.coordinator,
            &self.token()?,
            tls,
        )?)
    }

    /// What the connection trusts: the system's CAs plus `--ca-cert`.
    pub fn tls(&self) -> Result<wasmops_tls::ClientTls> {
        Ok(wasmops_tls::ClientTls::from_file(
            self.ca_cert_path().as_deref(),
        )?)
    }

    /// `--ca-cert`, or the zero-setup coordinator's CA when it is here.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.ca_cert.clone().or_else(|| {
            let local = Path::new(wasmops_api::DEFAULT_DATA_DIR)
                .join("tls")
                .join(wasmops_tls::CA_CERT);
            local.exists().then_some(local)
        })
    }
}

/// `KEY=VALUE` flags as a map.
pub fn parse_pairs(
    flag: &str,
    pairs: &[String],
) -> Result<std::collections::BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .with_context(|| format!("--{flag} `{s}`: expected KEY=VALUE"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// A probe sample file (`{"inputs":[…]}`), if given. One over the
/// coordinator's limit is refused here, before it is sent.
pub fn read_probe(probe: Option<&std::path::Path>) -> Result<Option<serde_json::Value>> {
    probe
        .map(|p| -> Result<serde_json::Value> {
            let size = std::fs::metadata(p)
                .with_context(|| format!("cannot read {}", p.display()))?
                .len();
            anyhow::ensure!(
                size <= wasmops_protocol::MAX_PROBE_BYTES as u64,
                "the probe sample {} is {size} bytes; a probe is at most {} bytes",
                p.display(),
                wasmops_protocol::MAX_PROBE_BYTES
            );
            serde_json::from_str(
                &std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?,
            )
            .with_context(|| format!("{} is not JSON", p.display()))
        })
        .transpose()
}

/// `24h` → milliseconds.
pub fn parse_age(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| format!("`{s}` is not an age like 30m, 24h or 7d"))?;
    let ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" | "" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("unknown unit `{unit}` in `{s}`: use s, m, h or d")),
    };
    n.checked_mul(ms)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("`{s}` is not a positive age"))
}
