#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use crate::Scaler;
use crate::mmm::FusedKerSpec;

// Wasm SIMD int8 -> i32 matmul kernels (4x4 and 4x8, one body generic over the
// tile's width NR). Under +relaxed-simd the AddMatMul
// K-loop uses i32x4.relaxed_dot_i8x16_i7x16_add with B sign-split so both dot
// operands stay in the i7 range where the instruction is deterministic (see the
// kernel body); without relaxed-simd it uses i32x4.dot_i16x8_s on the same
// K=4-inner blocks widened to i16. The quant epilogue + fuse ops reuse
// the bit-exact scalar path (q_scale/q_shr/q_shl), which is O(MR*NR) and
// negligible vs the O(MR*NR*K) inner loop. Both paths are bit-identical to
// generic_i32_4x4; selected for i8 matmul because it is written for wasm and the generic
// scalar kernel is not (WASM had no int8 matmul kernel before this one).
#[inline(never)]
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
unsafe fn kernel_i32_4x4(pnl: *const FusedKerSpec<i32>) -> isize {
    unsafe { kernel_i32::<4>(pnl) }
}

/// The 4x8 tile (see [`dot_i16_4x8`]): twice the values of the 4x4 one for the
/// same per-tile costs (the frame's set-up of each tile's fused ops, this
/// body's op dispatch, the store). With short K, as in a MobileNet's pointwise
/// convolutions (16-96 channels), those costs outweighed the 4x4 tile's dot
/// products (session 43 profile: driver 18 %, requantised store 20 %, kernel 26 %).
#[inline(never)]
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
unsafe fn kernel_i32_4x8(pnl: *const FusedKerSpec<i32>) -> isize {
    unsafe { kernel_i32::<8>(pnl) }
}

