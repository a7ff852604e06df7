//! The quantised matrix product as the guest's patched tract optimises it
//! (guest/vendor/README.md, "the quantised matrix product's epilogue"): zero
//! zero-points left out, one `Requant` pass, fused into the product's store.
//! Checked against the same product
//! evaluated with every parameter as a runtime input, which takes tract's
//! unpatched path (zero-point sums, Scale, Add, Min, Max, Cast).

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::einsum::EinSum;

/// Deterministic values in `lo..=hi`.
fn values(seed: u64, len: usize, lo: i32, hi: i32) -> Vec<i32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((state >> 33) % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

struct Case {
    m: usize,
    k: usize,
    n: usize,
    /// The weights' zero point (0 is what onnxruntime writes).
    w0: i8,
    seed: u64,
    /// The output written `[n, m]`: C's rows (the kernel's m) adjacent, so the
    /// requantised store scatters each tile row by C's column stride instead of
    /// writing it in place.
    transposed: bool,
}

/// Weights `[m, k]` i8 with one scale per row, activations `[k, n]` u8, output u8.
fn params(case: &Case) -> Vec<Tensor> {
    let Case {
        m, k, n, w0, seed, ..
    } = *case;
    let w: Vec<i8> = values(seed, m * k, -127, 127)
        .into_iter()
        .map(|v| v as i8)
        .collect();
    let x: Vec<u8> = values(seed + 1, k * n, 0, 255)
        .into_iter()
        .map(|v| v as u8)
        .collect();
    let bias = values(seed + 2, m, -2000, 2000);
    let w_scale: Vec<f32> = values(seed + 3, m, 1, 100)
        .iter()
        .map(|v| *v as f32 * 1e-4)
        .collect();
    vec![
        Tensor::from_shape(&[m, k], &w).unwrap(),
        Tensor::from_shape(&[k, n], &x).unwrap(),
        Tensor::from_shape(&[m], &bias).unwrap(),
        Tensor::from_shape(&[m], &vec![w0; m]).unwrap(),
        Tensor::from_shape(&[m], &w_scale).unwrap(),
        tensor0(117u8),
        tensor0(0.02f32),
        tensor0(121u8),
        tensor0(0.05f32),
    ]
}

fn einsum(case: &Case) -> EinSum {
    let expr = match case.transposed {
        false => "mk,kn,m,m,m,,,,->mn",
        true => "mk,kn,m,m,m,,,,->nm",
    };
    EinSum::newq(expr.parse().unwrap(), i32::datum_type(), u8::datum_type())
}

/// Activations as the only input, everything else constant: what a model from
/// `wasmops build` looks like. Returns the optimised model.
fn constant_parameters(case: &Case) -> TypedModel {
    let params = params(case);
    let mut model = TypedModel::default();
    let mut wires = tvec!();
    for (ix, t) in params.into_iter().enumerate() {
        wires.push(if ix == 1 {
            model.add_source("x", u8::fact([case.k, case.n])).unwrap()
        } else {
            model.add_const(format!("p{ix}"), t).unwrap()
        });
    }
    let out = model.wire_node("mm", einsum(case), &wires).unwrap();
    model.select_output_outlets(&out).unwrap();
    model.into_optimized().unwrap()
}

/// Every parameter a runtime input: nothing is known to be zero or constant.
fn runtime_parameters(case: &Case) -> Tensor {
    let params = params(case);
    let mut model = TypedModel::default();
    let mut wires = tvec!();
    for (ix, t) in params.iter().enumerate() {
        wires.push(
            model
                .add_source(format!("p{ix}"), TypedFact::shape_and_dt_of(t))
                .unwrap(),
        );
    }
    let out = model.wire_node("mm", einsum(case), &wires).unwrap();
    model.select_output_outlets(&out).unwrap();
    let model = model.into_optimized().unwrap();
    assert!(
        ops(&model).iter().any(|o| o == "Scale"),
        "not the unpatched chain: {:?}",
        ops(&model)
    );
    let plan = model.into_runnable().unwrap();
    let inputs = params.into_iter().map(|t| t.into_tvalue()).collect();
    plan.run(inputs).unwrap().remove(0).into_tensor()
}

fn ops(model: &TypedModel) -> Vec<String> {
    model
        .nodes
        .iter()
        .map(|n| n.op.name().to_string())
        .collect()
}

fn check(case: Case) {
    let model = constant_parameters(&case);
    let names = ops(&model);
    // With symmetric weights (what onnxruntime writes) the requantisation is
    // done in the product's store (tract-core patch, `ProtoFusedSpec::Requant`):
    // no Requant pass, the product writes u8. Otherwise the activation sums'
    // correction comes between the two and Requant stays a pass of its own.
    let product = model
        .nodes
        .iter()
        .find(|n| n.op.name() == "OptMatMul")
        .expect("an OptMatMul");
    let info = product.op.info().unwrap().join("\n");
    let fused = info.contains(">>> requant(c0=121, 0..=255) >>> store");
    assert_eq!(fused, case.w0 == 0, "{info}");
    assert_eq!(
        names.iter().any(|o| o == "Requant"),
        !fused,
        "Requant in {names:?}"
    );
    if fused {
        assert_eq!(
            product.outputs[0].fact.datum_type.unquantized(),
            u8::datum_type()
        );
    }
    for chain_op in ["Scale", "Min", "Max"] {
        assert!(
            !names.iter().any(|o| o == chain_op),
            "{chain_op} left in {names:?}"
        );
    }
    // The activations' sums only matter through a non-zero weight zero point.
    let sums = names.iter().any(|o| o.starts_with("Reduce"));
    assert_eq!(sums, case.w0 != 0, "activation sums in {names:?}");

    let x = params(&case).remove(1);
    let plan = model.into_runnable().unwrap();
    let got = plan
        .run(tvec!(x.into_tvalue()))
        .unwrap()
        .remove(0)
        .into_tensor();
    let expected = runtime_parameters(&case);
    assert_eq!(got.shape(), expected.shape());
    let got = got.cast_to::<i32>().unwrap();
    let expected = expected.cast_to::<i32>().unwrap();
    let got = got.try_as_plain_ram().unwrap();
    let expected = expected.try_as_plain_ram().unwrap();
    let (got, expected) = (
        got.as_slice::<i32>().unwrap(),
        expected.as_slice::<i32>().unwrap(),
    );
    let mut differ = 0;
    for (g, e) in got.iter().zip(expected) {
        // Both round ties to even; the unpatched path folds the three scales in
        // another order, so a product can land one step away at a tie.
        assert!((g - e).abs() <= 1, "{g} vs {e}");
        differ += (g != e) as usize;
    }
    assert!(
        differ * 100 <= got.len(),
        "{differ} of {} values differ",
        got.len()
    );
    // Saturation at both ends is exercised.
    assert!(
        got.contains(&0) && got.contains(&255),
        "no clamped values: {got:?}"
    );
}

#[test]
fn symmetric_weights_per_channel() {
    check(Case {
        m: 16,
        k: 72,
        n: 49,
        w0: 0,
        seed: 1,
        transposed: false,
    });
    for (seed, transposed) in [(2, false), (4, true)] {
        check(Case {
            m: 40,
            k: 9,
            n: 300,
            w0: 0,
            seed,
            transposed,
        });
    }
}

#[test]
fn asymmetric_weights_keep_their_sums() {
    check(Case {
        m: 24,
        k: 32,
        n: 64,
        w0: 3,
        seed: 3,
        transposed: false,
    });
}

/// `round_shift_clamp`, the rounding `Requant` and the quantize-linear ops
/// share (ties to even, zero point, clamp, read from the float's bits), against
/// `round_ties_even`, a saturating add and a clamp: every tie, values far past
/// the range, infinities and NaN (which counts as 0, as `NaN as i32` does).
#[test]
fn the_shared_rounding_matches_round_ties_even() {
    use tract_nnef::tract_core::ops::quant::round_shift_clamp;
    let mut ps: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.25).collect();
    ps.extend(
        values(7, 20_000, -4_000_000, 4_000_000)
            .iter()
            .map(|v| *v as f32 * 1e-3),
    );
    ps.extend([1e9, -1e9, 8_388_607.5, -8_388_609.0, f32::MAX, f32::MIN]);
    ps.extend([f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -0.0]);
    let mut checked = 0;
    for (lo, hi) in [(i8::MIN as i32, i8::MAX as i32), (0, u8::MAX as i32)] {
        for zp in [-128, -3, 0, 1, 127, 128, 255] {
            for &p in &ps {
                let rounded = if p.is_nan() {
                    0
                } else {
                    p.round_ties_even() as i32
                };
                let want = rounded.saturating_add(zp).clamp(lo, hi);
                let got = round_shift_clamp(p, zp as f32, lo as f32, hi as f32);
                assert_eq!(got, want, "p {p}, zero point {zp}, range {lo}..={hi}");
                checked += 1;
            }
        }
    }
    assert!(checked > 300_000, "{checked}");
}

