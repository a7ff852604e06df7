//! wasmops: one output row of an 8-bit depthwise convolution, in i32 (tract-core's
//! `QDepthWiseConv` requantises it). wasm has its own SIMD version
//! (`wasm/depthwise_q8.rs`); this is the portable one, which it also uses for the
//! points its vector loops leave.

/// `out[i] = bias + Σ_t x(offsets[t] + i * stride) * taps[t]`, `x` read at `input` as u8,
/// or as i8 when `signed`. Every tap must fit an i16 (a difference of two 8-bit
/// values does).
///
/// # Safety
/// `input.offset(offsets[t] + (i * stride) as isize)` must be readable for every tap and
/// every `i` below `out.len()`.
pub unsafe fn depthwise_q8_row(
    input: *const u8,
    signed: bool,
    taps: &[i32],
    offsets: &[isize],
    stride: usize,
    bias: i32,
    out: &mut [i32],
) {
    debug_assert_eq!(taps.len(), offsets.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    unsafe {
        crate::wasm::depthwise_q8_row(input, signed, taps, offsets, stride, bias, out)
    }
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    unsafe {
        depthwise_q8_row_portable(input, signed, taps, offsets, stride, bias, out)
    }
}

/// [`depthwise_q8_row`] in plain loops, taps outer (natively LLVM vectorises the
/// contiguous case).
///
/// # Safety
/// As [`depthwise_q8_row`].
pub unsafe fn depthwise_q8_row_portable(
    input: *const u8,
    signed: bool,
    taps: &[i32],
    offsets: &[isize],
    stride: usize,
    bias: i32,
    out: &mut [i32],
) {
    out.fill(bias);
    for (&w, &off) in taps.iter().zip(offsets) {
        unsafe {
            let p = input.offset(off);
            if signed {
                accumulate(p as *const i8, stride, w, out)
            } else {
                accumulate(p, stride, w, out)
            }
        }
    }
}

#[inline(always)]
unsafe fn accumulate<X: Copy + Into<i32>>(p: *const X, stride: usize, w: i32, out: &mut [i32]) {
    unsafe {
        if stride == 1 {
            let xs = std::slice::from_raw_parts(p, out.len());
            out.iter_mut().zip(xs).for_each(|(o, x)| *o += (*x).into() * w);
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                *o += (*p.add(i * stride)).into() * w;
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// The dispatched row (SIMD in wasm) against the portable loops: both strides the
    /// vector code takes and one it does not, both signs, rows around its block sizes.
    #[test]
    fn row_matches_portable() {
        let data: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let taps = [-255, 17, 255, -3, 0, 128, -128, 91, 7];
        let offsets: Vec<isize> = (0..9).map(|t| (t / 3) * 300 + (t % 3)).collect();
        for stride in [1usize, 2, 3] {
            for signed in [false, true] {
                for len in [0usize, 1, 7, 8, 9, 15, 16, 17, 31, 33, 56, 112] {
                    let mut got = vec![0; len];
                    let mut want = vec![0; len];
                    unsafe {
                        depthwise_q8_row(data.as_ptr(), signed, &taps, &offsets, stride, -77, &mut got);
                        depthwise_q8_row_portable(
                            data.as_ptr(),
                            signed,
                            &taps,
                            &offsets,
                            stride,
                            -77,
                            &mut want,
                        );
                    }
                    assert_eq!(got, want, "stride {stride} signed {signed} len {len}");
                }
            }
        }
    }
}
