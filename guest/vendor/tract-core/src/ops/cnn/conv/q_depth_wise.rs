//! wasmops: a depthwise convolution over 8-bit integers (u8 or i8 in and out,
//! i32 sums, one requantisation per channel), for quantised convolutions
//! whose group is their channel count.
//!
//! Without it tract runs such a convolution through im2col and one matrix
//! product per channel (a product with m = 1), so onnxruntime's QDQ models
//! had their depthwise convolutions kept float by wasmops' build, each with a
//! dequantize pass before it and a quantize pass after it over the whole
//! activation. This op copies each channel's 8-bit plane into a buffer
//! padded with the input's zero point, sums the taps over it
//! (`tract_linalg::depthwise_q8_row`, SIMD in wasm; with stride 1 one run
//! covers the whole plane, so small planes do not pay a call per row), and
//! writes each output row requantised as tract's `Requant` does: `round_shift_clamp(sum * scale[c], y0, min, max)` with
//! `scale[c] = x_scale * k_scale[c] / y_scale`, onnxruntime's QLinearConv
//! arithmetic.

use crate::internal::*;
use crate::ops::cnn::Patch;
use crate::ops::nn::DataShape;
use num_traits::AsPrimitive;
use tract_linalg::round_shift_clamp;

#[derive(Debug, Clone, PartialEq)]
pub struct QDepthWise {
    pub patch: Patch,
    pub input_shape: DataShape,
    pub output_shape: DataShape,
    /// The kernel minus its zero point: i32 `[C, KH * KW]`, taps row-major.
    pub weights: Arc<Tensor>,
    /// i32 `[C]`, in the product's scale (`x_scale * k_scale[c]`).
    pub bias: Arc<Tensor>,
    /// f32 `[C]`: `x_scale * k_scale[c] / y_scale`.
    pub scales: Arc<Tensor>,
    /// The input's zero point.
    pub x0: i32,
    /// The output's zero point.
    pub y0: i32,
    /// The output's datum type (u8 or i8, maybe with its quantisation).
    pub dt: DatumType,
}

impl Eq for QDepthWise {}

impl Op for QDepthWise {
    fn name(&self) -> StaticName {
        "QDepthWiseConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{:?} x0: {} y0: {} to {:?}", self.patch, self.x0, self.y0, self.dt)])
    }

    op_as_typed_op!();
}

impl EvalOp for QDepthWise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = args_1!(inputs);
        let mut y = unsafe { Tensor::uninitialized_dt(self.dt, &self.output_shape.shape)? };
        match (x.datum_type().unquantized(), self.dt.unquantized()) {
            (DatumType::U8, DatumType::U8) => self.eval_t::<u8, u8>(&x, &mut y)?,
            (DatumType::U8, DatumType::I8) => self.eval_t::<u8, i8>(&x, &mut y)?,
            (DatumType::I8, DatumType::U8) => self.eval_t::<i8, u8>(&x, &mut y)?,
            (DatumType::I8, DatumType::I8) => self.eval_t::<i8, i8>(&x, &mut y)?,
            (a, b) => bail!("QDepthWiseConv: {a:?} in, {b:?} out is not supported"),
        }
        Ok(tvec!(y.into_tvalue()))
    }
}

