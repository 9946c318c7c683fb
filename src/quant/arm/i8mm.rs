//! `i8mm` kernels: two weight rows against `N` activation rows (`N` even), each 2×2 (weight
//! row, activation row) tile of integer dots from `smmla` ([`super::smmla`]) on 8-byte halves:
//! the weight rows' bytes `k..k+8` side by side (`zip1`/`zip2` of 64-bit lanes) against the
//! activation rows' — half the instructions of `sdot` per (row, row) pair. Only integer sums
//! change order (exact); every f32 step is the scalar reference's, per (weight row, activation
//! row) in the reference's order, so each result has the bits of the one-row kernel
//! (`tests/simd_arm.rs`). Listed by the kernel table at [`crate::quant::Isa::NeonI8mm`] only.

use std::arch::aarch64::*;

use super::smmla;
use super::vecdot::q4_k_codes;
use super::vecdot_k::q6_k_codes;
use crate::quant::kquants::q4_k::scale_min;
use crate::quant::q8::BlockQ8K;
use crate::quant::util::f16_at;

/// Rows `(x, y)` of 16 bytes as the two `smmla` operands of their halves: `(x[0..8] y[0..8],
/// x[8..16] y[8..16])`.
#[inline(always)]
unsafe fn halves(x: int8x16_t, y: int8x16_t) -> (int8x16_t, int8x16_t) {
    let (x, y) = (vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y));
    (vreinterpretq_s8_s64(vzip1q_s64(x, y)), vreinterpretq_s8_s64(vzip2q_s64(x, y)))
}

/// `acc + tile(16 bytes of both weight rows · 16 bytes of both activation rows)`.
#[inline(always)]
unsafe fn tile16(acc: int32x4_t, w: (int8x16_t, int8x16_t), a: (int8x16_t, int8x16_t)) -> int32x4_t {
    smmla(smmla(acc, w.0, a.0), w.1, a.1)
}

/// Lane `2i + j` of a tile as `[weight row i][activation row j]`.
#[inline(always)]
unsafe fn lanes(t: int32x4_t) -> [[i32; 2]; 2] {
    let mut l = [0i32; 4];
    vst1q_s32(l.as_mut_ptr(), t);
    [[l[0], l[1]], [l[2], l[3]]]
}

/// `[s0, s0, s1, s1]`: a per-weight-row integer for a tile.
#[inline(always)]
unsafe fn per_row(s0: i32, s1: i32) -> int32x4_t {
    vcombine_s32(vdup_n_s32(s0), vdup_n_s32(s1))
}

fn check<const N: usize>(w: [&[u8]; 2], a: &[&[BlockQ8K]; N], ts: usize) {
    assert!(N % 2 == 0, "activation rows come in pairs");
    for r in a {
        for wr in w {
            assert_eq!(wr.len(), r.len() * ts, "weight row and activation row differ in length");
        }
    }
}

/// Q6_K, llama.cpp's tiled order ([`crate::quant::vecdot::dot_q6_k_tiled`]) for two weight rows
/// and `N` activation rows: per super-block the exact integer sum `s = Σ_g sc_g·(Σ q·a −
/// 32·bsum_g)`, then `acc = fma(d_w·f32(s), d_a, acc)`.
pub(in crate::quant) fn q6_k_tiled_2xn<const N: usize>(w: [&[u8]; 2], a: [&[BlockQ8K]; N]) -> [[f32; N]; 2] {
    check(w, &a, 210);
    let mut acc = [[0f32; N]; 2];
    for ib in 0..a[0].len() {
        let b = [&w[0][210 * ib..210 * ib + 210], &w[1][210 * ib..210 * ib + 210]];
        let (q0, q1) = (q6_k_codes(b[0]), q6_k_codes(b[1]));
        let sc: [[i32; 16]; 2] = b.map(|b| std::array::from_fn(|g| b[192 + g] as i8 as i32));
        let d = b.map(|b| f16_at(b, 208));
        for p in 0..N / 2 {
            let (a0, a1) = (&a[2 * p][ib], &a[2 * p + 1][ib]);
            // SAFETY: i8mm is present (the table lists this kernel only then); each activation
            // block holds 256 codes, read 16 at a time.
            let t = unsafe {
                let mut sum = vdupq_n_s32(0);
                for g in 0..16 {
                    let av = halves(vld1q_s8(a0.qs.as_ptr().add(16 * g)), vld1q_s8(a1.qs.as_ptr().add(16 * g)));
                    let raw = tile16(vdupq_n_s32(0), halves(q0[g], q1[g]), av);
                    sum = vmlaq_s32(sum, raw, per_row(sc[0][g], sc[1][g]));
                }
                lanes(sum)
            };
            for r in 0..2 {
                for (j, ab) in [a0, a1].into_iter().enumerate() {
                    let off: i32 = (0..16).map(|g| sc[r][g] * ab.bsums[g] as i32).sum();
                    let s = t[r][j] - 32 * off;
                    let v = &mut acc[r][2 * p + j];
                    *v = (d[r] * s as f32).mul_add(ab.d, *v);
                }
            }
        }
    }
    acc
}

