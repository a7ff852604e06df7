//! `cargo bench -p wasmops`: builds the fixture models into components and runs
//! the same in-wasm vs native comparison as `wasmops bench`, printing its table
//! and JSON line for each. `WASMOPS_BENCH_SECONDS` sets the time per side.

use std::path::Path;
use std::time::Duration;

use wasmops_cli::commands::bench::{self, BenchOptions};
use wasmops_compiler::BuildOptions;

fn main() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let seconds: f64 = std::env::var("WASMOPS_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (name, batch) in [
        ("mobilenet_v2_style", 1),
        ("small_cnn", 8),
        ("scaler_mlp", 32),
        ("random_forest_classifier", 32),
    ] {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let onnx = std::fs::read(fixtures.join(name).join("model.onnx")).unwrap();
        let opts = BuildOptions {
            name: name.into(),
            version: "0.0.0".into(),
            cache_dir: Some(wasmops_cli::args::default_cache_dir()),
            ..Default::default()
        };
        let built = wasmops_compiler::build(&onnx, &opts).expect("fixture builds");
        let report = bench::run(
            &built.component,
            &onnx,
            name,
            &BenchOptions {
                batch,
                budget: Duration::from_secs_f64(seconds),
                ..Default::default()
            },
        )
        .expect("bench runs");
        bench::print(&report);
        println!();
    }
}