impl QDepthWise {
    fn eval_t<X, Y>(&self, x: &Tensor, y: &mut Tensor) -> TractResult<()>
    where
        X: Datum + Copy + AsPrimitive<i32>,
        Y: Datum + Copy,
        i32: AsPrimitive<Y>,
    {
        let ish = &self.input_shape;
        let osh = &self.output_shape;
        ensure!(x.shape() == &*ish.shape, "QDepthWiseConv: input shape {:?}", x.shape());
        let (ih, iw) = (ish.hw_dims()[0], ish.hw_dims()[1]);
        let (oh, ow) = (osh.hw_dims()[0], osh.hw_dims()[1]);
        let spec = &self.patch.spec;
        let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
        let (sy, sx) = (spec.strides[0], spec.strides[1]);
        let (dy, dx) = (spec.dilations[0], spec.dilations[1]);
        let (py, px) = (self.patch.pad_before[0] as isize, self.patch.pad_before[1] as isize);
        let n = *ish.n().unwrap_or(&1);
        let c = *ish.c();
        let (ins, ics, ihs, iws) =
            (*ish.n_stride().unwrap_or(&0), *ish.c_stride(), *ish.h_stride(), *ish.w_stride());
        let (ons, ocs, ohs, ows) =
            (*osh.n_stride().unwrap_or(&0), *osh.c_stride(), *osh.h_stride(), *osh.w_stride());

        let xs: &[X] = unsafe { x.as_slice_unchecked::<X>() };
        let ys: &mut [Y] = unsafe { y.as_slice_mut_unchecked::<Y>() };
        let weights = self.weights.try_as_plain_ram()?;
        let weights = weights.as_slice::<i32>()?;
        let bias = self.bias.try_as_plain_ram()?;
        let bias = bias.as_slice::<i32>()?;
        let scales = self.scales.try_as_plain_ram()?;
        let scales = scales.as_slice::<f32>()?;
        let taps_per_channel = kh * kw;
        ensure!(weights.len() == c * taps_per_channel && bias.len() == c && scales.len() == c);

        let (lo, hi) = (
            self.dt.unquantized().min_value().cast_to_scalar::<i32>()? as f32,
            self.dt.unquantized().max_value().cast_to_scalar::<i32>()? as f32,
        );
        let y0 = self.y0 as f32;
        let signed = X::datum_type().is_signed();
        // Each channel's plane is copied into a buffer padded with the input's
        // zero point, as wide and high as the taps reach: every output point
        // then sums all taps, `x * w`, and the zero point's share comes off the
        // bias once (the padding's `(x0 - x0) * w` is 0, as onnxruntime has it).
        let (pw, ph) = (
            (iw + px as usize).max((ow - 1) * sx + (kw - 1) * dx + 1),
            (ih + py as usize).max((oh - 1) * sy + (kh - 1) * dy + 1),
        );
        let x0 = self.x0;
        let x0_byte = if signed { x0 as i8 as u8 } else { x0 as u8 };
        let mut padded = vec![x0_byte; ph * pw];
        let offsets: Vec<isize> =
            (0..kh * kw).map(|t| ((t / kw) * dy * pw + (t % kw) * dx) as isize).collect();
        // With stride 1, output (oy, ox) reads from `oy * pw + ox` on: one run
        // over the plane covers every row, computing `pw - ow` points between
        // rows that are dropped.
        let whole_plane = sx == 1 && sy == 1;
        let run = if whole_plane { (oh - 1) * pw + ow } else { ow };
        let mut acc = vec![0i32; run];
        let xs_bytes = xs.as_ptr() as *const u8;
        for batch in 0..n {
            for ch in 0..c {
                let plane = batch * ins + ch * ics;
                for iy in 0..ih {
                    let dst = &mut padded[(iy + py as usize) * pw + px as usize..][..iw];
                    let src = plane + iy * ihs;
                    if iws == 1 {
                        dst.copy_from_slice(unsafe {
                            std::slice::from_raw_parts(xs_bytes.add(src), iw)
                        });
                    } else {
                        for (ix, d) in dst.iter_mut().enumerate() {
                            *d = unsafe { *xs_bytes.add(src + ix * iws) };
                        }
                    }
                }
                let w = &weights[ch * taps_per_channel..][..taps_per_channel];
                let b = bias[ch] - x0 * w.iter().sum::<i32>();
                let s = scales[ch];
                let out = batch * ons + ch * ocs;
                let mut requant = |oy: usize, acc: &[i32]| {
                    let out = out + oy * ohs;
                    if ows == 1 {
                        ys[out..][..ow].iter_mut().zip(acc).for_each(|(y, a)| {
                            *y = round_shift_clamp(*a as f32 * s, y0, lo, hi).as_()
                        });
                    } else {
                        for (ox, a) in acc.iter().enumerate() {
                            ys[out + ox * ows] = round_shift_clamp(*a as f32 * s, y0, lo, hi).as_();
                        }
                    }
                };
                if whole_plane {
                    unsafe {
                        tract_linalg::depthwise_q8_row(
                            padded.as_ptr(),
                            signed,
                            w,
                            &offsets,
                            1,
                            b,
                            &mut acc,
                        )
                    };
                    for oy in 0..oh {
                        requant(oy, &acc[oy * pw..][..ow]);
                    }
                } else {
                    for oy in 0..oh {
                        unsafe {
                            tract_linalg::depthwise_q8_row(
                                padded.as_ptr().add(oy * sy * pw),
                                signed,
                                w,
                                &offsets,
                                sx,
                                b,
                                &mut acc,
                            )
                        };
                        requant(oy, &acc);
                    }
                }
            }
        }
        Ok(())
    }
}

impl TypedOp for QDepthWise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1);
        ensure!(inputs[0].shape.as_concrete() == Some(&*self.input_shape.shape));
        Ok(tvec!(self.dt.fact(&self.output_shape.shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let points = self.output_shape.shape.iter().product::<usize>();
        let taps = self.patch.spec.kernel_shape.iter().product::<usize>();
        Ok(tvec!((Cost::FMA(i32::datum_type()), (points * taps).to_dim())))
    }

    as_op!();
}