/// `MatMulInteger` as `wasmops build` writes a QDQ classifier: u8 activations
/// with a zero point times constant int8 weights `[k, n]`. The weights' sums
/// over k (for the activations' zero point) are computed once while optimising
/// (tract-core patch): no Cast or Reduce of the weights in the plan, which would
/// keep them unpacked beside their packed copy and sum them on every run.
#[test]
fn constant_weights_are_summed_once() {
    let (m, k, n) = (1, 200, 37);
    let x: Vec<u8> = values(11, m * k, 0, 255)
        .into_iter()
        .map(|v| v as u8)
        .collect();
    let w: Vec<i8> = values(12, k * n, -127, 127)
        .into_iter()
        .map(|v| v as i8)
        .collect();
    let x0 = 113u8;
    let mut model = TypedModel::default();
    let mut wires = tvec!(
        model.add_source("x", u8::fact([m, k])).unwrap(),
        model
            .add_const("w", Tensor::from_shape(&[k, n], &w).unwrap())
            .unwrap(),
        model.add_const("bias", tensor0(0i32)).unwrap(),
        model.add_const("x0", tensor0(x0)).unwrap(),
        model.add_const("x_scale", tensor0(1f32)).unwrap(),
        model.add_const("w0", tensor0(0i8)).unwrap(),
        model.add_const("w_scale", tensor0(1f32)).unwrap(),
    );
    wires.push(model.add_const("c0", tensor0(0i32)).unwrap());
    wires.push(model.add_const("c_scale", tensor0(1f32)).unwrap());
    let op = EinSum::newq(
        "mk,kn,,,,,,,->mn".parse().unwrap(),
        i32::datum_type(),
        i32::datum_type(),
    );
    let out = model.wire_node("mm", op, &wires).unwrap();
    model.select_output_outlets(&out).unwrap();
    let model = model.into_optimized().unwrap();
    let names = ops(&model);
    assert!(
        !names.iter().any(|o| o == "Cast" || o.starts_with("Reduce")),
        "{names:?}"
    );

    let input = Tensor::from_shape(&[m, k], &x).unwrap();
    let plan = model.into_runnable().unwrap();
    let got = plan.run(tvec!(input.into_tvalue())).unwrap().remove(0);
    let got = got.cast_to::<i32>().unwrap();
    let got = got.try_as_plain_ram().unwrap();
    let got = got.as_slice::<i32>().unwrap();
    for row in 0..m {
        for col in 0..n {
            let want: i32 = (0..k)
                .map(|i| (x[row * k + i] as i32 - x0 as i32) * w[i * n + col] as i32)
                .sum();
            assert_eq!(got[row * n + col], want, "row {row}, column {col}");
        }
    }
}
