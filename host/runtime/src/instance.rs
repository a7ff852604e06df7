//! One live instance of a model component, with its store and limits.

use std::time::Duration;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::HostError;
use crate::bindings::{ModelComponent, ModelComponentPre, ModelInfo, Tensor};
use crate::engine::EPOCH_TICK;

/// Per-store host state: the sandbox's WASI context and resource limits.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and remembers whether the cap was what stopped the guest.
struct Limits {
    memory: usize,
    hit: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.memory;
        self.hit |= !ok;
        Ok(ok)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
    fn instances(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

/// Interfaces a model component may import. Rust's standard library for
/// wasm32-wasip2 needs randomness (hash-map seeds), clocks and stdio; the host
/// gives empty stdin and discards output. Filesystem, sockets and environment
/// are never linked, so a component asking for them fails at link time.
pub const ALLOWED_IMPORTS: &[&str] = &[
    "wasmops:model/types",
    "wasi:random/random",
    "wasi:random/insecure-seed",
    "wasi:clocks/wall-clock",
    "wasi:clocks/monotonic-clock",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
];

/// Selects the resource table for the `wasi:io` bindings.
struct Io;
impl wasmtime::component::HasData for Io {
    type Data<'a> = &'a mut ResourceTable;
}

/// Builds the linker holding exactly [`ALLOWED_IMPORTS`].
pub fn linker(engine: &Engine) -> Result<Linker<GuestState>, HostError> {
    use wasmtime_wasi::cli::{WasiCli, WasiCliView};
    use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
    use wasmtime_wasi::p2::bindings::{cli, clocks, random, sync::io};
    use wasmtime_wasi::random::WasiRandom;
    type T = GuestState;

    let mut l = Linker::<T>::new(engine);
    let link = |e: wasmtime::Error| HostError::Link(format!("{e:#}"));
    // The shared type-only interface: an instance with nothing in it satisfies it.
    l.instance("wasmops:model/types@0.1.0").map_err(link)?;
    random::random::add_to_linker::<T, WasiRandom>(&mut l, |t| t.wasi.random()).map_err(link)?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(&mut l, |t| t.wasi.random())
        .map_err(link)?;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(&mut l, T::clocks).map_err(link)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(&mut l, T::clocks).map_err(link)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, Io>(&mut l, |t| &mut t.table)
        .map_err(link)?;
    io::poll::add_to_linker::<T, Io>(&mut l, |t| &mut t.table).map_err(link)?;
    io::streams::add_to_linker::<T, Io>(&mut l, |t| &mut t.table).map_err(link)?;
    cli::stdin::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    cli::stdout::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    cli::stderr::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(&mut l, T::cli).map_err(link)?;
    Ok(l)
}

/// The imports of `component` that this host does not provide.
pub fn forbidden_imports(component: &Component, engine: &Engine) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| {
            let base = name.split('@').next().unwrap_or(name);
            !ALLOWED_IMPORTS.contains(&base)
        })
        .collect()
}

/// Names the imports that could not be satisfied, instead of wasmtime's generic text.
pub(crate) fn describe_link_error(
    component: &Component,
    engine: &Engine,
    e: wasmtime::Error,
) -> String {
    match forbidden_imports(component, engine) {
        bad if bad.is_empty() => format!("{e:#}"),
        bad => format!(
            "the component imports {} which model components may not use (allowed: {})",
            bad.join(", "),
            ALLOWED_IMPORTS.join(", ")
        ),
    }
}

/// A store with the sandbox's state and memory cap (deadline set per call).
pub fn new_store(engine: &Engine, memory_limit: usize) -> Store<GuestState> {
    store_with(engine, memory_limit, WasiCtx::builder().build())
}

/// Like [`new_store`], but every random byte the guest asks for comes from
/// `seed`: `wasmops build` uses it so the same inputs give the same component
/// (hash-map seeds end up in the snapshot).
pub fn new_seeded_store(engine: &Engine, memory_limit: usize, seed: [u8; 32]) -> Store<GuestState> {
    use wasmtime_wasi::random::Deterministic;
    let mut wasi = WasiCtx::builder();
    wasi.secure_random(Deterministic::new(seed.to_vec()))
        .insecure_random(Deterministic::new(seed.iter().rev().copied().collect()))
        .insecure_random_seed(u128::from_le_bytes(seed[..16].try_into().unwrap()));
    store_with(engine, memory_limit, wasi.build())
}

fn store_with(engine: &Engine, memory_limit: usize, wasi: WasiCtx) -> Store<GuestState> {
    let state = GuestState {
        wasi,
        table: ResourceTable::new(),
        limits: Limits {
            memory: memory_limit,
            hit: false,
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store
}

pub struct ModelInstance {
    pre: ModelComponentPre<GuestState>,
    store: Store<GuestState>,
    bindings: ModelComponent,
    deadline: Duration,
    memory_limit: usize,
}

impl ModelInstance {
    pub(crate) fn new(
        pre: ModelComponentPre<GuestState>,
        memory_limit: usize,
        deadline: Duration,
    ) -> Result<ModelInstance, HostError> {
        let (store, bindings) = Self::fresh(&pre, memory_limit, deadline)?;
        Ok(ModelInstance {
            pre,
            store,
            bindings,
            deadline,
            memory_limit,
        })
    }

    fn fresh(
        pre: &ModelComponentPre<GuestState>,
        memory_limit: usize,
        deadline: Duration,
    ) -> Result<(Store<GuestState>, ModelComponent), HostError> {
        let mut store = new_store(pre.engine(), memory_limit);
        store.set_epoch_deadline(ticks(deadline));
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| classify(e, &store, deadline, memory_limit))?;
        Ok((store, bindings))
    }

    pub fn predict(&mut self, inputs: &[Tensor]) -> Result<Vec<Tensor>, HostError> {
        let result = self.call(|b, s| b.wasmops_model_model().call_predict(s, inputs))?;
        result.map_err(HostError::Predict)
    }

    pub fn metadata(&mut self) -> Result<ModelInfo, HostError> {
        self.call(|b, s| b.wasmops_model_model().call_metadata(s))
    }

    /// Runs one guest call under the deadline. After a trap the instance's state is
    /// undefined, so it is replaced by a fresh one before the error is returned.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&ModelComponent, &mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> Result<R, HostError> {
        self.store.set_epoch_deadline(ticks(self.deadline));
        self.store.data_mut().limits.hit = false;
        match f(&self.bindings, &mut self.store) {
            Ok(r) => Ok(r),
            Err(e) => {
                let err = classify(e, &self.store, self.deadline, self.memory_limit);
                let (store, bindings) = Self::fresh(&self.pre, self.memory_limit, self.deadline)?;
                self.store = store;
                self.bindings = bindings;
                Err(err)
            }
        }
    }
}

fn ticks(deadline: Duration) -> u64 {
    (deadline.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
}

fn classify(
    e: wasmtime::Error,
    store: &Store<GuestState>,
    deadline: Duration,
    memory_limit: usize,
) -> HostError {
    if store.data().limits.hit {
        return HostError::MemoryLimit(memory_limit);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => HostError::Deadline(deadline),
        _ => HostError::Trap(format!("{e:#}")),
    }
}
