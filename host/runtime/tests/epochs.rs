//! The epoch check of the patched compiler (host/vendor/README.md) calls
//! `new_epoch` through a trampoline that must preserve every register, then
//! reloads the deadline `new_epoch` stored. Both are checked here on the
//! production engine config: vector accumulators stay intact across hundreds of
//! slow-path calls, and each call moves the deadline on (a stale reload would
//! take the slow path on every loop turn).
//!
//! The patch also moves where the check's values live (a frame slot filled at
//! function entry), so the rest of this file holds programs that must still
//! stop at a deadline: a call tree without loops (entry checks), a function
//! that spins (loop checks), a bulk memory fill in a body without loops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Instance, Module, Store, Trap, UpdateDeadline};

/// Eight vector accumulators live across the loop (each lane adds a different
/// constant) and one scalar float; the result folds them into one checksum.
const ACCUMULATE: &str = r#"
(module
  (func (export "run") (param $n i32) (result i64)
    (local $a0 v128) (local $a1 v128) (local $a2 v128) (local $a3 v128)
    (local $a4 v128) (local $a5 v128) (local $a6 v128) (local $a7 v128)
    (local $f f64) (local $i i32) (local $sum i64)
    (loop $turn
      (local.set $a0 (i32x4.add (local.get $a0) (v128.const i32x4 1 2 3 4)))
      (local.set $a1 (i32x4.add (local.get $a1) (v128.const i32x4 5 6 7 8)))
      (local.set $a2 (i32x4.add (local.get $a2) (v128.const i32x4 9 10 11 12)))
      (local.set $a3 (i32x4.add (local.get $a3) (v128.const i32x4 13 14 15 16)))
      (local.set $a4 (i32x4.add (local.get $a4) (v128.const i32x4 17 18 19 20)))
      (local.set $a5 (i32x4.add (local.get $a5) (v128.const i32x4 21 22 23 24)))
      (local.set $a6 (i32x4.add (local.get $a6) (v128.const i32x4 25 26 27 28)))
      (local.set $a7 (i32x4.add (local.get $a7) (v128.const i32x4 29 30 31 32)))
      (local.set $f (f64.add (local.get $f) (f64.const 0.5)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $turn (local.get $n)))
    ;; sum of every lane of every accumulator, weighted by its position
    (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (local.get $a1) (i32x4.splat (i32.const 2)))))
    (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (local.get $a2) (i32x4.splat (i32.const 3)))))
    (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (local.get $a3) (i32x4.splat (i32.const 4)))))
    (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (local.get $a4) (i32x4.splat (i32.const 5)))))
    (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (local.get $a5) (i32x4.splat (i32.const 6)))))
    (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (local.get $a6) (i32x4.splat (i32.const 7)))))
    (local.set $a0 (i32x4.add (local.get $a0) (i32x4.mul (local.get $a7) (i32x4.splat (i32.const 8)))))
    (local.set $sum (i64.add (i64.extend_i32_u (i32x4.extract_lane 0 (local.get $a0)))
                             (i64.extend_i32_u (i32x4.extract_lane 1 (local.get $a0)))))
    (local.set $sum (i64.add (local.get $sum) (i64.extend_i32_u (i32x4.extract_lane 2 (local.get $a0)))))
    (local.set $sum (i64.add (local.get $sum) (i64.extend_i32_u (i32x4.extract_lane 3 (local.get $a0)))))
    (i64.add (local.get $sum) (i64.trunc_f64_u (local.get $f)))))
"#;

/// The same checksum computed here, with the same 32-bit lane wrap-around.
fn expected(n: u32) -> i64 {
    let mut total: i64 = 0;
    for lane in 0..4u32 {
        let mut lane_sum = 0u32;
        for acc in 0..8u32 {
            let step = acc * 4 + lane + 1;
            lane_sum = lane_sum.wrapping_add(step.wrapping_mul(n).wrapping_mul(acc + 1));
        }
        total += lane_sum as i64;
    }
    total + (n as i64) / 2
}

#[test]
fn epoch_slow_path_keeps_vector_registers_and_moves_the_deadline_on() {
    let engine = Engine::new(&wasmops_runtime::engine_config(
        None,
        wasmops_runtime::Profiler::None,
    ))
    .unwrap();
    let module = Module::new(&engine, ACCUMULATE).unwrap();

    let mut store = Store::new(&engine, 0u64);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| {
        *cx.data_mut() += 1;
        Ok(UpdateDeadline::Continue(1))
    });
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    let run = instance
        .get_typed_func::<i32, i64>(&mut store, "run")
        .unwrap();

    // Tick fast so the loop takes the slow path many times.
    let ticker = Ticker::start(&engine, Duration::from_micros(200));
    let n = 100_000_000u32;
    let started = Instant::now();
    let got = run.call(&mut store, n as i32).unwrap();
    let took = started.elapsed();
    let ticks = ticker.finish();
    let callbacks = *store.data();

    assert_eq!(
        got,
        expected(n),
        "accumulators changed across epoch slow-path calls"
    );
    // Each slow-path call must have moved the deadline a tick ahead: callbacks are
    // bounded by ticks, not by loop turns (a stale deadline would give ~n calls).
    assert!(
        callbacks >= 10,
        "the slow path ran only {callbacks} times in {took:?}; the test needs more ticks"
    );
    assert!(
        callbacks <= ticks + 1,
        "{callbacks} slow-path calls for {ticks} epoch ticks"
    );
}

