//! Multi-row AVX2 kernels for the k-quant weight types against Q8_K activations (Q4_K, Q6_K):
//! each weight super-block is unpacked once (scales, mins, 4- or 6-bit codes) and multiplied into
//! every activation row with one independent accumulator per row. The integer sums are exact and
//! the f32 steps per row are those of the one-row kernels in [`super::vecdot`], in the same order,
//! so every result is bit-identical to running the one-row kernel row by row
//! (`tests/simd_vs_scalar.rs`). Also the Q6_K kernel in llama.cpp's tiled-matmul order (its path
//! for batches of 8 or more rows; [`crate::quant::vecdot::dot_q6_k_tiled`]).

use std::arch::x86_64::*;

use super::vecdot::{f16_at, hsum_i32, q6_k_lanes, q6_k_offset};
use crate::quant::kquants::q4_k::scale_min;
use crate::quant::q8::BlockQ8K;

/// Q4_K against `N` Q8_K activation rows (listed by the kernel table only where AVX2 is present).
pub(in crate::quant) fn q4_k_n<const N: usize>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    // SAFETY: the kernel table lists this only when AVX2/FMA/F16C are present; row lengths are
    // checked before any block is read.
    unsafe { q4_k_xn(w, a) }
}

/// Q6_K against `N` Q8_K activation rows, vec_dot order (as [`q4_k_n`]).
pub(in crate::quant) fn q6_k_n<const N: usize>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    // SAFETY: as for q4_k_n.
    unsafe { q6_k_xn(w, a) }
}

/// Q6_K against `N` Q8_K activation rows, tiled-matmul order (as [`q4_k_n`]).
pub(in crate::quant) fn q6_k_tiled_n<const N: usize>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    // SAFETY: as for q4_k_n.
    unsafe { q6_k_tiled_xn(w, a) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load(p: *const i8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

fn check<const N: usize>(w: &[u8], a: &[&[BlockQ8K]; N], ts: usize) {
    for r in a {
        assert_eq!(w.len(), r.len() * ts, "weight row and activation row differ in length");
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_xn<const N: usize>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    check(w, &a, 144);
    let (mut acc, mut accm) = ([0f32; N], [0f32; N]);
    let low = _mm256_set1_epi8(15);
    for (ib, b) in w.chunks_exact(144).enumerate() {
        let s = &b[4..16];
        let ab: [&BlockQ8K; N] = std::array::from_fn(|t| a[t].get_unchecked(ib));
        let mut sumv = [_mm256_setzero_si256(); N];
        let mut summ = [0i32; N];
        for c in 0..4 {
            let (sc0, m0) = scale_min(2 * c, s);
            let (sc1, m1) = scale_min(2 * c + 1, s);
            let q = _mm256_loadu_si256(b.as_ptr().add(16 + 32 * c) as *const __m256i);
            let lo = _mm256_and_si256(q, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            let (s0, s1) = (_mm256_set1_epi16(sc0 as i16), _mm256_set1_epi16(sc1 as i16));
            for t in 0..N {
                let qs = ab[t].qs.as_ptr().add(64 * c);
                let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load(qs)), s0);
                let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load(qs.add(32))), s1);
                sumv[t] = _mm256_add_epi32(sumv[t], _mm256_add_epi32(p0, p1));
                let bs = &ab[t].bsums[4 * c..4 * c + 4];
                summ[t] += m0 as i32 * (bs[0] as i32 + bs[1] as i32) + m1 as i32 * (bs[2] as i32 + bs[3] as i32);
            }
        }
        let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
        for t in 0..N {
            acc[t] += (d * ab[t].d) * hsum_i32(sumv[t]) as f32;
            accm[t] += (dmin * ab[t].d) * summ[t] as f32;
        }
    }
    std::array::from_fn(|t| acc[t] - accm[t])
}

/// [`crate::quant::vecdot::dot_q6_k`]'s order (ggml's vec_dot) for N rows at once.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_xn<const N: usize>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    check(w, &a, 210);
    let mut accv = [_mm256_setzero_ps(); N];
    for (ib, b) in w.chunks_exact(210).enumerate() {
        let ab: [&BlockQ8K; N] = std::array::from_fn(|t| a[t].get_unchecked(ib));
        let sumv = q6_k_lanes(b, ab);
        let dw = f16_at(b, 208);
        for t in 0..N {
            let lanes = _mm256_sub_epi32(sumv[t], q6_k_offset(&b[192..208], &ab[t].bsums));
            accv[t] = _mm256_fmadd_ps(_mm256_set1_ps(ab[t].d * dw), _mm256_cvtepi32_ps(lanes), accv[t]);
        }
    }
    std::array::from_fn(|t| {
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), accv[t]);
        crate::quant::vecdot::hsum8(lanes)
    })
}

/// [`crate::quant::vecdot::dot_q6_k_tiled`]'s order (llama.cpp's tiled matmul) for N rows:
/// the same exact integer sum per super-block, then `acc = fma(d_w·f32(s), d_a, acc)`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_tiled_xn<const N: usize>(w: &[u8], a: [&[BlockQ8K]; N]) -> [f32; N] {
    check(w, &a, 210);
    let mut acc = [0f32; N];
    for (ib, b) in w.chunks_exact(210).enumerate() {
        let ab: [&BlockQ8K; N] = std::array::from_fn(|t| a[t].get_unchecked(ib));
        let sumv = q6_k_lanes(b, ab);
        let d = f16_at(b, 208);
        for t in 0..N {
            let sumi = hsum_i32(_mm256_sub_epi32(sumv[t], q6_k_offset(&b[192..208], &ab[t].bsums)));
            acc[t] = (d * sumi as f32).mul_add(ab[t].d, acc[t]);
        }
    }
    acc
}
