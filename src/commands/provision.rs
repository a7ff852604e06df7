//! `wasmops provision`: flashable bundles for gateways that join a fleet on
//! their first boot.
//!
//! Per device, a tree laid out as the gateway's root file system (copy it
//! over `/`, or write the ext4 image to a partition):
//!
//! ```text
//! usr/local/bin/wasmops                     the agent binary for the target
//! etc/wasmops/agent.toml                    id, labels, coordinator, broker,
//!                                           one-time enrolment token (0600),
//!                                           the pinned control key
//! etc/wasmops/trust/root.pub               the anchor (or etc/wasmops/keys/:
//!                                           plain release keys)
//! etc/wasmops/tls/ca.pem                    the CA the coordinator's and the
//!                                           broker's TLS certificates chain to
//! var/lib/wasmops/trust/                    the coordinator's trust metadata
//!                                           (the agent keeps newer sets here)
//! var/lib/wasmops/preinstalled/NAME-VER.wasm  the initial signed model
//! var/lib/wasmops/cache/                    its code, precompiled for the target
//!                                           and sealed to this device's cache
//! etc/systemd/system/wasmops-agent.service  starts the agent at boot
//! MANIFEST.json                             what is where, with sha256s
//! ```
//!
//! Nothing here is new trust: the enrolment token is one use for one id
//! (the coordinator issues one per device), the control key is the
//! coordinator's public half, and the model is checked against the bundle's
//! trust before it is precompiled (once, before any bundle is written), as
//! the device will check it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde::Serialize;
use wasmops_api::{DEFAULT_ENROLMENT_VALIDITY_S, EnrolmentRequest};
use wasmops_protocol::topics;
use wasmops_runtime::{CacheDir, Host, HostConfig, SignaturePolicy};

use crate::args::Connection;

/// Write a flashable bundle per gateway: agent binary, agent.toml, trust,
/// a one-time enrolment token, the first model precompiled, a systemd unit.
#[derive(Parser)]
pub struct ProvisionCommand {
    /// Device ids: `gw-001`, a list `gw-001,gw-007`, or ranges such as `gw-[001-100]`.
    #[arg(long)]
    pub devices: String,
    /// A label every device gets, `key=value` (repeat, or separate with commas).
    #[arg(long = "labels", value_delimiter = ',')]
    pub labels: Vec<String>,
    /// What the gateways are: `x86_64` or `aarch64` (Linux, glibc), or a full triple.
    #[arg(long, default_value = std::env::consts::ARCH)]
    pub target: String,
    /// The `wasmops` binary built for the target (default: this one, when it
    /// was built for the target). For aarch64: `cargo build --release
    /// --target aarch64-unknown-linux-gnu --bin wasmops` (README).
    #[arg(long)]
    pub agent_binary: Option<PathBuf>,
    /// The model the gateways serve from their first boot: NAME, NAME@VERSION or NAME@ALIAS.
    #[arg(long)]
    pub model: Option<String>,
    /// The broker the devices connect to (default: the coordinator's host on
    /// port 18830, where its embedded broker listens by default).
    #[arg(long)]
    pub mqtt: Option<String>,
    /// The root of trust's public key: the devices' anchor (the metadata it
    /// signs comes from the coordinator, `wasmops trust push`).
    #[arg(long)]
    pub trust_root: Option<PathBuf>,
    /// Or plain release keys the devices trust (repeat).
    #[arg(long = "trust-key", conflicts_with = "trust_root")]
    pub trust_keys: Vec<PathBuf>,
    /// How long the devices' enrolment tokens stay valid, in seconds: flash
    /// and boot them within it (30 days at most).
    #[arg(long, default_value_t = DEFAULT_ENROLMENT_VALIDITY_S)]
    pub valid_for_s: u64,
    /// Where the devices' local prediction API listens.
    #[arg(long, default_value = "127.0.0.1:9090")]
    pub listen: String,
    /// Also write `DEVICE.ext4`, a partition image of the bundle (mke2fs -d;
    /// no root privileges needed).
    #[arg(long)]
    pub image: bool,
    /// The image's size in MiB (default: what the bundle needs, plus room
    /// for a few model versions and the compile cache).
    #[arg(long)]
    pub image_mb: Option<u64>,
    /// Output directory (one sub-directory per device).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub conn: Connection,
}

