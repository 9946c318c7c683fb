//! The AVX2 twin of [`crate::quant::dot_u4::chunk_u4_scalar`]: `vpmaddubsw` of the unsigned
//! 4-bit codes and the signed activation codes, summed in i16 over a block, widened once per
//! block by `vpmaddwd` with ones; 3 tokens × 16 outputs. Per block each lane holds its
//! output's exact integer sum, converts it, and does the reference's two fused multiply-adds
//! in its order: the same bits.

use std::arch::x86_64::*;

use crate::quant::dot_i8::{BLOCK, SLIVER};
use crate::quant::dot_u4::{ChunkU4, BLOCK_BYTES};
use crate::quant::x86::dot_i8::lanes_below;

/// The AVX2 kernel of a tile.
///
/// # Safety
/// AVX2 and FMA present; `c` as for [`chunk_u4_scalar`](crate::quant::dot_u4::chunk_u4_scalar).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn chunk_u4_avx2(c: &ChunkU4) {
    for s in 0..c.ncols.div_ceil(SLIVER) {
        let mut t0 = 0;
        while t0 < c.t {
            let m = (c.t - t0).min(3);
            match m {
                3 => avx2_micro::<3>(c, t0, s),
                2 => avx2_micro::<2>(c, t0, s),
                _ => avx2_micro::<1>(c, t0, s),
            }
            t0 += m;
        }
    }
}

/// Tokens `t0..t0+M`, sliver `s`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_micro<const M: usize>(c: &ChunkU4, t0: usize, s: usize) {
    let cols = SLIVER.min(c.ncols - s * SLIVER);
    let mask = [lanes_below(cols), lanes_below(cols.saturating_sub(8))];
    let ls = c.ldq / BLOCK;
    // Whole slivers take plain loads and stores (the masked ones are slow).
    let full = cols == SLIVER;
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    if !c.zero {
        for (m, a) in acc.iter_mut().enumerate() {
            for (h, a) in a.iter_mut().enumerate() {
                let p = c.y.wrapping_add((t0 + m) * c.ldy + s * SLIVER + 8 * h);
                *a = if full { _mm256_loadu_ps(p) } else { _mm256_maskload_ps(p, mask[h]) };
            }
        }
    }
    let ones = _mm256_set1_epi16(1);
    for b in 0..c.nb {
        let blk = c.tile.add((s * c.nb + b) * BLOCK_BYTES) as *const __m256i;
        // Per lane pair ≤ 2·15·127 per step, ≤ 8 steps: the i16 sums cannot overflow.
        let mut sum = [[_mm256_setzero_si256(); 2]; M];
        for p in 0..BLOCK / 4 {
            let w = [_mm256_loadu_si256(blk.add(2 * p)), _mm256_loadu_si256(blk.add(2 * p + 1))];
            for (m, sm) in sum.iter_mut().enumerate() {
                let y = _mm256_set1_epi32((c.qy.add((t0 + m) * c.ldq + b * BLOCK + 4 * p) as *const i32).read_unaligned());
                for h in 0..2 {
                    sm[h] = _mm256_add_epi16(sm[h], _mm256_maddubs_epi16(w[h], y));
                }
            }
        }
        let at = (s * c.nb + b) * SLIVER;
        let dw = [_mm256_loadu_ps(c.d.add(at)), _mm256_loadu_ps(c.d.add(at + 8))];
        let mw = [_mm256_loadu_ps(c.m.add(at)), _mm256_loadu_ps(c.m.add(at + 8))];
        for m in 0..M {
            let sy = _mm256_set1_ps(*c.sy.add((t0 + m) * ls + b));
            let ys = _mm256_set1_ps(*c.ys.add((t0 + m) * ls + b));
            for h in 0..2 {
                let isum = _mm256_madd_epi16(sum[m][h], ones);
                let a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(dw[h], sy), acc[m][h]);
                acc[m][h] = _mm256_fmadd_ps(mw[h], ys, a);
            }
        }
    }
    for (m, a) in acc.iter().enumerate() {
        for (h, &a) in a.iter().enumerate() {
            let p = c.y.wrapping_add((t0 + m) * c.ldy + s * SLIVER + 8 * h);
            if full {
                _mm256_storeu_ps(p, a);
            } else {
                _mm256_maskstore_ps(p, mask[h], a);
            }
        }
    }
}