#[inline(always)]
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
unsafe fn kernel_i32<const NR: usize>(mut pnl: *const FusedKerSpec<i32>) -> isize {
    use crate::ScaleShiftAndRound;
    use std::arch::wasm32::*;
    unsafe {
        let mut ab = [[0i32; NR]; 4];
        loop {
            if pnl.is_null() {
                break;
            }
            match *pnl {
                FusedKerSpec::Done => break,
                FusedKerSpec::Clear => ab = [[0i32; NR]; 4],
                FusedKerSpec::LoadTile(col_major, _row_major) => {
                    for row in 0..4 {
                        for col in 0..NR {
                            ab[row][col] = *col_major.add(col * 4 + row);
                        }
                    }
                }
                FusedKerSpec::ScalarAdd(a) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] += a;
                        }
                    }
                }
                FusedKerSpec::ScalarMul(a) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] *= a;
                        }
                    }
                }
                FusedKerSpec::ScalarMin(m) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].min(m);
                        }
                    }
                }
                FusedKerSpec::ScalarMax(m) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].max(m);
                        }
                    }
                }
                FusedKerSpec::ScalarSub(m) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = m - ab[i][j];
                        }
                    }
                }
                FusedKerSpec::ScalarSubF(m) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] -= m;
                        }
                    }
                }
                FusedKerSpec::LeakyRelu(a) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = if ab[i][j] > 0 { ab[i][j] } else { a * ab[i][j] };
                        }
                    }
                }
                FusedKerSpec::PerRowMin(m) => {
                    for i in 0..4 {
                        let v = *m.add(i);
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].min(v);
                        }
                    }
                }
                FusedKerSpec::PerRowMax(m) => {
                    for i in 0..4 {
                        let v = *m.add(i);
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].max(v);
                        }
                    }
                }
                FusedKerSpec::PerRowAdd(m) => {
                    for i in 0..4 {
                        let v = *m.add(i);
                        for j in 0..NR {
                            ab[i][j] += v;
                        }
                    }
                }
                FusedKerSpec::PerRowMul(m) => {
                    for i in 0..4 {
                        let v = *m.add(i);
                        for j in 0..NR {
                            ab[i][j] *= v;
                        }
                    }
                }
                FusedKerSpec::PerRowSub(m) => {
                    for i in 0..4 {
                        let v = *m.add(i);
                        for j in 0..NR {
                            ab[i][j] = v - ab[i][j];
                        }
                    }
                }
                FusedKerSpec::PerRowSubF(m) => {
                    for i in 0..4 {
                        let v = *m.add(i);
                        for j in 0..NR {
                            ab[i][j] -= v;
                        }
                    }
                }
                FusedKerSpec::PerColMin(m) => {
                    let c = std::slice::from_raw_parts(m, NR);
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].min(c[j]);
                        }
                    }
                }
                FusedKerSpec::PerColMax(m) => {
                    let c = std::slice::from_raw_parts(m, NR);
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].max(c[j]);
                        }
                    }
                }
                FusedKerSpec::PerColAdd(m) => {
                    let c = std::slice::from_raw_parts(m, NR);
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] += c[j];
                        }
                    }
                }
                FusedKerSpec::PerColMul(m) => {
                    let c = std::slice::from_raw_parts(m, NR);
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] *= c[j];
                        }
                    }
                }
                FusedKerSpec::PerColSub(m) => {
                    let c = std::slice::from_raw_parts(m, NR);
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = c[j] - ab[i][j];
                        }
                    }
                }
                FusedKerSpec::PerColSubF(m) => {
                    let c = std::slice::from_raw_parts(m, NR);
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] -= c[j];
                        }
                    }
                }
                FusedKerSpec::AddRowColProducts(rows, cols) => {
                    for i in 0..4 {
                        let r = *rows.add(i);
                        for j in 0..NR {
                            ab[i][j] += r * *cols.add(j);
                        }
                    }
                }
                FusedKerSpec::AddUnicast(other) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            let p = other.ptr.offset(
                                other.row_byte_stride * i as isize
                                    + other.col_byte_stride * j as isize,
                            );
                            let v = match other.item_size {
                                1 => *(p as *const i8) as i32,
                                4 => *(p as *const i32),
                                _ => return 1,
                            };
                            ab[i][j] += v;
                        }
                    }
                }
                FusedKerSpec::ShiftLeft(shift) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].q_shl(shift);
                        }
                    }
                }
                FusedKerSpec::RoundingShiftRight(shift, rp) => {
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].q_shr(shift, rp);
                        }
                    }
                }
                FusedKerSpec::QScale(shift, rp, mult) => {
                    let s = Scaler::from_fuse_params(shift, rp, mult);
                    for i in 0..4 {
                        for j in 0..NR {
                            ab[i][j] = ab[i][j].q_scale(s);
                        }
                    }
                }
                FusedKerSpec::AddMatMul { k, pa, pb, packing } => {
                    if packing == 1 && NR == 8 {
                        let sums = dot_i16_4x8(k, pa as *const i8, pb as *const i8);
                        for (row, sums) in ab.iter_mut().zip(sums) {
                            for (g, sum) in sums.into_iter().enumerate() {
                                let p = row.as_mut_ptr().add(4 * g) as *mut v128;
                                v128_store(p, i32x4_add(v128_load(p), sum));
                            }
                        }
                    } else if packing == 1 {
                        let a = pa as *const i8;
                        let b = pb as *const i8;
                        let mut acc = [
                            v128_load(ab[0].as_ptr() as *const v128),
                            v128_load(ab[1].as_ptr() as *const v128),
                            v128_load(ab[2].as_ptr() as *const v128),
                            v128_load(ab[3].as_ptr() as *const v128),
                        ];
                        // PackedI8K4 (K=4-inner): per 4-K block, one B v128 load is
                        // shared across the 4 rows; each row broadcasts its 4 K bytes
                        // (a[kb*16 + m*4 ..]) against b[kb*16 + n*4 + kr]. Tail K (k%4)
                        // is zero-padded by the packer.
                        //
                        // relaxed_dot's 2nd operand is i7: lanes outside [0, 127] are
                        // read as signed by some engines (ARM SDOT) and unsigned by
                        // others (x86 pmaddubsw/vpdpbusd). B is full i8, so it is
                        // sign-split as b = (b & 0x7f) - ((b >> 7) << 7); both parts
                        // are i7-safe (which also keeps every pmaddubsw i16 pair-sum
                        // below saturation), each feeds its own dot, and the sign
                        // planes fold back after the K-loop as acc -= acc_hi << 7.
                        // Bit-exact on every engine.
                        #[cfg(target_feature = "relaxed-simd")]
                        {
                            let mut acc_hi = [i32x4_splat(0); 4];
                            for kb in 0..k.div_ceil(4) {
                                let b_all = v128_load(b.add(kb * 16) as *const v128);
                                let b_lo = v128_and(b_all, u8x16_splat(0x7f));
                                let b_hi = u8x16_shr(b_all, 7);
                                for (m, (acc_m, hi_m)) in
                                    acc.iter_mut().zip(acc_hi.iter_mut()).enumerate()
                                {
                                    let a4 =
                                        (a.add(kb * 16 + m * 4) as *const i32).read_unaligned();
                                    let a4 = i32x4_splat(a4);
                                    *acc_m = i32x4_relaxed_dot_i8x16_i7x16_add(a4, b_lo, *acc_m);
                                    *hi_m = i32x4_relaxed_dot_i8x16_i7x16_add(a4, b_hi, *hi_m);
                                }
                            }
                            for (acc_m, hi_m) in acc.iter_mut().zip(acc_hi) {
                                *acc_m = i32x4_sub(*acc_m, i32x4_shl(hi_m, 7));
                            }
                        }
                        // Without relaxed-simd: the same PackedI8K4 blocks through the
                        // standard i32x4.dot_i16x8_s (x86 pmaddwd, ARM smull+addp), which
                        // multiplies i16 lanes and adds adjacent pairs. B's columns 0-1
                        // and 2-3 are widened to i16 ([c0k0..c0k3, c1k0..c1k3]); a row's
                        // 4 K bytes are splatted and widened ([a k0..k3, a k0..k3]); one
                        // dot then gives [c0 k0+k1, c0 k2+k3, c1 k0+k1, c1 k2+k3], and
                        // the even and odd lanes are summed once after the K-loop.
                        // 26 instructions per 64 multiply-adds against 76 for the
                        // widening outer product (4 i8 per k, i32x4 mul + add per row).
                        // Exact: |i8 * i8| <= 2^14, so no pair sum saturates.
                        #[cfg(not(target_feature = "relaxed-simd"))]
                        {
                            let sums = dot_i16_k4(k, a, b);
                            for (acc_m, sum) in acc.iter_mut().zip(sums) {
                                *acc_m = i32x4_add(*acc_m, sum);
                            }
                        }
                        v128_store(ab[0].as_mut_ptr() as *mut v128, acc[0]);
                        v128_store(ab[1].as_mut_ptr() as *mut v128, acc[1]);
                        v128_store(ab[2].as_mut_ptr() as *mut v128, acc[2]);
                        v128_store(ab[3].as_mut_ptr() as *mut v128, acc[3]);
                    } else if packing == 0 {
                        // i32 x i32, K-major (scalar; rare path).
                        let a = pa as *const i32;
                        let b = pb as *const i32;
                        for ik in 0..k {
                            for i in 0..4 {
                                let av = *a.add(4 * ik + i);
                                for j in 0..NR {
                                    ab[i][j] += av * *b.add(NR * ik + j);
                                }
                            }
                        }
                    } else {
                        return 1;
                    }
                }
                FusedKerSpec::Store(tile) => match tile.item_size {
                    1 => {
                        for i in 0..4 {
                            for j in 0..NR {
                                let loc = tile.ptr.offset(
                                    tile.row_byte_stride * i as isize
                                        + tile.col_byte_stride * j as isize,
                                ) as *mut u8;
                                *loc = ab[i][j] as u8;
                            }
                        }
                    }
                    // The frame's scratch tile (requantised stores): rows of adjacent values.
                    4 if tile.col_byte_stride == 4 => {
                        for (i, row) in ab.iter().enumerate() {
                            let dst = tile.ptr.offset(tile.row_byte_stride * i as isize);
                            std::ptr::copy_nonoverlapping(row.as_ptr() as *const u8, dst, 4 * NR);
                        }
                    }
                    4 => {
                        for i in 0..4 {
                            for j in 0..NR {
                                let loc = tile.ptr.offset(
                                    tile.row_byte_stride * i as isize
                                        + tile.col_byte_stride * j as isize,
                                ) as *mut i32;
                                *loc = ab[i][j];
                            }
                        }
                    }
                    _ => return 1,
                },
            };
            pnl = pnl.add(1);
        }
    }
    0
}