/// Where things go inside a bundle (paths relative to its root, `/` on the device).
const BIN: &str = "usr/local/bin/wasmops";
const ETC: &str = "etc/wasmops";
const STATE: &str = "var/lib/wasmops";
const UNIT: &str = "etc/systemd/system/wasmops-agent.service";

#[derive(Serialize)]
struct Manifest {
    device: String,
    target: String,
    coordinator: String,
    mqtt: String,
    model: Option<String>,
    enrolment_expires_at_ms: i64,
    /// Every file, with its sha256.
    files: BTreeMap<String, String>,
}

impl ProvisionCommand {
    pub fn execute(self) -> Result<()> {
        let devices = expand_devices(&self.devices)?;
        let target = triple(&self.target)?;
        let arch = target.split('-').next().unwrap_or_default();
        let labels = parse_labels(&self.labels)?;
        let binary = self.agent_binary(arch)?;
        ensure!(
            self.trust_root.is_some() || !self.trust_keys.is_empty(),
            "say whom the devices trust: --trust-root ROOT.pub (metadata from the coordinator) or --trust-key KEY.pub"
        );
        let client = self.conn.client()?;
        let who: serde_json::Value = client
            .get("/v1/whoami")
            .context("the coordinator did not answer /v1/whoami")?;
        let control_key = who["control_key"]
            .as_str()
            .context("the coordinator has no control key to pin")?
            .to_string();
        let metadata = match &self.trust_root {
            Some(_) => Some(
                serde_json::from_value::<wasmops_trust::TrustMetadata>(
                    client.trust_metadata().context(
                        "the coordinator serves no trust metadata (publish it: wasmops trust push)",
                    )?,
                )
                .context("the coordinator's trust metadata is malformed")?,
            ),
            None => None,
        };
        let model = match &self.model {
            Some(m) => {
                let (name, version) = m.split_once('@').unwrap_or((m, "latest"));
                let v = match version {
                    "latest" => client
                        .model(name)?
                        .versions
                        .into_iter()
                        .max_by_key(|v| v.sequence)
                        .with_context(|| format!("model {name} has no versions"))?,
                    _ => client.version(name, version)?,
                };
                let bytes = client.artifact(&v.sha256)?;
                ensure!(
                    wasmops_trust::sha256_hex(&bytes) == v.sha256,
                    "the artifact of {name} {} does not match its sha256",
                    v.version
                );
                Some((v, bytes))
            }
            None => None,
        };
        let mqtt = match &self.mqtt {
            Some(m) => m.clone(),
            None => default_mqtt(&self.conn.coordinator)?,
        };
        // The CA the devices check the coordinator (and broker) against:
        // the one this command trusts to reach the coordinator.
        let ca_pem = match self.conn.ca_cert_path() {
            Some(p) => Some(read(&p)?),
            None => None,
        };
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;

        // Judged as the devices will judge it, then compiled for them once,
        // before any bundle is written (or any enrolment token issued).
        let precompiled = match &model {
            Some((v, bytes)) => Some(self.precompile(metadata.as_ref(), v, bytes, &target)?),
            None => None,
        };
        for id in &devices {
            let root = self.out.join(id);
            ensure!(
                !root.exists(),
                "{} exists already: bundles are written once (their enrolment tokens are new)",
                root.display()
            );
            let enrolment = client.create_enrolment(&EnrolmentRequest {
                devices: id.clone(),
                valid_for_s: self.valid_for_s,
                uses_per_device: 1,
                reenrol: false,
            })?;
            let mut b = Bundle {
                root: root.clone(),
                files: BTreeMap::new(),
            };
            b.put(BIN, &binary, 0o755)?;
            let mut trust = toml::Table::new();
            match (&self.trust_root, &metadata) {
                (Some(root_pub), Some(meta)) => {
                    b.put(&format!("{ETC}/trust/root.pub"), &read(root_pub)?, 0o644)?;
                    trust.insert("root".into(), "trust/root.pub".into());
                    // Newer metadata is written here: state, not /etc.
                    trust.insert("trust_dir".into(), format!("../../{STATE}/trust").into());
                    let dir = root.join(STATE).join("trust");
                    wasmops_trust::TrustDir::new(&dir).save_all(meta)?;
                    for f in walk(&dir)? {
                        b.record(&f)?;
                    }
                }
                _ => {
                    let mut keys = vec![];
                    for (i, k) in self.trust_keys.iter().enumerate() {
                        let rel = format!("keys/{i}-{}", file_name(k)?);
                        b.put(&format!("{ETC}/{rel}"), &read(k)?, 0o644)?;
                        keys.push(toml::Value::from(rel));
                    }
                    trust.insert("keys".into(), keys.into());
                }
            }
            let mut config = toml::Table::new();
            config.insert("device_id".into(), id.clone().into());
            config.insert("coordinator".into(), self.conn.coordinator.clone().into());
            config.insert("mqtt".into(), mqtt.clone().into());
            if let Some(ca) = &ca_pem {
                b.put(&format!("{ETC}/tls/ca.pem"), ca, 0o644)?;
                config.insert("ca_cert".into(), "tls/ca.pem".into());
            }
            config.insert("enrolment_token".into(), enrolment.token.clone().into());
            config.insert("control_key".into(), control_key.clone().into());
            config.insert("state_dir".into(), format!("../../{STATE}").into());
            config.insert("listen".into(), self.listen.clone().into());
            if let Some((v, bytes)) = &model {
                let rel = format!("{STATE}/preinstalled/{}-{}.wasm", v.name, v.version);
                b.put(&rel, bytes, 0o644)?;
                config.insert("preinstalled".into(), format!("../../{rel}").into());
            }
            config.insert(
                "labels".into(),
                toml::Value::Table(
                    labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect(),
                ),
            );
            config.insert("trust".into(), trust.into());
            let text = format!(
                "# agent.toml for {id}, written by `wasmops provision`. It holds a one-time\n\
                 # enrolment token: keep it private (mode 0600).\n{}",
                toml::to_string(&config)?
            );
            b.put(&format!("{ETC}/agent.toml"), text.as_bytes(), 0o600)?;
            b.put(UNIT, systemd_unit(id).as_bytes(), 0o644)?;

            // The model's code for the target, sealed into this device's own
            // compile cache (each device's cache has its own key).
            if let Some((sha, code)) = &precompiled {
                let cache = CacheDir::open(&root.join(STATE).join("cache"))?;
                b.record(&cache.components().store_precompiled(arch, sha, code)?)?;
            }
            std::fs::create_dir_all(root.join(STATE))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(root.join(STATE), std::fs::Permissions::from_mode(0o700))?;
            }
            let manifest = Manifest {
                device: id.clone(),
                target: target.clone(),
                coordinator: self.conn.coordinator.clone(),
                mqtt: mqtt.clone(),
                model: model
                    .as_ref()
                    .map(|(v, _)| format!("{}@{}", v.name, v.version)),
                enrolment_expires_at_ms: enrolment.expires_at_ms,
                files: b.files,
            };
            std::fs::write(
                root.join("MANIFEST.json"),
                serde_json::to_vec_pretty(&manifest)?,
            )?;
            if self.image {
                let image = self.out.join(format!("{id}.ext4"));
                let bytes: u64 = walk(&root)?
                    .iter()
                    .map(|f| f.metadata().map_or(0, |m| m.len()))
                    .sum();
                // Room for the active, previous and staged versions and
                // their compiled code beside what is there.
                let size_mb = self.image_mb.unwrap_or((bytes >> 20) * 2 + 256);
                write_image(&root, &image, size_mb)?;
                println!("{id}: {} and {}", root.display(), image.display());
            } else {
                println!("{id}: {}", root.display());
            }
        }
        eprintln!(
            "{} bundle(s) for {target}; each holds a one-time enrolment token valid for {} s. \
             Copy a bundle over the gateway's root file system (or write its image), then \
             `systemctl enable --now wasmops-agent` (README: Provisioning gateways).",
            devices.len(),
            self.valid_for_s
        );
        Ok(())
    }

    /// The trust the bundles carry, as a policy: the root with the
    /// coordinator's metadata, or the plain keys.
    fn policy(
        &self,
        metadata: Option<&wasmops_trust::TrustMetadata>,
    ) -> Result<wasmops_trust::TrustPolicy> {
        let dir = tempfile::tempdir()?;
        if let Some(meta) = metadata {
            wasmops_trust::TrustDir::new(dir.path()).save_all(meta)?;
        }
        let (root, trust_dir) = match &self.trust_root {
            Some(root) => (Some(root.as_path()), Some(dir.path())),
            None => (None, None),
        };
        wasmops_trust::ops::policy_from_files(root, trust_dir, &self.trust_keys)?
            .context("no trust to judge the model by")
    }

    /// `(content sha256, code)`: the model compiled for `target`, once the
    /// bundles' trust accepted it.
    fn precompile(
        &self,
        metadata: Option<&wasmops_trust::TrustMetadata>,
        v: &wasmops_api::Version,
        wasm: &[u8],
        target: &str,
    ) -> Result<(String, Vec<u8>)> {
        let host = Host::new(HostConfig::new(SignaturePolicy::Trusted(
            self.policy(metadata)?,
        )))?;
        let started = std::time::Instant::now();
        let (sha, code) = host
            .precompile(wasm, target)
            .with_context(|| format!("preinstalling {} {} for {target}", v.name, v.version))?;
        eprintln!(
            "precompiled {} {} for {target} in {:.1} s ({} MB of code)",
            v.name,
            v.version,
            started.elapsed().as_secs_f64(),
            code.len() >> 20
        );
        Ok((sha, code))
    }

    /// The agent binary's bytes, checked to be an ELF file for `arch`.
    fn agent_binary(&self, arch: &str) -> Result<Vec<u8>> {
        let path = match &self.agent_binary {
            Some(p) => p.clone(),
            None if arch == std::env::consts::ARCH => std::env::current_exe()?,
            None => bail!(
                "this wasmops was built for {}, the gateways are {arch}: build one for them \
                 (cargo build --release --target {arch}-unknown-linux-gnu --bin wasmops) and \
                 pass it with --agent-binary",
                std::env::consts::ARCH
            ),
        };
        let bytes = read(&path)?;
        let machine = elf_machine(&bytes)
            .with_context(|| format!("{} is not an ELF executable", path.display()))?;
        ensure!(
            machine == arch,
            "{} is built for {machine}, the gateways are {arch}",
            path.display()
        );
        Ok(bytes)
    }
}

