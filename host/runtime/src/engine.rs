//! The one wasmtime `Engine` a host process uses, and loading components into it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmops_trust::{Accepted, Timestamp, TrustPolicy};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use crate::HostError;
use crate::bindings::ModelComponentPre;
use crate::cache::{CacheDir, CompileCache, Origin};
use crate::instance::{GuestState, ModelInstance};
use crate::sha256_hex;

/// How often the epoch ticks; deadlines are rounded up to this.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Who may run on this host.
#[derive(Clone, Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per host, made once; boxing would only add a pointer hop"
)]
pub enum SignaturePolicy {
    /// Only components the trust policy accepts (signature, claims, rollback).
    Trusted(TrustPolicy),
    /// Development only: run anything, loudly.
    AllowUnsigned,
    /// A component this process has just built and not yet signed (`build`
    /// runs it on the training data to profile its outputs): unchecked, quietly.
    OwnBuild,
}

/// Linear memory an instance may grow to unless configured otherwise. MobileNetV2
/// at batch 32 peaks near 300 MB; 1 GiB leaves room and still bounds a runaway guest.
pub const DEFAULT_MEMORY_LIMIT: usize = 1 << 30;

/// Wall-clock budget of one call unless configured otherwise (the slowest fixture
/// at batch 64 takes ~1 s; a deadline is for runaways, not for pacing).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// Whether compiled guest code is announced to a profiler (`perf`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profiler {
    #[default]
    None,
    /// `/tmp/perf-PID.map`, read by `perf report`.
    PerfMap,
    /// jitdump files, for `perf inject --jit`.
    JitDump,
}

#[derive(Clone, Debug)]
pub struct HostConfig {
    pub signatures: SignaturePolicy,
    /// Linear memory cap per instance.
    pub memory_limit: usize,
    /// Wall-clock budget for one `predict`/`metadata` call.
    pub deadline: Duration,
    /// Where compiled components are kept; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub profiler: Profiler,
    /// Instances alive at once from a pool of preallocated slots (`serve`:
    /// a fresh instance per request), or `None` to allocate each on demand.
    pub pooling: Option<Pooling>,
}

/// The pooling allocator's sizes: instance slots made once, each linear
/// memory mapped copy-on-write from the component's snapshot, so an
/// instance costs a few page mappings instead of copying its memory.
#[derive(Clone, Copy, Debug)]
pub struct Pooling {
    /// Component instances alive at once; the next one waits for a slot.
    pub instances: u32,
    /// Bytes of each freed linear memory (and table) reset in place and kept
    /// mapped instead of `madvise`d away: the next instance in that slot then
    /// takes no page faults on them. Where the kernel has PAGEMAP_SCAN
    /// (Linux ≥ 6.7) these are the pages the instance dirtied, wherever they
    /// are; elsewhere the lowest addresses. Costs that much resident memory
    /// per slot.
    pub keep_resident: usize,
    /// Freed slots returned to the kernel together, in one batch of
    /// `madvise` calls (1: each at once). Fewer calls, fewer TLB flushes.
    pub decommit_batch: usize,
}

impl HostConfig {
    /// The default limits, no compile cache, no profiler.
    pub fn new(signatures: SignaturePolicy) -> HostConfig {
        HostConfig {
            signatures,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            deadline: DEFAULT_DEADLINE,
            cache_dir: None,
            profiler: Profiler::None,
            pooling: None,
        }
    }
}

/// A wasmtime engine configured for model components, with its epoch ticker.
pub struct Host {
    engine: Engine,
    linker: Arc<Linker<GuestState>>,
    config: HostConfig,
    cache: Option<CompileCache>,
}

/// Settings that change generated code live here only, so every compile and the
/// cache key agree (the cache hashes the engine's compatibility hash). With a
/// cache directory, Cranelift also reuses compiled functions across components.
pub fn engine_config(cache: Option<&CacheDir>, profiler: Profiler) -> Config {
    let mut c = Config::new();
    if let Some(dir) = cache {
        let store = Arc::new(dir.functions());
        c.enable_incremental_compilation(store)
            .expect("cranelift supports incremental compilation");
    }
    c.cranelift_opt_level(OptLevel::Speed);
    c.wasm_simd(true);
    c.wasm_relaxed_simd(true);
    c.relaxed_simd_deterministic(false);
    c.wasm_component_model(true);
    c.epoch_interruption(true);
    // Lets `perf` name guest functions.
    match profiler {
        Profiler::PerfMap => _ = c.profiler(wasmtime::ProfilingStrategy::PerfMap),
        Profiler::JitDump => _ = c.profiler(wasmtime::ProfilingStrategy::JitDump),
        Profiler::None => {}
    }
    c
}