/// llama.cpp's repacked Q4_K gemm ([`crate::quant::q4k_ggml::gemm4_scalar`]) for two weight
/// rows and the four activation rows of a group: per sub-block pair `s` the exact
/// `Σ_{j=2s,2s+1} sc_j·S_j` and `Σ m_j·B_j`, then one `fma` per pair in pair order.
pub(in crate::quant) fn q4_k_gemm_2x4(w: [&[u8]; 2], a: [&[BlockQ8K]; 4]) -> [[f32; 4]; 2] {
    check(w, &a, 144);
    let mut acc = [[(0f32, 0f32); 4]; 2];
    for ib in 0..a[0].len() {
        let b = [&w[0][144 * ib..144 * ib + 144], &w[1][144 * ib..144 * ib + 144]];
        // Scales and mins of the eight sub-blocks, per weight row.
        let sm: [[(i32, i32); 8]; 2] = b.map(|b| {
            std::array::from_fn(|j| {
                let (s, m) = scale_min(j, &b[4..16]);
                (s as i32, m as i32)
            })
        });
        // pairs[r][t][c]
        let mut pairs = [[[0i32; 4]; 4]; 2];
        for c in 0..4 {
            let (c0, c1) = (q4_k_codes(b[0], c), q4_k_codes(b[1], c));
            // SAFETY: NEON is baseline (a register shuffle).
            let wv: [(int8x16_t, int8x16_t); 4] = std::array::from_fn(|k| unsafe { halves(c0[k], c1[k]) });
            for p in 0..2 {
                let (a0, a1) = (&a[2 * p][ib], &a[2 * p + 1][ib]);
                // SAFETY: i8mm is present (listed only then); 64c + 64 ≤ 256 codes.
                let t = unsafe {
                    let av: [(int8x16_t, int8x16_t); 4] = std::array::from_fn(|k| {
                        let o = 64 * c + 16 * k;
                        halves(vld1q_s8(a0.qs.as_ptr().add(o)), vld1q_s8(a1.qs.as_ptr().add(o)))
                    });
                    let z = vdupq_n_s32(0);
                    let s_lo = tile16(tile16(z, wv[0], av[0]), wv[1], av[1]);
                    let s_hi = tile16(tile16(z, wv[2], av[2]), wv[3], av[3]);
                    let t = vmulq_s32(s_lo, per_row(sm[0][2 * c].0, sm[1][2 * c].0));
                    lanes(vmlaq_s32(t, s_hi, per_row(sm[0][2 * c + 1].0, sm[1][2 * c + 1].0)))
                };
                for r in 0..2 {
                    pairs[r][2 * p][c] = t[r][0];
                    pairs[r][2 * p + 1][c] = t[r][1];
                }
            }
        }
        for r in 0..2 {
            let (d, dmin) = (f16_at(b[r], 0), f16_at(b[r], 2));
            for (t, ab) in a.iter().map(|row| &row[ib]).enumerate() {
                let bs = |j: usize| ab.bsums[2 * j] as i32 + ab.bsums[2 * j + 1] as i32;
                let (dd, dm) = (d * ab.d, dmin * ab.d);
                let acc = &mut acc[r][t];
                for s in 0..4 {
                    let mins = sm[r][2 * s].1 * bs(2 * s) + sm[r][2 * s + 1].1 * bs(2 * s + 1);
                    acc.0 = (pairs[r][t][s] as f32).mul_add(dd, acc.0);
                    acc.1 = (mins as f32).mul_add(dm, acc.1);
                }
            }
        }
    }
    acc.map(|row| row.map(|(p, m)| p - m))
}
