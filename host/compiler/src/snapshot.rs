//! Pre-initialisation with wizer: run `init-model` once at build time and keep
//! the resulting memory, so every instance starts with the model loaded.

use std::path::Path;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::component::Component;
use wasmtime::{Config, Engine};
use wasmtime_wizer::{WasmtimeWizerComponent, Wizer};

use crate::BuildError;

const INIT: &str = "init-model";

/// Drives a future that never waits on I/O (wizer's calls into the guest) to completion.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

fn snapshot_err(e: impl std::fmt::Display) -> BuildError {
    BuildError::Snapshot(e.to_string())
}

pub fn bake(
    guest: &[u8],
    name: &str,
    version: &str,
    nnef: &[u8],
    pipeline: &str,
    cache_dir: Option<&Path>,
) -> Result<Vec<u8>, BuildError> {
    let mut wizer = Wizer::new();
    wizer.init_func(INIT).keep_init_func(false);
    let guest = rename_core_init_export(guest)?;
    let (cx, instrumented) = wizer
        .instrument_component(&guest)
        .map_err(|e| snapshot_err(format!("{e:#}")))?;

    // The runtime's exact configuration, so Cranelift's function cache filled here
    // serves the first `run` of the built component too. No epoch ticker runs for
    // this engine, so the deadline below is never reached.
    let cache = cache_dir.and_then(|d| match wasmops_runtime::CacheDir::open(d) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!("building without a compile cache: {e}");
            None
        }
    });
    let config: Config =
        wasmops_runtime::engine_config(cache.as_ref(), wasmops_runtime::Profiler::None);
    let engine = Engine::new(&config).map_err(snapshot_err)?;
    let component = compile_cached(&engine, &instrumented, cache.as_ref())?;
    let linker = wasmops_runtime::linker(&engine).map_err(snapshot_err)?;
    // Loading and optimising a model can take far more memory than running it.
    // Reproducible builds: the guest's randomness is derived from what it is given.
    let seed = {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for part in [
            name.as_bytes(),
            version.as_bytes(),
            nnef,
            pipeline.as_bytes(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part);
        }
        h.finalize().into()
    };
    let mut store = wasmops_runtime::new_seeded_store(&engine, 4 << 30, seed);
    store.set_epoch_deadline(u64::MAX);

    let wasm = block_on(async {
        let instance = linker
            .instantiate_async(&mut store, &component)
            .await
            .map_err(|e| snapshot_err(format!("{e:#}")))?;
        let init = instance
            .get_typed_func::<(&str, &str, &[u8], &str), (Result<(), String>,)>(&mut store, INIT)
            .map_err(|e| {
                snapshot_err(format!("the generic guest has no usable `{INIT}`: {e:#}"))
            })?;
        let (result,) = init
            .call_async(&mut store, (name, version, nnef, pipeline))
            .await
            .map_err(|e| {
                snapshot_err(format!("the guest trapped while loading the model: {e:#}"))
            })?;
        result.map_err(|e| {
            BuildError::Unsupported(format!("the guest could not load the model: {e}"))
        })?;
        wizer
            .snapshot_component(
                &cx,
                &mut WasmtimeWizerComponent {
                    store: &mut store,
                    instance,
                },
            )
            .await
            .map_err(|e| snapshot_err(format!("{e:#}")))
    })?;
    let wasm = match crate::data_segments::resplit(&wasm) {
        Ok(split) => split,
        Err(e) => {
            tracing::warn!(
                "could not re-split the snapshot's data segments ({e}); keeping wizer's"
            );
            wasm
        }
    };
    // Never hand out a component that would fail to load on a device.
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(&wasm)
        .map_err(|e| snapshot_err(format!("the snapshot is not valid wasm: {e}")))?;
    Ok(wasm)
}

/// wasmtime-wizer 48, told to drop the init function, removes both the component
/// export and the core export of that name, but the component's canon lift still
/// aliases the core export, so the result is invalid. Renaming the core export
/// (and the alias that names it) to a same-length name leaves wizer only the
/// component export to remove: the shipped component exports just the model.
fn rename_core_init_export(wasm: &[u8]) -> Result<Vec<u8>, BuildError> {
    use wasmparser::{ComponentAlias, Parser, Payload};
    const CORE_NAME: &[u8] = b"init-modeL";
    let offset_of = |name: &str| name.as_ptr() as usize - wasm.as_ptr() as usize;
    let mut at = vec![];
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(snapshot_err)? {
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(snapshot_err)?;
                    if export.name == INIT {
                        at.push(offset_of(export.name));
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    if let ComponentAlias::CoreInstanceExport { name, .. } =
                        alias.map_err(snapshot_err)?
                        && name == INIT
                    {
                        at.push(offset_of(name));
                    }
                }
            }
            _ => {}
        }
    }
    if at.len() != 2 {
        return Err(snapshot_err(format!(
            "expected one core export and one alias named `{INIT}` in the generic guest, found {}",
            at.len()
        )));
    }
    let mut out = wasm.to_vec();
    for offset in at {
        out[offset..offset + CORE_NAME.len()].copy_from_slice(CORE_NAME);
    }
    Ok(out)
}

/// The instrumented generic guest is the same for every build, so its compiled
/// form is cached (~10 s of Cranelift saved per build).
fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    cache: Option<&wasmops_runtime::CacheDir>,
) -> Result<Component, BuildError> {
    let Some(dir) = cache else {
        return Component::new(engine, wasm).map_err(|e| snapshot_err(format!("{e:#}")));
    };
    let cache = dir.components();
    let key = wasmops_runtime::sha256_hex(wasm);
    if let Some((c, _)) = cache.load(engine, &key) {
        return Ok(c);
    }
    let c = Component::new(engine, wasm).map_err(|e| snapshot_err(format!("{e:#}")))?;
    if let Err(e) = cache.store(engine, &key, &c) {
        tracing::warn!("could not cache the compiled generic guest: {e}");
    }
    Ok(c)
}