/// The 4x4 tile's products over `k` (PackedI8K4 panels `a` and `b`) through
/// `i32x4.dot_i16x8_s`, as described in the kernel. Its own function, as the
/// f32 kernel's `gemm_4x8`: in the kernel body, whose `match` makes calls,
/// Cranelift spills accumulators; here the eight accumulators, two B vectors
/// and one A vector stay in registers (x86-64 has sixteen).
#[inline(never)]
#[cfg(all(target_arch = "wasm32", target_feature = "simd128", not(target_feature = "relaxed-simd")))]
unsafe fn dot_i16_k4(k: usize, a: *const i8, b: *const i8) -> [std::arch::wasm32::v128; 4] {
    use std::arch::wasm32::*;
    unsafe {
        let mut lo = [i32x4_splat(0); 4];
        let mut hi = [i32x4_splat(0); 4];
        for kb in 0..k.div_ceil(4) {
            let b01 = i16x8_load_extend_i8x8(b.add(kb * 16));
            let b23 = i16x8_load_extend_i8x8(b.add(kb * 16 + 8));
            for (m, (lo_m, hi_m)) in lo.iter_mut().zip(hi.iter_mut()).enumerate() {
                let a4 = i16x8_extend_low_i8x16(v128_load32_splat(
                    a.add(kb * 16 + m * 4) as *const u32,
                ));
                *lo_m = i32x4_add(*lo_m, i32x4_dot_i16x8(a4, b01));
                *hi_m = i32x4_add(*hi_m, i32x4_dot_i16x8(a4, b23));
            }
        }
        let mut sums = [i32x4_splat(0); 4];
        for (sum, (lo_m, hi_m)) in sums.iter_mut().zip(lo.into_iter().zip(hi)) {
            let even = i32x4_shuffle::<0, 2, 4, 6>(lo_m, hi_m);
            let odd = i32x4_shuffle::<1, 3, 5, 7>(lo_m, hi_m);
            *sum = i32x4_add(even, odd);
        }
        sums
    }
}