/// Pool sizes for `p.instances` model components at once. A Rust wasip2
/// component holds a handful of core instances (the program, the WASI
/// adapter, shims) with a memory and a table or two each: the per-component
/// counts leave room above what the guests here use (4 core instances,
/// 2 memories). Instantiating past a limit fails with wasmtime's message
/// naming it.
fn pooling(p: Pooling, memory_limit: usize) -> wasmtime::PoolingAllocationConfig {
    let n = p.instances.max(1);
    let mut c = wasmtime::PoolingAllocationConfig::default();
    c.total_component_instances(n)
        .total_core_instances(n * 16)
        .total_memories(n * 4)
        .total_tables(n * 8)
        .max_core_instances_per_component(16)
        .max_memories_per_component(4)
        .max_tables_per_component(8)
        .max_memory_size(memory_limit)
        // The limiter's cap on table growth (instance.rs), as the pool's size.
        .table_elements(100_000)
        .linear_memory_keep_resident(p.keep_resident)
        .table_keep_resident(p.keep_resident)
        .decommit_batch_size(p.decommit_batch.max(1))
        .max_unused_warm_slots(n)
        // Linux ≥ 6.7: a freed memory's dirty pages are found with the
        // PAGEMAP_SCAN ioctl and reset in place (up to `keep_resident`
        // bytes of them, anywhere in the memory) instead of `madvise`d away,
        // so the next instance takes no page faults on them. Older kernels
        // keep the memset-the-low-bytes behaviour. iris under `serve-bench`,
        // 64 clients: wasm/native 0.79 → 0.87 (session 41).
        .pagemap_scan(wasmtime::Enabled::Auto);
    c
}