/// One device's bundle as it is written: its root and every file's sha256.
struct Bundle {
    root: PathBuf,
    files: BTreeMap<String, String>,
}

impl Bundle {
    /// Writes `rel` (synced, renamed into place) with `mode`, and records it.
    fn put(&mut self, rel: &str, bytes: &[u8], mode: u32) -> Result<()> {
        let path = self.root.join(rel);
        std::fs::create_dir_all(path.parent().expect("inside the bundle"))?;
        wasmops_trust::write_atomic_mode(&path, bytes, Some(mode))
            .with_context(|| format!("cannot write {}", path.display()))?;
        self.files
            .insert(rel.to_string(), wasmops_trust::sha256_hex(bytes));
        Ok(())
    }

    /// Records a file something else wrote inside the bundle.
    fn record(&mut self, path: &Path) -> Result<()> {
        let rel = path
            .strip_prefix(&self.root)
            .context("outside the bundle")?
            .display()
            .to_string();
        let sha = wasmops_trust::sha256_hex(&read(path)?);
        self.files.insert(rel, sha);
        Ok(())
    }
}

/// `gw-[001-003],edge-9` → gw-001, gw-002, gw-003, edge-9. A range keeps
/// the width of its first number (zero-padded). At most 10,000 ids.
pub fn expand_devices(spec: &str) -> Result<Vec<String>> {
    let mut out = vec![];
    for part in split_outside_brackets(spec) {
        let part = part.trim();
        match part.find('[') {
            None => out.push(part.to_string()),
            Some(open) => {
                let close = part[open..]
                    .find(']')
                    .map(|i| open + i)
                    .with_context(|| format!("`{part}`: `[` without `]`"))?;
                let (lo, hi) = part[open + 1..close]
                    .split_once('-')
                    .with_context(|| format!("`{part}`: a range is [FIRST-LAST]"))?;
                let width = lo.len();
                let (a, b): (u64, u64) = (
                    lo.parse()
                        .with_context(|| format!("`{part}`: `{lo}` is not a number"))?,
                    hi.parse()
                        .with_context(|| format!("`{part}`: `{hi}` is not a number"))?,
                );
                ensure!(a <= b, "`{part}`: the range runs backwards");
                ensure!(b - a < 10_000, "`{part}`: more than 10,000 devices at once");
                let (head, tail) = (&part[..open], &part[close + 1..]);
                for n in a..=b {
                    out.push(format!("{head}{n:0width$}{tail}"));
                }
            }
        }
    }
    ensure!(!out.is_empty(), "no device ids in `{spec}`");
    ensure!(out.len() <= 10_000, "more than 10,000 devices at once");
    let mut seen = std::collections::HashSet::new();
    for id in &out {
        ensure!(
            topics::valid_device_id(id),
            "device id `{id}` must be letters, digits, `-`, `_` or `.`"
        );
        ensure!(seen.insert(id), "device id `{id}` appears twice");
    }
    Ok(out)
}

