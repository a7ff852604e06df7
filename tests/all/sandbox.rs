//! Host limits: a deadline or memory cap stops the guest with a typed error and
//! the host keeps serving.

use crate::common::*;
use std::time::Duration;
use wasmops_runtime::{Host, HostConfig, HostError, SignaturePolicy};

fn mobilenet_input(batch: u32) -> Vec<wasmops_runtime::bindings::Tensor> {
    let n = batch as usize * 3 * 224 * 224;
    vec![wasmops_runtime::bindings::Tensor {
        name: "x".into(),
        shape: vec![batch, 3, 224, 224],
        data: wasmops_runtime::bindings::TensorData::Float32(
            (0..n).map(|i| (i % 7) as f32 / 7.0).collect(),
        ),
    }]
}

#[test]
fn deadline_stops_a_call_and_the_host_keeps_serving() {
    let wasm = std::fs::read(component("mobilenet_v2_style")).unwrap();
    let config = HostConfig {
        deadline: Duration::from_micros(1),
        cache_dir: Some(cache_dir()),
        ..HostConfig::new(SignaturePolicy::AllowUnsigned)
    };
    let host = Host::new(config).unwrap();
    let loaded = host.load(&wasm).unwrap();
    // The deadline is rounded up to the epoch tick (5–10 ms here); a batch of 8
    // takes ~40 ms. Instantiation may already be the call that runs out of time.
    let err = loaded
        .instantiate()
        .and_then(|mut instance| instance.predict(&mobilenet_input(8)))
        .unwrap_err();
    assert!(matches!(err, HostError::Deadline(_)), "{err}");

    // Same process, a host with a sane deadline serves the same model.
    let host = Host::new(HostConfig {
        cache_dir: Some(cache_dir()),
        ..HostConfig::new(SignaturePolicy::AllowUnsigned)
    })
    .unwrap();
    let mut instance = host.load(&wasm).unwrap().instantiate().unwrap();
    let out = instance.predict(&mobilenet_input(8)).unwrap();
    assert_eq!(out[0].shape, vec![8, 100]);
}

#[test]
fn memory_cap_is_enforced() {
    let wasm = std::fs::read(component("mobilenet_v2_style")).unwrap();
    let config = HostConfig {
        memory_limit: 4 << 20,
        cache_dir: Some(cache_dir()),
        ..HostConfig::new(SignaturePolicy::AllowUnsigned)
    };
    let host = Host::new(config).unwrap();
    let err = host
        .load(&wasm)
        .and_then(|m| m.instantiate().map(drop))
        .unwrap_err();
    assert!(
        matches!(err, HostError::MemoryLimit(_) | HostError::Trap(_)),
        "{err}"
    );
}

#[test]
fn guest_errors_do_not_poison_the_instance() {
    let wasm = std::fs::read(component("small_cnn")).unwrap();
    let host = Host::new(HostConfig {
        cache_dir: Some(cache_dir()),
        ..HostConfig::new(SignaturePolicy::AllowUnsigned)
    })
    .unwrap();
    let mut instance = host.load(&wasm).unwrap().instantiate().unwrap();
    let bad = vec![wasmops_runtime::bindings::Tensor {
        name: "x".into(),
        shape: vec![1, 1, 9, 9],
        data: wasmops_runtime::bindings::TensorData::Float32(vec![0.0; 81]),
    }];
    assert!(matches!(instance.predict(&bad), Err(HostError::Predict(_))));
    let good = vec![wasmops_runtime::bindings::Tensor {
        name: "x".into(),
        shape: vec![2, 1, 8, 8],
        data: wasmops_runtime::bindings::TensorData::Float32(vec![1.0; 128]),
    }];
    let out = instance.predict(&good).unwrap();
    assert_eq!(out[0].shape, vec![2, 10]);
}

/// The shipped component exports exactly the model interface (the build-time
/// `init-model` is gone) and imports nothing beyond the host's allowlist: no
/// filesystem, sockets or environment.
#[test]
fn built_component_exports_only_the_model_and_imports_only_the_allowlist() {
    use wasmparser::{Parser, Payload};
    let wasm = std::fs::read(component("small_cnn")).unwrap();
    let (mut imports, mut exports, mut depth) = (vec![], vec![], 0);
    for payload in Parser::new(0).parse_all(&wasm) {
        match payload.unwrap() {
            // Nested modules and components have their own imports and exports.
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth -= 1,
            Payload::ComponentImportSection(r) if depth == 0 => {
                imports.extend(r.into_iter().map(|i| i.unwrap().name.name.to_string()))
            }
            Payload::ComponentExportSection(r) if depth == 0 => {
                exports.extend(r.into_iter().map(|e| e.unwrap().name.name.to_string()))
            }
            _ => {}
        }
    }
    assert!(!imports.is_empty());
    assert_eq!(exports, ["wasmops:model/model@0.1.0"]);
    for import in &imports {
        let base = import.split('@').next().unwrap();
        assert!(
            wasmops_runtime::ALLOWED_IMPORTS.contains(&base),
            "unexpected import {import}"
        );
        for forbidden in [
            "wasi:filesystem",
            "wasi:sockets",
            "wasi:cli/environment",
            "wasi:http",
        ] {
            assert!(!import.starts_with(forbidden), "{import}");
        }
    }
}

