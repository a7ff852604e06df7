//! The integer depthwise convolution (tract-core patch, `QDepthWiseConv`):
//! a quantised convolution whose group is its channel count, with constant
//! weights and parameters (what `wasmops build` makes of onnxruntime's QDQ
//! depthwise convolutions), is optimised into one `QDepthWiseConv` and
//! computes what onnxruntime's `QLinearConv` defines. Checked against a
//! reference written out here loop by loop: the i32 sum of
//! `(x - x0) * (w - w0[c])` over the taps inside the image, plus the bias,
//! times `x_scale * w_scale[c] / y_scale`, rounded half to even, plus `y0`,
//! clamped to the output type.

use tract_nnef::internal::*;
use tract_nnef::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec, PoolSpec};
use tract_nnef::tract_core::ops::nn::DataFormat;

/// Deterministic values in `lo..=hi`.
fn values(seed: u64, len: usize, lo: i32, hi: i32) -> Vec<i32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            lo + ((state >> 33) % (hi - lo + 1) as u64) as i32
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Case {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kernel: [usize; 2],
    strides: [usize; 2],
    dilations: [usize; 2],
    /// Padding before and after, per spatial axis.
    pads: [[usize; 2]; 2],
    /// Signed activations (i8) instead of u8; the output takes the same type.
    signed: bool,
    /// A weight zero point per channel (onnxruntime writes 0).
    asymmetric: bool,
    seed: u64,
}

impl Case {
    fn out_hw(&self) -> [usize; 2] {
        let dims = [self.h, self.w];
        std::array::from_fn(|i| {
            let span = self.dilations[i] * (self.kernel[i] - 1) + 1;
            (dims[i] + self.pads[i][0] + self.pads[i][1] - span) / self.strides[i] + 1
        })
    }
}

struct Params {
    x: Vec<i32>,
    w: Vec<i32>,
    bias: Vec<i32>,
    x0: i32,
    x_scale: f32,
    w0: Vec<i32>,
    w_scale: Vec<f32>,
    y0: i32,
    y_scale: f32,
}

fn params(case: &Case) -> Params {
    let (lo, hi) = if case.signed { (-128, 127) } else { (0, 255) };
    let taps = case.kernel[0] * case.kernel[1];
    Params {
        x: values(case.seed, case.n * case.c * case.h * case.w, lo, hi),
        w: values(case.seed + 1, case.c * taps, -127, 127),
        bias: values(case.seed + 2, case.c, -3000, 3000),
        x0: if case.signed { -3 } else { 117 },
        x_scale: 0.02,
        w0: if case.asymmetric {
            values(case.seed + 3, case.c, -5, 5)
        } else {
            vec![0; case.c]
        },
        w_scale: values(case.seed + 4, case.c, 1, 100)
            .iter()
            .map(|v| *v as f32 * 4e-4)
            .collect(),
        y0: if case.signed { 5 } else { 121 },
        y_scale: 0.03,
    }
}

/// The model `wasmops build` hands the guest: activations in, everything else
/// constant. Returns the optimised model.
fn optimised(case: &Case, p: &Params) -> TypedModel {
    let c = case.c;
    let [kh, kw] = case.kernel;
    let op = Conv {
        pool_spec: PoolSpec {
            data_format: DataFormat::NCHW,
            kernel_shape: tvec!(kh, kw),
            padding: PaddingSpec::Explicit(
                tvec!(case.pads[0][0], case.pads[1][0]),
                tvec!(case.pads[0][1], case.pads[1][1]),
            ),
            dilations: Some(tvec!(case.dilations[0], case.dilations[1])),
            strides: Some(tvec!(case.strides[0], case.strides[1])),
            input_channels: c,
            output_channels: c,
        },
        kernel_fmt: KernelFormat::OIHW,
        group: c,
        q_params: Some(if case.signed {
            i8::datum_type()
        } else {
            u8::datum_type()
        }),
    };
    let mut model = TypedModel::default();
    let x_fact = if case.signed {
        i8::fact([case.n, c, case.h, case.w])
    } else {
        u8::fact([case.n, c, case.h, case.w])
    };
    let x = model.add_source("x", x_fact).unwrap();
    let w: Vec<i8> = p.w.iter().map(|&v| v as i8).collect();
    let consts = [
        Tensor::from_shape(&[c, 1, kh, kw], &w).unwrap(),
        Tensor::from_shape(&[c], &p.bias).unwrap(),
        tensor0(p.x0),
        tensor0(p.x_scale),
        Tensor::from_shape(&[c], &p.w0).unwrap(),
        Tensor::from_shape(&[c], &p.w_scale).unwrap(),
        tensor0(p.y0),
        tensor0(p.y_scale),
    ];
    let mut wires = tvec!(x);
    for (ix, t) in consts.into_iter().enumerate() {
        wires.push(model.add_const(format!("p{ix}"), t).unwrap());
    }
    let out = model.wire_node("dw", op, &wires).unwrap();
    model.select_output_outlets(&out).unwrap();
    model.into_optimized().unwrap()
}

