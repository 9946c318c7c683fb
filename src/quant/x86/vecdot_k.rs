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

/// AVX-512 twin of [`crate::quant::vecdot::dot_q6_k_tiled`] for two weight rows × eight
/// activation rows: each 512-bit vector holds the same 32 codes' positions of both rows (row 0
/// in the low half), the activation codes are broadcast to both halves. The integer sum per
/// super-block is exact in any order; per (weight row, activation row) the f32 steps are the
/// reference's (`acc = fma(d_w·f32(s), d_a, acc)`), so every result has its bits.
#[cfg(finetune_avx512)]
#[allow(clippy::incompatible_msrv)] // built only where rustc has the AVX-512 intrinsics (build.rs)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn q6_k_tiled_2x8_imp(w: [&[u8]; 2], a: [&[BlockQ8K]; 8]) -> [[f32; 8]; 2] {
    let (m4, m2) = (_mm512_set1_epi8(15), _mm512_set1_epi8(3));
    // Lane 8h + 4r + (t % 4), h = t / 4: weight row r × activation row t.
    let mut acc = _mm512_setzero_ps();
    // Scale group g of row 0 in lanes 0..8, g + 1 in 8..16; of row 1 in 16..24, 24..32.
    let gsel = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)),
        _mm256_setr_epi16(16, 16, 16, 16, 16, 16, 16, 16, 17, 17, 17, 17, 17, 17, 17, 17),
    );
    for ib in 0..a[0].len() {
        let blk = [&w[0][210 * ib..210 * ib + 210], &w[1][210 * ib..210 * ib + 210]];
        let ab: [&BlockQ8K; 8] = std::array::from_fn(|t| &a[t][ib]);
        // SAFETY (all loads of blk): every offset + length below is ≤ 208 < 210.
        let ld = |off: usize| unsafe {
            let p = |r: usize| _mm256_loadu_si256(blk[r].as_ptr().add(off) as *const __m256i);
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(p(0)), p(1))
        };
        let scz = unsafe {
            let p = |r: usize| _mm256_cvtepi8_epi16(_mm_loadu_si128(blk[r].as_ptr().add(192) as *const __m128i));
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(p(0)), p(1))
        };
        let mut sumv = [_mm512_setzero_si512(); 8];
        let hb = |h: __m512i| _mm512_slli_epi16::<4>(_mm512_and_si512(h, m2));
        for n in 0..2 {
            let (ql0, ql1, qh) = (ld(64 * n), ld(64 * n + 32), ld(128 + 32 * n));
            let q = [
                _mm512_or_si512(_mm512_and_si512(ql0, m4), hb(qh)),
                _mm512_or_si512(_mm512_and_si512(ql1, m4), hb(_mm512_srli_epi16::<2>(qh))),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(ql0), m4), hb(_mm512_srli_epi16::<4>(qh))),
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(ql1), m4), hb(_mm512_srli_epi16::<6>(qh))),
            ];
            for (m, &qm) in q.iter().enumerate() {
                let e = 128 * n + 32 * m;
                let sv = _mm512_permutexvar_epi16(_mm512_add_epi16(gsel, _mm512_set1_epi16((e / 16) as i16)), scz);
                for t in 0..8 {
                    // SAFETY: qs holds 256 codes; e + 32 ≤ 256.
                    let av = unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(ab[t].qs.as_ptr().add(e) as *const __m256i)) };
                    // Codes 0..63 × signed 8-bit codes: pair sums ≤ 2·63·128, no saturation.
                    sumv[t] = _mm512_add_epi32(sumv[t], _mm512_madd_epi16(_mm512_maddubs_epi16(qm, av), sv));
                }
            }
        }
        // The codes are stored +32: subtract 32·Σ_g bsums_g·scale_g (as q6_k_offset, per row).
        for (t, s) in sumv.iter_mut().enumerate() {
            // SAFETY: bsums holds sixteen i16.
            let bs = unsafe { _mm512_broadcast_i64x4(_mm256_loadu_si256(ab[t].bsums.as_ptr() as *const __m256i)) };
            *s = _mm512_sub_epi32(*s, _mm512_slli_epi32::<5>(_mm512_madd_epi16(bs, scz)));
        }
        // Per 128-bit lane: [Σ t, Σ t+1, Σ t+2, Σ t+3] of its four i32 (t = 0 or 4), then both
        // 128-bit lanes of a row summed.
        let x = |p: __m512i, q: __m512i| _mm512_add_epi32(_mm512_unpacklo_epi32(p, q), _mm512_unpackhi_epi32(p, q));
        let y = |p: __m512i, q: __m512i| _mm512_add_epi32(_mm512_unpacklo_epi64(p, q), _mm512_unpackhi_epi64(p, q));
        let y0 = y(x(sumv[0], sumv[1]), x(sumv[2], sumv[3]));
        let y1 = y(x(sumv[4], sumv[5]), x(sumv[6], sumv[7]));
        let z = _mm512_add_epi32(_mm512_shuffle_i32x4::<0b10_00_10_00>(y0, y1), _mm512_shuffle_i32x4::<0b11_01_11_01>(y0, y1));
        let f16 = |r: usize| _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([blk[r][208], blk[r][209]]) as i32)));
        let (d0, d1) = (f16(0), f16(1));
        let dz = _mm512_setr_ps(d0, d0, d0, d0, d1, d1, d1, d1, d0, d0, d0, d0, d1, d1, d1, d1);
        let ad = |t: usize| _mm_setr_ps(ab[t].d, ab[t + 1].d, ab[t + 2].d, ab[t + 3].d);
        let (a0, a4) = (ad(0), ad(4));
        // (Through f64 lanes: the f32x8 insert needs AVX-512DQ.)
        let adz = _mm512_castpd_ps(_mm512_insertf64x4::<1>(
            _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_set_m128(a0, a0))),
            _mm256_castps_pd(_mm256_set_m128(a4, a4)),
        ));
        acc = _mm512_fmadd_ps(_mm512_mul_ps(dz, _mm512_cvtepi32_ps(z)), adz, acc);
    }
    let mut out = [0f32; 16];
    // SAFETY: out holds sixteen f32.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
    std::array::from_fn(|r| std::array::from_fn(|t| out[8 * (t / 4) + 4 * r + t % 4]))
}

/// Q6_K tiled order, two weight rows × eight activation rows, AVX-512 (listed by the kernel
/// table only where AVX-512 F/BW/VL and AVX2/FMA/F16C are present).
#[cfg(finetune_avx512)]
pub(in crate::quant) fn q6_k_tiled_2x8(w: [&[u8]; 2], a: [&[BlockQ8K]; 8]) -> [[f32; 8]; 2] {
    w.iter().for_each(|w| check(w, &a, 210));
    // SAFETY: the kernel table lists this only where these features are detected.
    unsafe { q6_k_tiled_2x8_imp(w, a) }
}
