//! NEON twins of [`crate::quant::q4k_ggml`]'s scalar references of llama.cpp's repacked Q4_K
//! gemv / gemm: only the integer pair sums are vectorized, the float steps are the references',
//! so the results are bit-identical.

use std::arch::aarch64::*;

use super::vecdot::{q4_k_codes, q4_k_pair};
use crate::quant::kquants::q4_k::scale_min;
use crate::quant::q4k_ggml::check;
use crate::quant::q8::BlockQ8K;
use crate::quant::util::f16_at;

/// Per pair `s` of sub-blocks: `sc_{2s}·S_{2s} + sc_{2s+1}·S_{2s+1}`, and `Σ m_j·B_j` over the
/// pair (`B_j` the activation's code sum over sub-block `j`): exact integers.
#[inline(always)]
fn block_sums<const DOT: bool>(blk: &[u8], ab: &BlockQ8K) -> ([i32; 4], [i32; 4]) {
    let mut pairs = [0i32; 4];
    let mut mins = [0i32; 4];
    for c in 0..4 {
        let (sc0, m0) = scale_min(2 * c, &blk[4..16]);
        let (sc1, m1) = scale_min(2 * c + 1, &blk[4..16]);
        let (p0, p1) = q4_k_pair::<DOT>(&q4_k_codes(blk, c), ab, c);
        // SAFETY: NEON is baseline.
        pairs[c] = unsafe { sc0 as i32 * vaddvq_s32(p0) + sc1 as i32 * vaddvq_s32(p1) };
        let b = |j: usize| ab.bsums[2 * j] as i32 + ab.bsums[2 * j + 1] as i32;
        mins[c] = m0 as i32 * b(2 * c) + m1 as i32 * b(2 * c + 1);
    }
    (pairs, mins)
}

fn gemv_imp<const DOT: bool>(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut accm) = (0f32, 0f32);
    for (blk, ab) in w.chunks_exact(144).zip(a) {
        let (pairs, mins) = block_sums::<DOT>(blk, ab);
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        acc = (pairs.iter().sum::<i32>() as f32).mul_add(d * ab.d, acc);
        accm = (mins.iter().sum::<i32>() as f32).mul_add(dmin * ab.d, accm);
    }
    acc - accm
}

fn gemm_imp<const DOT: bool>(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut accm) = (0f32, 0f32);
    for (blk, ab) in w.chunks_exact(144).zip(a) {
        let (pairs, mins) = block_sums::<DOT>(blk, ab);
        let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
        let (dd, dm) = (d * ab.d, dmin * ab.d);
        for s in 0..4 {
            acc = (pairs[s] as f32).mul_add(dd, acc);
            accm = (mins[s] as f32).mul_add(dm, accm);
        }
    }
    acc - accm
}

/// NEON twin of [`crate::quant::q4k_ggml::gemv_scalar`].
pub(in crate::quant) fn gemv<const DOT: bool>(w: &[u8], a: &[BlockQ8K]) -> f32 {
    check(w, a);
    gemv_imp::<DOT>(w, a)
}

/// NEON twin of [`crate::quant::q4k_ggml::gemm4_scalar`].
pub(in crate::quant) fn gemm4<const DOT: bool>(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    a.iter().for_each(|r| check(w, r));
    a.map(|r| gemm_imp::<DOT>(w, r))
}