/// The 4x8 tile's products over `k`: A in `PackedI8K4(4)` panels (row m's 4 K
/// bytes at m*4 of each 16-byte block), B in `PackedI8K4(8)` (column n's at n*4
/// of each 32-byte block). Per K=4 block and group of 4 columns, one shuffle
/// puts B's (k0,k1) pairs in the low half and (k2,k3) pairs in the high half,
/// widened to i16; per row, A's (a0,a1) and (a2,a3) pairs are splatted, and
/// `i32x4.dot_i16x8_s` of each pair with its half adds 2 K into the column's
/// lane, so one accumulator holds a row's 4 columns (the 4x4 kernel keeps two
/// and folds even and odd lanes at the end). Eight accumulators, four B
/// vectors and two A pairs: 14 of x86-64's sixteen vector registers.
/// Exact: |i8 * i8| <= 2^14, a pair sum fits i32.
/// Standard simd128 only, so relaxed-simd builds use it too.
#[inline(never)]
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
unsafe fn dot_i16_4x8(k: usize, a: *const i8, b: *const i8) -> [[std::arch::wasm32::v128; 2]; 4] {
    use std::arch::wasm32::*;
    unsafe {
        let mut acc = [[i32x4_splat(0); 2]; 4];
        for kb in 0..k.div_ceil(4) {
            let mut halves = [[i32x4_splat(0); 2]; 2];
            for (g, half) in halves.iter_mut().enumerate() {
                let raw = v128_load(b.add(kb * 32 + g * 16) as *const v128);
                let split = i8x16_shuffle::<0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15>(
                    raw, raw,
                );
                *half = [i16x8_extend_low_i8x16(split), i16x8_extend_high_i8x16(split)];
            }
            for (m, acc_m) in acc.iter_mut().enumerate() {
                let a4 = i16x8_extend_low_i8x16(v128_load32_splat(
                    a.add(kb * 16 + m * 4) as *const u32,
                ));
                let a01 = i32x4_shuffle::<0, 0, 0, 0>(a4, a4);
                let a23 = i32x4_shuffle::<1, 1, 1, 1>(a4, a4);
                for (acc_g, half) in acc_m.iter_mut().zip(halves) {
                    *acc_g = i32x4_add(*acc_g, i32x4_dot_i16x8(a01, half[0]));
                    *acc_g = i32x4_add(*acc_g, i32x4_dot_i16x8(a23, half[1]));
                }
            }
        }
        acc
    }
}

// i8i8 packing for wasm_i32_4x4: PackedI8K4 (4 contiguous K per mn-lane) for both
// AddMatMul paths, the relaxed-simd dot and the i16 dot without it.
fn wasm_i8_packing() -> impl crate::mmm::MMMInputFormat {
    crate::pack::PackedI8K4::new(4)
}

bail_stub!(wasm32; unsafe fn kernel_i32_4x4(*const FusedKerSpec<i32>) -> isize);

MMMRustKernel!(wasm32; kernel_i32_4x4 => wasm_i32_4x4<i32>(4,4)
    packing[1] = i8i8 => |k| k.with_packing(wasm_i8_packing(), wasm_i8_packing());

    store(i8)
);

bail_stub!(wasm32; unsafe fn kernel_i32_4x8(*const FusedKerSpec<i32>) -> isize);

MMMRustKernel!(wasm32; kernel_i32_4x8 => wasm_i32_4x8<i32>(4,8)
    packing[1] = i8i8 => |k| k.with_packing(crate::pack::PackedI8K4::new(4), crate::pack::PackedI8K4::new(8));

    store(i8)
);
