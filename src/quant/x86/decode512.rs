//! AVX-512 (F + BW + VL) decoders for the hot types of K-quant models (Q4_K, Q6_K) and the
//! cheap 32-element ones (Q5_0, Q8_0). Same contract as the AVX2 twins in [`super::decode`]: the
//! same f32 operations in the same order as the scalar reference (a multiply, then an add or
//! subtract; never a fused multiply-add), so the same bits; 16 floats per instruction instead of
//! 8. `tests/simd_vs_scalar.rs` checks them against the scalar references.
//!
//! Compiled only with rustc ≥ 1.89 (`cfg(finetune_avx512)` from `build.rs`), where the AVX-512
//! intrinsics are stable; older compilers keep the AVX2 decoders.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

use super::avx512_available;
use crate::quant::kquants::q4_k;
use crate::quant::util::f16_at;

macro_rules! wrap {
    ($name:ident, $imp:ident, $ts:expr) => {
        /// The AVX-512 decoder (whole blocks); panics on a CPU without AVX-512F/BW/VL.
        pub(in crate::quant) fn $name(b: &[u8], y: &mut [f32]) {
            assert!(avx512_available(), "AVX-512 decoder called on a CPU without AVX-512F/BW/VL");
            assert_eq!(b.len() % $ts, 0);
            // SAFETY: the CPU features were checked above; the kernels index only within
            // whole blocks of `b` and the matching elements of `y` (sizes checked by caller).
            unsafe { $imp(b, y) }
        }
    };
}

wrap!(q5_0, q5_0_imp, 22);
wrap!(q8_0, q8_0_imp, 34);
wrap!(q4_k, q4_k_imp, 144);
wrap!(q6_k, q6_k_imp, 210);

/// y[0..16] = d·q for 16 signed bytes `q`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn store_mul(y: *mut f32, q: __m128i, d: __m512) {
    let f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q));
    _mm512_storeu_ps(y, _mm512_mul_ps(d, f));
}

/// y[0..32] = d·q for 32 signed bytes `q`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn store_mul32(y: *mut f32, q: __m256i, d: __m512) {
    store_mul(y, _mm256_castsi256_si128(q), d);
    store_mul(y.add(16), _mm256_extracti128_si256::<1>(q), d);
}

/// y[0..32] = d·q − m for 32 signed bytes `q`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn store_mul_sub32(y: *mut f32, q: __m256i, d: __m512, m: __m512) {
    let a = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
    let b = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256::<1>(q)));
    _mm512_storeu_ps(y, _mm512_sub_ps(_mm512_mul_ps(d, a), m));
    _mm512_storeu_ps(y.add(16), _mm512_sub_ps(_mm512_mul_ps(d, b), m));
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn load32(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

/// Bytes (x >> shift) & mask, for shift < 8.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn bits(x: __m256i, shift: i32, mask: i8) -> __m256i {
    let s = _mm256_srl_epi16(x, _mm_cvtsi32_si128(shift));
    _mm256_and_si256(s, _mm256_set1_epi8(mask))
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn q5_0_imp(b: &[u8], y: &mut [f32]) {
    let sixteen = _mm256_set1_epi8(16);
    for (blk, out) in b.chunks_exact(22).zip(y.chunks_exact_mut(32)) {
        let d = _mm512_set1_ps(f16_at(blk, 0));
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let qs = _mm_loadu_si128(blk.as_ptr().add(6) as *const __m128i);
        // Elements 0..16 take the low nibbles, 16..32 the high ones; element j takes bit j of qh.
        let nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), _mm256_set1_epi8(15));
        let q = _mm256_mask_mov_epi8(nib, qh, _mm256_or_si256(nib, sixteen));
        store_mul32(out.as_mut_ptr(), _mm256_sub_epi8(q, sixteen), d);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn q8_0_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(34).zip(y.chunks_exact_mut(32)) {
        let d = _mm512_set1_ps(f16_at(blk, 0));
        store_mul32(out.as_mut_ptr(), load32(blk.as_ptr().add(2)), d);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn q4_k_imp(b: &[u8], y: &mut [f32]) {
    let low = _mm256_set1_epi8(15);
    for (blk, out) in b.chunks_exact(144).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let dmin = f16_at(blk, 2);
        let s = &blk[4..16];
        let o = out.as_mut_ptr();
        for c in 0..4 {
            let (sc0, m0) = q4_k::scale_min(2 * c, s);
            let (sc1, m1) = q4_k::scale_min(2 * c + 1, s);
            let q = load32(blk.as_ptr().add(16 + 32 * c));
            let lo = _mm256_and_si256(q, low);
            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), low);
            let (d0, dm0) = (_mm512_set1_ps(d * sc0 as f32), _mm512_set1_ps(dmin * m0 as f32));
            let (d1, dm1) = (_mm512_set1_ps(d * sc1 as f32), _mm512_set1_ps(dmin * m1 as f32));
            store_mul_sub32(o.add(64 * c), lo, d0, dm0);
            store_mul_sub32(o.add(64 * c + 32), hi, d1, dm1);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
unsafe fn q6_k_imp(b: &[u8], y: &mut [f32]) {
    let m32 = _mm256_set1_epi8(32);
    let low = _mm256_set1_epi8(15);
    for (blk, out) in b.chunks_exact(210).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 208);
        let o = out.as_mut_ptr();
        for n in 0..2 {
            let sc = &blk[192 + 8 * n..200 + 8 * n];
            let ql0 = load32(blk.as_ptr().add(64 * n));
            let ql1 = load32(blk.as_ptr().add(64 * n + 32));
            let qh = load32(blk.as_ptr().add(128 + 32 * n));
            let q1 = _mm256_or_si256(_mm256_and_si256(ql0, low), _mm256_slli_epi16(bits(qh, 0, 3), 4));
            let q2 = _mm256_or_si256(_mm256_and_si256(ql1, low), _mm256_slli_epi16(bits(qh, 2, 3), 4));
            let q3 = _mm256_or_si256(bits(ql0, 4, 15), _mm256_slli_epi16(bits(qh, 4, 3), 4));
            let q4 = _mm256_or_si256(bits(ql1, 4, 15), _mm256_slli_epi16(bits(qh, 6, 3), 4));
            for (k, q) in [q1, q2, q3, q4].into_iter().enumerate() {
                let q = _mm256_sub_epi8(q, m32);
                // Bytes 0..16 and 16..32 of each quarter have their own scale.
                let d0 = _mm512_set1_ps(d * (sc[2 * k] as i8) as f32);
                let d1 = _mm512_set1_ps(d * (sc[2 * k + 1] as i8) as f32);
                let base = o.add(128 * n + 32 * k);
                store_mul(base, _mm256_castsi256_si128(q), d0);
                store_mul(base.add(16), _mm256_extracti128_si256::<1>(q), d1);
            }
        }
    }
}