fn split_outside_brackets(spec: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (vec![], 0i32, 0);
    for (i, ch) in spec.char_indices() {
        match ch {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&spec[start..]);
    parts
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .with_context(|| format!("label `{l}` is not key=value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// `aarch64` → `aarch64-unknown-linux-gnu`; the architectures wasmops builds gateways for.
fn triple(target: &str) -> Result<String> {
    let t = match target {
        "x86_64" | "amd64" => "x86_64-unknown-linux-gnu",
        "aarch64" | "arm64" => "aarch64-unknown-linux-gnu",
        t => t,
    };
    ensure!(
        matches!(t, "x86_64-unknown-linux-gnu" | "aarch64-unknown-linux-gnu"),
        "target `{target}`: wasmops provisions x86_64 and aarch64 Linux gateways"
    );
    Ok(t.to_string())
}

/// The architecture an ELF executable is for, as `std::env::consts::ARCH` names it.
fn elf_machine(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() < 20 || &bytes[..4] != b"\x7fELF" || bytes[5] != 1 {
        return None; // little-endian only: both targets are
    }
    match u16::from_le_bytes([bytes[18], bytes[19]]) {
        62 => Some("x86_64"),
        183 => Some("aarch64"),
        _ => Some("another architecture"),
    }
}

fn default_mqtt(coordinator: &str) -> Result<String> {
    let url = reqwest::Url::parse(coordinator)
        .with_context(|| format!("coordinator `{coordinator}` is not a URL"))?;
    let host = url.host_str().context("the coordinator URL has no host")?;
    let scheme = if url.scheme() == "http" {
        "mqtt"
    } else {
        "mqtts"
    };
    Ok(format!("{scheme}://{host}:18830"))
}

fn systemd_unit(id: &str) -> String {
    format!(
        "# The wasmops device agent of {id} (written by `wasmops provision`).\n\
         [Unit]\n\
         Description=wasmops device agent ({id})\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         ExecStart=/{BIN} agent --config /{ETC}/agent.toml\n\
         # Offline at first boot: enrolment fails, and the agent tries again.\n\
         Restart=always\n\
         RestartSec=5\n\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         ReadWritePaths=/{STATE}\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// An ext4 image holding `root` (owned by root, as on the device), built
/// without privileges by e2fsprogs' `mke2fs -d`.
fn write_image(root: &Path, image: &Path, size_mb: u64) -> Result<()> {
    let _ = std::fs::remove_file(image);
    let out = std::process::Command::new("mke2fs")
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "wasmops",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(root)
        .arg(image)
        .arg(format!("{size_mb}M"))
        .output()
        .context("cannot run mke2fs (install e2fsprogs)")?;
    ensure!(
        out.status.success(),
        "mke2fs failed for {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn file_name(path: &Path) -> Result<String> {
    Ok(path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_string_lossy()
        .into_owned())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ranges_expand_with_their_width() {
        assert_eq!(
            expand_devices("gw-[008-011],edge-9").unwrap(),
            ["gw-008", "gw-009", "gw-010", "gw-011", "edge-9"]
        );
        assert_eq!(expand_devices("a[1-2]b").unwrap(), ["a1b", "a2b"]);
        for (bad, why) in [
            ("gw-[3-1]", "backwards"),
            ("gw-[1-x]", "not a number"),
            ("gw-[1-2", "without `]`"),
            ("gw-1,gw-1", "twice"),
            ("gw/1", "must be letters"),
            ("gw-[0-99999]", "10,000"),
        ] {
            let err = expand_devices(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn only_elf_executables_of_the_target_pass() {
        let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
        elf.extend(183u16.to_le_bytes());
        assert_eq!(elf_machine(&elf), Some("aarch64"));
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        assert_eq!(elf_machine(&elf), Some("x86_64"));
        assert_eq!(elf_machine(b"#!/bin/sh\necho hi\n"), None);
        assert_eq!(triple("arm64").unwrap(), "aarch64-unknown-linux-gnu");
        assert!(triple("riscv64").is_err());
    }
}
