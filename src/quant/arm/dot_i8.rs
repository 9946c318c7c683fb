//! The NEON twin of [`crate::quant::dot_i8::chunk_scalar`] on `Bytes` tiles, 3 tokens × 16
//! columns: a step's 4 rows × 16 columns of codes (`q ^ 0x80` back to signed) against a token's
//! 4 codes broadcast, summed per column lane by `sdot` (`DOT`) or the widening multiply and
//! pairwise adds ([`dot16_acc`]) — exact either way; then the reference's convert, multiply and
//! fused add (`fmla`). The same bits on both paths.

use std::arch::aarch64::*;

use super::dot16_acc;
use crate::quant::dot_i8::{Chunk, BLOCK, SLIVER};

/// The NEON kernel of a tile (`DOT`: with `sdot`).
///
/// # Safety
/// NEON present (and dotprod when `DOT`); `c` as for
/// [`chunk_scalar`](crate::quant::dot_i8::chunk_scalar), tile and codes in `Layout::Bytes`.
pub unsafe fn chunk_neon<const DOT: bool>(c: &Chunk) {
    for s in 0..c.ncols.div_ceil(SLIVER) {
        let mut t0 = 0;
        while t0 < c.t {
            let m = (c.t - t0).min(3);
            match m {
                3 => micro::<3, DOT>(c, t0, s),
                2 => micro::<2, DOT>(c, t0, s),
                _ => micro::<1, DOT>(c, t0, s),
            }
            t0 += m;
        }
    }
}

/// Tokens `t0..t0+M`, sliver `s`.
#[inline(always)]
unsafe fn micro<const M: usize, const DOT: bool>(c: &Chunk, t0: usize, s: usize) {
    let cols = SLIVER.min(c.ncols - s * SLIVER);
    let ls = c.ldq / BLOCK;
    let mut acc = [[vdupq_n_f32(0.0); 4]; M];
    let mut edge = [0f32; SLIVER];
    for (m, a) in acc.iter_mut().enumerate() {
        if !c.zero {
            let row = c.dx.add((t0 + m) * c.ldx + s * SLIVER);
            edge[..cols].copy_from_slice(std::slice::from_raw_parts(row, cols));
            for (q, a) in a.iter_mut().enumerate() {
                *a = vld1q_f32(edge.as_ptr().add(4 * q));
            }
        }
    }
    let qy = c.qy as *const i8;
    let flip = vdupq_n_u8(0x80);
    for b in 0..c.nb {
        let blk = c.tile.add((s * c.nb + b) * BLOCK * SLIVER);
        let mut sum = [[vdupq_n_s32(0); 4]; M];
        for k in 0..BLOCK / 4 {
            let w: [int8x16_t; 4] = std::array::from_fn(|q| vreinterpretq_s8_u8(veorq_u8(vld1q_u8(blk.add(64 * k + 16 * q)), flip)));
            for (m, sm) in sum.iter_mut().enumerate() {
                let y = vreinterpretq_s8_s32(vdupq_n_s32((qy.add((t0 + m) * c.ldq + b * BLOCK + 4 * k) as *const i32).read_unaligned()));
                for q in 0..4 {
                    sm[q] = dot16_acc::<DOT>(sm[q], w[q], y);
                }
            }
        }
        let sw: [float32x4_t; 4] = std::array::from_fn(|q| vld1q_f32(c.scales.add((s * c.nb + b) * SLIVER + 4 * q)));
        for m in 0..M {
            let sy = vdupq_n_f32(*c.sy.add((t0 + m) * ls + b));
            for q in 0..4 {
                acc[m][q] = vfmaq_f32(acc[m][q], vcvtq_f32_s32(sum[m][q]), vmulq_f32(sw[q], sy));
            }
        }
    }
    for (m, a) in acc.iter().enumerate() {
        for (q, &a) in a.iter().enumerate() {
            vst1q_f32(edge.as_mut_ptr().add(4 * q), a);
        }
        let row = c.dx.add((t0 + m) * c.ldx + s * SLIVER);
        std::slice::from_raw_parts_mut(row, cols).copy_from_slice(&edge[..cols]);
    }
}
