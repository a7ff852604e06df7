//! wasmops: the 8-bit depthwise row (`generic::depthwise_q8`) in wasm SIMD. Taps are the
//! outer loop and 16 (stride 1) or 8 (stride 2) output points the inner one, their i32
//! sums in registers: per tap and 16 points one load, two widenings to i16 and four
//! `i32x4.extmul_*_i16x8` (the product of two 8-bit differences needs 17 bits), against
//! the portable loop's one 4-lane step per load in wasm (session 44: the fixture's int8
//! depthwise convolutions took more time that way than f32 ones with their
//! quantize/dequantize passes).

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use std::arch::wasm32::*;

/// As `generic::depthwise_q8::depthwise_q8_row`.
///
/// # Safety
/// As `generic::depthwise_q8::depthwise_q8_row`: no lane reads past the last point
/// a tap needs.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub unsafe fn depthwise_q8_row(
    input: *const u8,
    signed: bool,
    taps: &[i32],
    offsets: &[isize],
    stride: usize,
    bias: i32,
    out: &mut [i32],
) {
    unsafe {
        let done = match (stride, signed) {
            (1, false) => unit::<false>(input, taps, offsets, bias, out),
            (1, true) => unit::<true>(input, taps, offsets, bias, out),
            (2, false) => even::<false>(input, taps, offsets, bias, out),
            (2, true) => even::<true>(input, taps, offsets, bias, out),
            _ => 0,
        };
        if done < out.len() {
            crate::generic::depthwise_q8::depthwise_q8_row_portable(
                input.add(done * stride),
                signed,
                taps,
                offsets,
                stride,
                bias,
                &mut out[done..],
            );
        }
    }
}

/// 16 bytes as two i16x8 halves, zero- or sign-extended.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
fn widen<const SIGNED: bool>(v: v128) -> (v128, v128) {
    if SIGNED {
        (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v))
    } else {
        (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v))
    }
}

/// Stride 1: 16 points a step, then one step of 8 when 8 to 15 are left, then the
/// last 8 again, overlapping (the same sums, written twice) when 1 to 7 are left after
/// a step; returns how many were done (all but a run shorter than 8).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn unit<const SIGNED: bool>(
    input: *const u8,
    taps: &[i32],
    offsets: &[isize],
    bias: i32,
    out: &mut [i32],
) -> usize {
    unsafe {
        let len = out.len();
        if len < 8 {
            return 0;
        }
        let b = i32x4_splat(bias);
        let o = out.as_mut_ptr();
        let mut i = 0;
        while i + 16 <= len {
            let (mut a0, mut a1, mut a2, mut a3) = (b, b, b, b);
            for (&w, &off) in taps.iter().zip(offsets) {
                let w = i16x8_splat(w as i16);
                let (lo, hi) = widen::<SIGNED>(v128_load(input.offset(off).add(i) as *const v128));
                a0 = i32x4_add(a0, i32x4_extmul_low_i16x8(lo, w));
                a1 = i32x4_add(a1, i32x4_extmul_high_i16x8(lo, w));
                a2 = i32x4_add(a2, i32x4_extmul_low_i16x8(hi, w));
                a3 = i32x4_add(a3, i32x4_extmul_high_i16x8(hi, w));
            }
            let o = o.add(i) as *mut v128;
            v128_store(o, a0);
            v128_store(o.add(1), a1);
            v128_store(o.add(2), a2);
            v128_store(o.add(3), a3);
            i += 16;
        }
        while i < len {
            // 8 points from `i`, or the last 8.
            let at = i.min(len - 8);
            let (mut a0, mut a1) = (b, b);
            for (&w, &off) in taps.iter().zip(offsets) {
                let w = i16x8_splat(w as i16);
                let v = v128_load64_zero(input.offset(off).add(at) as *const u64);
                let (lo, _) = widen::<SIGNED>(v);
                a0 = i32x4_add(a0, i32x4_extmul_low_i16x8(lo, w));
                a1 = i32x4_add(a1, i32x4_extmul_high_i16x8(lo, w));
            }
            let o = o.add(at) as *mut v128;
            v128_store(o, a0);
            v128_store(o.add(1), a1);
            i = at + 8;
        }
        len
    }
}

/// Stride 2: 8 points per 16-byte load (its even bytes), the last step overlapping
/// the one before. A load reads one byte past its last point, so a step only starts
/// where a later point (whose byte is further on) remains: at most at `len - 9`.
/// Returns how many were done: all but the last point (or a run shorter than 9).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
unsafe fn even<const SIGNED: bool>(
    input: *const u8,
    taps: &[i32],
    offsets: &[isize],
    bias: i32,
    out: &mut [i32],
) -> usize {
    unsafe {
        let len = out.len();
        if len < 9 {
            return 0;
        }
        let b = i32x4_splat(bias);
        let o = out.as_mut_ptr();
        let mut i = 0;
        while i < len - 1 {
            let at = i.min(len - 9);
            let (mut a0, mut a1) = (b, b);
            for (&w, &off) in taps.iter().zip(offsets) {
                let w = i16x8_splat(w as i16);
                let v = v128_load(input.offset(off).add(2 * at) as *const v128);
                // The even bytes of each i16 lane, widened.
                let e = if SIGNED {
                    i16x8_shr(i16x8_shl(v, 8), 8)
                } else {
                    v128_and(v, u16x8_splat(0xff))
                };
                a0 = i32x4_add(a0, i32x4_extmul_low_i16x8(e, w));
                a1 = i32x4_add(a1, i32x4_extmul_high_i16x8(e, w));
            }
            let o = o.add(at) as *mut v128;
            v128_store(o, a0);
            v128_store(o.add(1), a1);
            i = at + 8;
        }
        len - 1
    }
}