mod hostile {
    use super::*;
    use std::time::Instant;
    use wasmops_guest_artifacts::test_programs::{
        HOSTILE, HOSTILE_ENV, HOSTILE_FS, HOSTILE_SOCKETS,
    };
    use wasmops_runtime::bindings::{Tensor, TensorData};

    fn request(name: &str) -> Vec<Tensor> {
        vec![Tensor {
            name: name.into(),
            shape: vec![1],
            data: TensorData::Float32(vec![1.0]),
        }]
    }

    fn host(deadline: Duration, memory_limit: usize) -> Host {
        Host::new(HostConfig {
            deadline,
            memory_limit,
            cache_dir: Some(cache_dir()),
            ..HostConfig::new(SignaturePolicy::AllowUnsigned)
        })
        .unwrap()
    }

    fn hostile(deadline: Duration, memory_limit: usize) -> wasmops_runtime::ModelInstance {
        host(deadline, memory_limit)
            .load_file(HOSTILE.as_ref())
            .unwrap()
            .instantiate()
            .unwrap()
    }

    #[test]
    fn a_trap_is_an_error_and_the_instance_keeps_serving() {
        let mut instance = hostile(Duration::from_secs(10), 64 << 20);
        let err = instance.predict(&request("trap")).unwrap_err();
        assert!(matches!(err, HostError::Trap(_)), "{err}");
        let echoed = instance.predict(&request("echo")).unwrap();
        assert_eq!(echoed[0].name, "echo");
    }

    /// The bound: stopped within deadline + 100 ms, while another
    /// instance of the same model keeps answering. Three rounds; the median
    /// overshoot must be inside the bound (one scheduler hiccup on a loaded CI
    /// machine is not a sandbox failure, two are).
    #[test]
    fn an_infinite_loop_is_stopped_at_the_deadline_while_others_are_served() {
        let deadline = Duration::from_millis(200);
        let host = host(deadline, 64 << 20);
        let loaded = host.load_file(HOSTILE.as_ref()).unwrap();
        let mut spinner = loaded.instantiate().unwrap();
        let mut other = loaded.instantiate().unwrap();
        let mut overshoots = vec![];
        for _ in 0..3 {
            let spin = std::thread::spawn(move || {
                let started = Instant::now();
                let err = spinner.predict(&request("spin")).unwrap_err();
                (spinner, err, started.elapsed())
            });
            let mut served = 0;
            while !spin.is_finished() {
                assert_eq!(other.predict(&request("echo")).unwrap()[0].name, "echo");
                served += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            let (back, err, took) = spin.join().unwrap();
            spinner = back;
            assert!(matches!(err, HostError::Deadline(_)), "{err}");
            assert!(served > 0, "no call was served while the guest spun");
            overshoots.push(took.saturating_sub(deadline));
        }
        overshoots.sort();
        assert!(
            overshoots[1] < Duration::from_millis(100),
            "stopped {overshoots:?} after the deadline"
        );
        // The instance that was stopped serves again.
        assert_eq!(spinner.predict(&request("echo")).unwrap()[0].name, "echo");
    }

    #[test]
    fn unbounded_memory_growth_hits_the_cap() {
        let mut instance = hostile(Duration::from_secs(30), 128 << 20);
        let err = instance.predict(&request("hog")).unwrap_err();
        assert!(matches!(err, HostError::MemoryLimit(_)), "{err}");
        assert_eq!(instance.predict(&request("echo")).unwrap()[0].name, "echo");
    }

    /// Filesystem, environment and sockets: each refused at link time, naming the import.
    #[test]
    fn components_importing_beyond_the_model_world_are_refused_at_link_time() {
        let host = host(Duration::from_secs(10), 64 << 20);
        for (guest, import) in [
            (HOSTILE_FS, "wasi:filesystem"),
            (HOSTILE_ENV, "wasi:cli/environment"),
            (HOSTILE_SOCKETS, "wasi:sockets"),
        ] {
            let imports =
                wasmops_trust::capabilities::imports(&std::fs::read(guest).unwrap()).unwrap();
            assert!(
                imports.iter().any(|i| i.starts_with(import)),
                "{guest} should import {import}: {imports:?}"
            );
            let err = host.load_file(guest.as_ref()).map(drop).unwrap_err();
            assert!(matches!(err, HostError::Link(_)), "{err}");
            let text = err.to_string();
            assert!(text.contains(import), "{text}");
        }
        // The host is still fine.
        let mut ok = host
            .load_file(HOSTILE.as_ref())
            .unwrap()
            .instantiate()
            .unwrap();
        assert_eq!(ok.predict(&request("echo")).unwrap()[0].name, "echo");
    }
}