impl Host {
    pub fn new(config: HostConfig) -> Result<Host, HostError> {
        // A cache that cannot be trusted (not private) is not used: compiling
        // again is slow, running someone else's native code is worse.
        let cache_dir = config
            .cache_dir
            .as_deref()
            .and_then(|d| match CacheDir::open(d) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("running without a compile cache: {e}");
                    None
                }
            });
        let mut engine_config = engine_config(cache_dir.as_ref(), config.profiler);
        if let Some(p) = config.pooling {
            engine_config.allocation_strategy(pooling(p, config.memory_limit));
        }
        let engine =
            Engine::new(&engine_config).map_err(|e| HostError::Compile(format!("engine: {e}")))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wasmops-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(|e| HostError::Io(format!("epoch thread: {e}")))?;
        let linker = crate::instance::linker(&engine)?;
        if matches!(config.signatures, SignaturePolicy::AllowUnsigned) {
            tracing::warn!("signature checks are OFF (--allow-unsigned): any component will run");
        }
        let cache = cache_dir.as_ref().map(CacheDir::components);
        Ok(Host {
            engine,
            linker: Arc::new(linker),
            config,
            cache,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// Verifies the signature (before anything is compiled), compiles or loads the
    /// cached compilation, and pre-links the component.
    pub fn load(&self, wasm: &[u8]) -> Result<LoadedModel, HostError> {
        let accepted = self.admit(wasm, None)?;
        self.compile(wasm, accepted, true)
    }

    /// Loads a component this host accepted at `accepted_at` (after a restart):
    /// see [`TrustPolicy::check_accepted`]. Nothing is recorded.
    pub fn reload(&self, wasm: &[u8], accepted_at: Timestamp) -> Result<LoadedModel, HostError> {
        let accepted = self.admit(wasm, Some(accepted_at))?;
        self.compile(wasm, accepted, false)
    }

    /// The trust decision, before anything is compiled (as of now, or as of an
    /// earlier acceptance).
    fn admit(
        &self,
        wasm: &[u8],
        accepted_at: Option<Timestamp>,
    ) -> Result<Option<Accepted>, HostError> {
        Ok(match (&self.config.signatures, accepted_at) {
            (SignaturePolicy::Trusted(policy), None) => Some(policy.check(wasm)?),
            (SignaturePolicy::Trusted(policy), Some(t)) => Some(policy.check_accepted(wasm, t)?),
            (SignaturePolicy::AllowUnsigned | SignaturePolicy::OwnBuild, _) => {
                // Still refuse garbage early with the same clear errors.
                wasmops_sign::sections(wasm)?;
                None
            }
        })
    }

    fn compile(
        &self,
        wasm: &[u8],
        accepted: Option<Accepted>,
        commit: bool,
    ) -> Result<LoadedModel, HostError> {
        let sha = content_sha256(wasm, accepted.as_ref());
        let started = Instant::now();
        let (component, origin) = match self.cache.as_ref().and_then(|c| c.load(&self.engine, &sha))
        {
            Some(found) => found,
            None => {
                let c = Component::new(&self.engine, wasm)
                    .map_err(|e| HostError::Compile(format!("{e:#}")))?;
                if let Some(cache) = &self.cache
                    && let Err(e) = cache.store(&self.engine, &sha, &c)
                {
                    tracing::warn!("could not cache the compiled component: {e}");
                }
                (c, Origin::Compiled)
            }
        };
        let compile_time = started.elapsed();
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            HostError::Link(crate::instance::describe_link_error(
                &component,
                &self.engine,
                e,
            ))
        })?;
        let pre = ModelComponentPre::new(pre)
            .map_err(|e| HostError::Link(format!("not a wasmops model component: {e:#}")))?;
        if commit
            && let (SignaturePolicy::Trusted(policy), Some(a)) =
                (&self.config.signatures, &accepted)
        {
            policy.commit(a)?;
        }
        Ok(LoadedModel {
            pre,
            accepted,
            sha256: sha,
            size_bytes: wasm.len(),
            origin,
            compile_time,
            memory_limit: self.config.memory_limit,
            deadline: self.config.deadline,
        })
    }

    /// Compiles `wasm` for machines of another (or this) `target` triple,
    /// such as `aarch64-unknown-linux-gnu`, with the settings every host uses
    /// ([`engine_config`]). The component must pass this host's trust policy
    /// first (nothing is recorded). Returns the content sha256 a device's
    /// cache knows it by and the serialized code, for
    /// [`CompileCache::store_precompiled`]: a device opening that cache then
    /// serves it without compiling.
    pub fn precompile(&self, wasm: &[u8], target: &str) -> Result<(String, Vec<u8>), HostError> {
        let accepted = self.admit(wasm, None)?;
        let sha = content_sha256(wasm, accepted.as_ref());
        let mut config = engine_config(None, Profiler::None);
        config
            .target(target)
            .map_err(|e| HostError::Compile(format!("target {target}: {e:#}")))?;
        let engine = Engine::new(&config)
            .map_err(|e| HostError::Compile(format!("engine for {target}: {e:#}")))?;
        // Compiled, never loaded: this machine may not run the target's code.
        let bytes = engine
            .precompile_component(wasm)
            .map_err(|e| HostError::Compile(format!("for {target}: {e:#}")))?;
        Ok((sha, bytes))
    }

    pub fn load_file(&self, path: &std::path::Path) -> Result<LoadedModel, HostError> {
        let wasm = std::fs::read(path)
            .map_err(|e| HostError::Io(format!("cannot read {}: {e}", path.display())))?;
        self.load(&wasm)
    }
}

/// What a compile cache knows a component by. A verified component was just
/// hashed by the signature check: that hash (of everything after the
/// signature) is reused instead of hashing 10+ MB again.
fn content_sha256(wasm: &[u8], accepted: Option<&Accepted>) -> String {
    match accepted {
        Some(a) => hex::encode(a.verified.content_sha256),
        None => sha256_hex(wasm),
    }
}

/// A verified, compiled and pre-linked component: cheap to instantiate many times.
pub struct LoadedModel {
    pub(crate) pre: ModelComponentPre<GuestState>,
    /// What the trust policy accepted: signer, claims, delegation (`None` when unsigned runs are allowed).
    pub accepted: Option<Accepted>,
    pub sha256: String,
    pub size_bytes: usize,
    /// Where the code came from: compiled here, this engine's cache, or
    /// precompiled for this architecture elsewhere.
    pub origin: Origin,
    /// Time to compile, or to load from the cache.
    pub compile_time: Duration,
    pub(crate) memory_limit: usize,
    pub(crate) deadline: Duration,
}

impl LoadedModel {
    /// Whether the compiled code came from the on-disk cache.
    pub fn from_cache(&self) -> bool {
        self.origin != Origin::Compiled
    }

    pub fn instantiate(&self) -> Result<ModelInstance, HostError> {
        ModelInstance::new(self.pre.clone(), self.memory_limit, self.deadline)
    }
}