/// onnxruntime's QLinearConv for a depthwise kernel, loop by loop.
fn reference(case: &Case, p: &Params) -> Vec<i32> {
    let [oh, ow] = case.out_hw();
    let [kh, kw] = case.kernel;
    let (lo, hi) = if case.signed { (-128, 127) } else { (0, 255) };
    let mut out = vec![];
    for n in 0..case.n {
        for c in 0..case.c {
            let scale = p.w_scale[c] * p.x_scale / p.y_scale;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut sum = p.bias[c];
                    for ky in 0..kh {
                        for kx in 0..kw {
                            let iy = (oy * case.strides[0] + ky * case.dilations[0]) as isize
                                - case.pads[0][0] as isize;
                            let ix = (ox * case.strides[1] + kx * case.dilations[1]) as isize
                                - case.pads[1][0] as isize;
                            if iy < 0 || ix < 0 || iy >= case.h as isize || ix >= case.w as isize
                            {
                                continue;
                            }
                            let x = p.x[((n * case.c + c) * case.h + iy as usize) * case.w
                                + ix as usize];
                            let w = p.w[(c * kh + ky) * kw + kx];
                            sum += (x - p.x0) * (w - p.w0[c]);
                        }
                    }
                    let q = (sum as f32 * scale).round_ties_even() as i32 + p.y0;
                    out.push(q.clamp(lo, hi));
                }
            }
        }
    }
    out
}

fn check(case: Case) {
    let p = params(&case);
    let model = optimised(&case, &p);
    let names: Vec<String> = model
        .nodes
        .iter()
        .map(|n| n.op.name().to_string())
        .collect();
    assert!(
        names.iter().any(|n| n == "QDepthWiseConv"),
        "not the integer depthwise kernel: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == "OptMatMul"),
        "a matrix product is left: {names:?}"
    );
    let x = if case.signed {
        let x: Vec<i8> = p.x.iter().map(|&v| v as i8).collect();
        Tensor::from_shape(&[case.n, case.c, case.h, case.w], &x).unwrap()
    } else {
        let x: Vec<u8> = p.x.iter().map(|&v| v as u8).collect();
        Tensor::from_shape(&[case.n, case.c, case.h, case.w], &x).unwrap()
    };
    let plan = model.into_runnable().unwrap();
    let got = plan
        .run(tvec!(x.into_tvalue()))
        .unwrap()
        .remove(0)
        .into_tensor();
    let [oh, ow] = case.out_hw();
    assert_eq!(got.shape(), &[case.n, case.c, oh, ow]);
    let got: Vec<i32> = if case.signed {
        let t = got.try_as_plain_ram().unwrap();
        let s = unsafe { t.as_slice_unchecked::<i8>() };
        s.iter().map(|&v| v as i32).collect()
    } else {
        let t = got.try_as_plain_ram().unwrap();
        let s = unsafe { t.as_slice_unchecked::<u8>() };
        s.iter().map(|&v| v as i32).collect()
    };
    let expected = reference(&case, &p);
    let first = got.iter().zip(&expected).position(|(g, e)| g != e);
    assert!(
        first.is_none(),
        "value {} of {}: {} vs {}",
        first.unwrap(),
        got.len(),
        got[first.unwrap()],
        expected[first.unwrap()]
    );
    // Saturation at both ends is exercised.
    let (lo, hi) = if case.signed { (-128, 127) } else { (0, 255) };
    assert!(
        got.contains(&lo) && got.contains(&hi),
        "no clamped values"
    );
}

const BASE: Case = Case {
    n: 1,
    c: 24,
    h: 19,
    w: 23,
    kernel: [3, 3],
    strides: [1, 1],
    dilations: [1, 1],
    pads: [[1, 1], [1, 1]],
    signed: false,
    asymmetric: false,
    seed: 1,
};

/// MobileNet's two depthwise shapes: 3×3, padding 1, stride 1 and 2.
#[test]
fn mobilenet_shapes() {
    check(BASE);
    check(Case {
        strides: [2, 2],
        seed: 2,
        ..BASE
    });
}

/// Uneven padding and strides, dilation, a 5×3 kernel, a batch of two,
/// kernels wider than the padding (taps that never land inside for the edge
/// columns).
#[test]
fn geometry() {
    check(Case {
        n: 2,
        kernel: [5, 3],
        strides: [2, 3],
        dilations: [1, 2],
        pads: [[2, 0], [0, 3]],
        seed: 3,
        ..BASE
    });
    check(Case {
        c: 7,
        h: 6,
        w: 4,
        kernel: [3, 3],
        pads: [[0, 0], [0, 0]],
        seed: 4,
        ..BASE
    });
}

/// i8 in and out, and weights with a zero point per channel.
#[test]
fn signed_and_asymmetric() {
    check(Case {
        signed: true,
        seed: 5,
        ..BASE
    });
    check(Case {
        asymmetric: true,
        strides: [2, 2],
        seed: 6,
        ..BASE
    });
}