/// A call tree without loops: `$l0` is a leaf returning 1 and `$lK` adds ten
/// calls of `$l(K-1)`, so `run` returns 10^levels after as many leaf calls.
/// Only the entry checks of the calling functions bound its running time.
fn call_tree(levels: u32) -> String {
    let mut wat = String::from("(module\n  (func $l0 (result i64) (i64.const 1))\n");
    for level in 1..=levels {
        let mut body = format!("(call $l{})", level - 1);
        for _ in 1..10 {
            body = format!("(i64.add {body} (call $l{}))", level - 1);
        }
        wat += &format!("  (func $l{level} (result i64) {body})\n");
    }
    wat += &format!("  (func (export \"run\") (result i64) (call $l{levels}))\n");
    // A function that spins, and one that only fills memory.
    wat += "  (func (export \"spin\") (loop $again (br $again)))\n";
    wat += "  (memory (export \"memory\") 1)\n";
    wat += "  (func (export \"fill\") (param $len i32) (memory.fill (i32.const 0) (i32.const 7) (local.get $len)))\n)";
    wat
}

/// Ticks the engine's epoch every `period` until dropped; returns the tick count.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Ticker {
    fn start(engine: &Engine, period: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (engine.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut ticks = 0u64;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(period);
                engine.increment_epoch();
                ticks += 1;
            }
            ticks
        });
        Ticker {
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The call-tree module of `levels` levels, instantiated on the production engine config.
fn instantiate<T: 'static>(levels: u32, data: T) -> (Engine, Store<T>, Instance) {
    let engine = Engine::new(&wasmops_runtime::engine_config(
        None,
        wasmops_runtime::Profiler::None,
    ))
    .unwrap();
    let module = Module::new(&engine, call_tree(levels)).unwrap();
    let mut store = Store::new(&engine, data);
    let instance = Instance::new(&mut store, &module, &[]).unwrap();
    (engine, store, instance)
}

fn is_interrupt(err: &wasmtime::Error) -> bool {
    err.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}

#[test]
fn a_call_tree_without_loops_is_stopped_at_the_deadline() {
    // 10^10 leaf calls: tens of seconds if nothing checked the epoch.
    let (engine, mut store, instance) = instantiate(10, ());
    let run = instance
        .get_typed_func::<(), i64>(&mut store, "run")
        .unwrap();
    store.set_epoch_deadline(2);
    let ticker = Ticker::start(&engine, Duration::from_millis(5));
    let result = run.call(&mut store, ());
    ticker.finish();
    match result {
        Err(e) => assert!(is_interrupt(&e), "expected an epoch interrupt, got {e:?}"),
        Ok(v) => panic!("the call tree ran to completion ({v}): entry checks did not stop it"),
    }
}

#[test]
fn entry_checks_move_the_deadline_on() {
    // 10^8 leaf calls, well under a second, with a tick every 200 µs.
    let (engine, mut store, instance) = instantiate(8, 0u64);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| {
        *cx.data_mut() += 1;
        Ok(UpdateDeadline::Continue(1))
    });
    let run = instance
        .get_typed_func::<(), i64>(&mut store, "run")
        .unwrap();
    let ticker = Ticker::start(&engine, Duration::from_micros(200));
    let got = run.call(&mut store, ()).unwrap();
    let ticks = ticker.finish();
    let callbacks = *store.data();
    assert_eq!(
        got, 100_000_000,
        "the call tree's sum changed across entry slow-path calls"
    );
    assert!(
        callbacks >= 1,
        "the entry check never took the slow path in {ticks} ticks"
    );
    assert!(
        callbacks <= ticks + 1,
        "{callbacks} slow-path calls for {ticks} epoch ticks"
    );
}

#[test]
fn a_spinning_function_is_stopped_at_the_deadline() {
    let (engine, mut store, instance) = instantiate(1, ());
    let spin = instance
        .get_typed_func::<(), ()>(&mut store, "spin")
        .unwrap();
    store.set_epoch_deadline(2);
    let ticker = Ticker::start(&engine, Duration::from_millis(5));
    let err = spin.call(&mut store, ()).unwrap_err();
    ticker.finish();
    assert!(
        is_interrupt(&err),
        "expected an epoch interrupt, got {err:?}"
    );
}

#[test]
fn a_bulk_fill_past_the_deadline_is_interrupted_and_writes_nothing() {
    let (engine, mut store, instance) = instantiate(1, ());
    let fill = instance
        .get_typed_func::<i32, ()>(&mut store, "fill")
        .unwrap();
    let memory = instance.get_memory(&mut store, "memory").unwrap();

    // Before the deadline the fill runs and writes exactly `len` bytes.
    store.set_epoch_deadline(1);
    fill.call(&mut store, 1000).unwrap();
    let data = memory.data(&store);
    assert!(
        data[..1000].iter().all(|&b| b == 7) && data[1000] == 0,
        "memory.fill wrote the wrong bytes"
    );

    // Past it, the call is interrupted before the fill writes anything.
    store.set_epoch_deadline(1);
    engine.increment_epoch();
    engine.increment_epoch();
    let err = fill.call(&mut store, 2000).unwrap_err();
    assert!(
        is_interrupt(&err),
        "expected an epoch interrupt, got {err:?}"
    );
    assert_eq!(
        memory.data(&store)[1500],
        0,
        "the interrupted fill wrote memory"
    );
}
