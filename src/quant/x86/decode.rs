//! AVX2 (+F16C) decoders. Every function here computes the same f32 operations in the same
//! order as its scalar twin (a multiply, then an add or subtract; never a fused multiply-add), so
//! results are bit-identical; `tests/simd_vs_scalar.rs` checks that. The kernel table
//! ([`crate::quant::kernels`]) lists them per type.

use std::arch::x86_64::*;

use super::available;
use crate::quant::iq4::KVALUES;
use crate::quant::kquants::{q3_k, q4_k};
use crate::quant::small::{e8m0_half, MXFP4_VALUES};
use crate::quant::util::f16_at;

macro_rules! wrap {
    ($name:ident, $imp:ident, $ts:expr) => {
        /// The AVX2 decoder (whole blocks); panics on a CPU without AVX2/FMA/F16C.
        pub(in crate::quant) fn $name(b: &[u8], y: &mut [f32]) {
            assert!(available(), "AVX2 decoder called on a CPU without AVX2/FMA/F16C");
            assert_eq!(b.len() % $ts, 0);
            // SAFETY: the CPU features were checked above; the kernels index only within
            // whole blocks of `b` and the matching elements of `y` (sizes checked by caller).
            unsafe { $imp(b, y) }
        }
    };
}

wrap!(f16, f16_imp, 2);
wrap!(bf16, bf16_imp, 2);
wrap!(q4_0, q4_0_imp, 18);
wrap!(q4_1, q4_1_imp, 20);
wrap!(q5_0, q5_0_imp, 22);
wrap!(q5_1, q5_1_imp, 24);
wrap!(q8_0, q8_0_imp, 34);
wrap!(q2_k, q2_k_imp, 84);
wrap!(q3_k, q3_k_imp, 110);
wrap!(q4_k, q4_k_imp, 144);
wrap!(q5_k, q5_k_imp, 176);
wrap!(q6_k, q6_k_imp, 210);
wrap!(iq4_nl, iq4_nl_imp, 18);
wrap!(iq4_xs, iq4_xs_imp, 136);
wrap!(mxfp4, mxfp4_imp, 17);
wrap!(tq2_0, tq2_0_imp, 66);

// ---- helpers: 16 signed bytes → 16 f32, times a scale, plus/minus an offset -------------

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen(q: __m128i) -> (__m256, __m256) {
    let a = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q));
    let b = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(q, 8)));
    (a, b)
}

/// y[0..16] = d·q
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_mul(y: *mut f32, q: __m128i, d: __m256) {
    let (a, b) = widen(q);
    _mm256_storeu_ps(y, _mm256_mul_ps(d, a));
    _mm256_storeu_ps(y.add(8), _mm256_mul_ps(d, b));
}

/// y[0..16] = d·q + m
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_mul_add(y: *mut f32, q: __m128i, d: __m256, m: __m256) {
    let (a, b) = widen(q);
    _mm256_storeu_ps(y, _mm256_add_ps(_mm256_mul_ps(d, a), m));
    _mm256_storeu_ps(y.add(8), _mm256_add_ps(_mm256_mul_ps(d, b), m));
}

/// y[0..16] = d·q − m
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn store_mul_sub(y: *mut f32, q: __m128i, d: __m256, m: __m256) {
    let (a, b) = widen(q);
    _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(d, a), m));
    _mm256_storeu_ps(y.add(8), _mm256_sub_ps(_mm256_mul_ps(d, b), m));
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load16(p: *const u8) -> __m128i {
    _mm_loadu_si128(p as *const __m128i)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn low_nibbles(x: __m128i) -> __m128i {
    _mm_and_si128(x, _mm_set1_epi8(15))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn high_nibbles(x: __m128i) -> __m128i {
    _mm_and_si128(_mm_srli_epi16(x, 4), _mm_set1_epi8(15))
}

/// Bytes (x >> shift) & mask, for shift < 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits(x: __m128i, shift: i32, mask: i8) -> __m128i {
    let s = _mm_srl_epi16(x, _mm_cvtsi32_si128(shift));
    _mm_and_si128(s, _mm_set1_epi8(mask))
}

/// 16 bytes, byte j = 0x10 if bit (`first` + j) of `h` is set, else 0.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bits_to_16(h: u32, first: u32) -> __m128i {
    let v = _mm_set1_epi32((h >> first) as i32);
    let idx = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let bytes = _mm_shuffle_epi8(v, idx);
    let mask = _mm_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let hit = _mm_cmpeq_epi8(_mm_and_si128(bytes, mask), mask);
    _mm_and_si128(hit, _mm_set1_epi8(0x10))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lut16(table: &[i8; 16]) -> __m128i {
    _mm_loadu_si128(table.as_ptr() as *const __m128i)
}

// ---- kernels ------------------------------------------------------------------------

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_imp(b: &[u8], y: &mut [f32]) {
    let n = b.len() / 2;
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(b.as_ptr().add(2 * i) as *const __m128i);
        _mm256_storeu_ps(y.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    crate::quant::float::decode_f16(&b[2 * i..], &mut y[i..]);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bf16_imp(b: &[u8], y: &mut [f32]) {
    let n = b.len() / 2;
    let mut i = 0;
    while i + 8 <= n {
        let h = _mm_loadu_si128(b.as_ptr().add(2 * i) as *const __m128i);
        let w = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
        _mm256_storeu_ps(y.as_mut_ptr().add(i), _mm256_castsi256_ps(w));
        i += 8;
    }
    crate::quant::float::decode_bf16(&b[2 * i..], &mut y[i..]);
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_0_imp(b: &[u8], y: &mut [f32]) {
    let eight = _mm_set1_epi8(8);
    for (blk, out) in b.chunks_exact(18).zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(blk, 0));
        let qs = load16(blk.as_ptr().add(2));
        let o = out.as_mut_ptr();
        store_mul(o, _mm_sub_epi8(low_nibbles(qs), eight), d);
        store_mul(o.add(16), _mm_sub_epi8(high_nibbles(qs), eight), d);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_1_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(20).zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(blk, 0));
        let m = _mm256_set1_ps(f16_at(blk, 2));
        let qs = load16(blk.as_ptr().add(4));
        let o = out.as_mut_ptr();
        store_mul_add(o, low_nibbles(qs), d, m);
        store_mul_add(o.add(16), high_nibbles(qs), d, m);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_0_imp(b: &[u8], y: &mut [f32]) {
    let sixteen = _mm_set1_epi8(16);
    for (blk, out) in b.chunks_exact(22).zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(blk, 0));
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let qs = load16(blk.as_ptr().add(6));
        let lo = _mm_or_si128(low_nibbles(qs), bits_to_16(qh, 0));
        let hi = _mm_or_si128(high_nibbles(qs), bits_to_16(qh, 16));
        let o = out.as_mut_ptr();
        store_mul(o, _mm_sub_epi8(lo, sixteen), d);
        store_mul(o.add(16), _mm_sub_epi8(hi, sixteen), d);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_1_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(24).zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(blk, 0));
        let m = _mm256_set1_ps(f16_at(blk, 2));
        let qh = u32::from_le_bytes([blk[4], blk[5], blk[6], blk[7]]);
        let qs = load16(blk.as_ptr().add(8));
        let lo = _mm_or_si128(low_nibbles(qs), bits_to_16(qh, 0));
        let hi = _mm_or_si128(high_nibbles(qs), bits_to_16(qh, 16));
        let o = out.as_mut_ptr();
        store_mul_add(o, lo, d, m);
        store_mul_add(o.add(16), hi, d, m);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q8_0_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(34).zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(blk, 0));
        let o = out.as_mut_ptr();
        store_mul(o, load16(blk.as_ptr().add(2)), d);
        store_mul(o.add(16), load16(blk.as_ptr().add(18)), d);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2_k_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(84).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 80);
        let dmin = f16_at(blk, 82);
        let o = out.as_mut_ptr();
        for n in 0..2 {
            for h in 0..2 {
                let q = load16(blk.as_ptr().add(16 + 32 * n + 16 * h));
                for j in 0..4 {
                    let sc = blk[8 * n + 2 * j + h];
                    let dl = _mm256_set1_ps(d * (sc & 15) as f32);
                    let ml = _mm256_set1_ps(dmin * (sc >> 4) as f32);
                    store_mul_sub(o.add(128 * n + 32 * j + 16 * h), bits(q, 2 * j as i32, 3), dl, ml);
                }
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3_k_imp(b: &[u8], y: &mut [f32]) {
    let four = _mm_set1_epi8(4);
    let zero = _mm_setzero_si128();
    for (blk, out) in b.chunks_exact(110).zip(y.chunks_exact_mut(256)) {
        let sc = q3_k::scales(&blk[96..108]);
        let d = f16_at(blk, 108);
        let o = out.as_mut_ptr();
        for h in 0..2 {
            let hm = load16(blk.as_ptr().add(16 * h));
            for n in 0..2 {
                let q = load16(blk.as_ptr().add(32 + 32 * n + 16 * h));
                for j in 0..4 {
                    let bit = _mm_set1_epi8((1u8 << (4 * n + j)) as i8);
                    let clear = _mm_cmpeq_epi8(_mm_and_si128(hm, bit), zero);
                    let v = _mm_sub_epi8(bits(q, 2 * j as i32, 3), _mm_and_si128(clear, four));
                    let dl = _mm256_set1_ps(d * sc[8 * n + 2 * j + h] as f32);
                    store_mul(o.add(128 * n + 32 * j + 16 * h), v, dl);
                }
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4_k_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(144).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let dmin = f16_at(blk, 2);
        let s = &blk[4..16];
        let o = out.as_mut_ptr();
        for c in 0..4 {
            let (sc0, m0) = q4_k::scale_min(2 * c, s);
            let (sc1, m1) = q4_k::scale_min(2 * c + 1, s);
            let d0 = _mm256_set1_ps(d * sc0 as f32);
            let dm0 = _mm256_set1_ps(dmin * m0 as f32);
            let d1 = _mm256_set1_ps(d * sc1 as f32);
            let dm1 = _mm256_set1_ps(dmin * m1 as f32);
            for half in 0..2 {
                let q = load16(blk.as_ptr().add(16 + 32 * c + 16 * half));
                store_mul_sub(o.add(64 * c + 16 * half), low_nibbles(q), d0, dm0);
                store_mul_sub(o.add(64 * c + 32 + 16 * half), high_nibbles(q), d1, dm1);
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_k_imp(b: &[u8], y: &mut [f32]) {
    for (blk, out) in b.chunks_exact(176).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let dmin = f16_at(blk, 2);
        let s = &blk[4..16];
        let o = out.as_mut_ptr();
        for c in 0..4 {
            let (sc0, m0) = q4_k::scale_min(2 * c, s);
            let (sc1, m1) = q4_k::scale_min(2 * c + 1, s);
            let d0 = _mm256_set1_ps(d * sc0 as f32);
            let dm0 = _mm256_set1_ps(dmin * m0 as f32);
            let d1 = _mm256_set1_ps(d * sc1 as f32);
            let dm1 = _mm256_set1_ps(dmin * m1 as f32);
            for half in 0..2 {
                let qh = load16(blk.as_ptr().add(16 + 16 * half));
                let h0 = _mm_slli_epi16(bits(qh, 2 * c as i32, 1), 4);
                let h1 = _mm_slli_epi16(bits(qh, 2 * c as i32 + 1, 1), 4);
                let q = load16(blk.as_ptr().add(48 + 32 * c + 16 * half));
                store_mul_sub(o.add(64 * c + 16 * half), _mm_or_si128(low_nibbles(q), h0), d0, dm0);
                store_mul_sub(o.add(64 * c + 32 + 16 * half), _mm_or_si128(high_nibbles(q), h1), d1, dm1);
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6_k_imp(b: &[u8], y: &mut [f32]) {
    let m32 = _mm_set1_epi8(32);
    for (blk, out) in b.chunks_exact(210).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 208);
        let o = out.as_mut_ptr();
        for n in 0..2 {
            let sc = &blk[192 + 8 * n..200 + 8 * n];
            for i in 0..2 {
                let l = 16 * i;
                let ql0 = load16(blk.as_ptr().add(64 * n + l));
                let ql1 = load16(blk.as_ptr().add(64 * n + 32 + l));
                let qh = load16(blk.as_ptr().add(128 + 32 * n + l));
                let q1 = _mm_or_si128(low_nibbles(ql0), _mm_slli_epi16(bits(qh, 0, 3), 4));
                let q2 = _mm_or_si128(low_nibbles(ql1), _mm_slli_epi16(bits(qh, 2, 3), 4));
                let q3 = _mm_or_si128(high_nibbles(ql0), _mm_slli_epi16(bits(qh, 4, 3), 4));
                let q4 = _mm_or_si128(high_nibbles(ql1), _mm_slli_epi16(bits(qh, 6, 3), 4));
                let base = o.add(128 * n + l);
                for (k, q) in [q1, q2, q3, q4].into_iter().enumerate() {
                    let dl = _mm256_set1_ps(d * (sc[i + 2 * k] as i8) as f32);
                    store_mul(base.add(32 * k), _mm_sub_epi8(q, m32), dl);
                }
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_nl_imp(b: &[u8], y: &mut [f32]) {
    let lut = lut16(&KVALUES);
    for (blk, out) in b.chunks_exact(18).zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16_at(blk, 0));
        let qs = load16(blk.as_ptr().add(2));
        let o = out.as_mut_ptr();
        store_mul(o, _mm_shuffle_epi8(lut, low_nibbles(qs)), d);
        store_mul(o.add(16), _mm_shuffle_epi8(lut, high_nibbles(qs)), d);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4_xs_imp(b: &[u8], y: &mut [f32]) {
    let lut = lut16(&KVALUES);
    for (blk, out) in b.chunks_exact(136).zip(y.chunks_exact_mut(256)) {
        let d = f16_at(blk, 0);
        let scales_h = u16::from_le_bytes([blk[2], blk[3]]);
        let o = out.as_mut_ptr();
        for ib in 0..8 {
            let ls = ((blk[4 + ib / 2] >> (4 * (ib % 2))) & 15) | ((((scales_h >> (2 * ib)) & 3) as u8) << 4);
            let dl = _mm256_set1_ps(d * (ls as i32 - 32) as f32);
            let qs = load16(blk.as_ptr().add(8 + 16 * ib));
            store_mul(o.add(32 * ib), _mm_shuffle_epi8(lut, low_nibbles(qs)), dl);
            store_mul(o.add(32 * ib + 16), _mm_shuffle_epi8(lut, high_nibbles(qs)), dl);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mxfp4_imp(b: &[u8], y: &mut [f32]) {
    let lut = lut16(&MXFP4_VALUES);
    for (blk, out) in b.chunks_exact(17).zip(y.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(e8m0_half(blk[0]));
        let qs = load16(blk.as_ptr().add(1));
        let o = out.as_mut_ptr();
        store_mul(o, _mm_shuffle_epi8(lut, low_nibbles(qs)), d);
        store_mul(o.add(16), _mm_shuffle_epi8(lut, high_nibbles(qs)), d);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tq2_0_imp(b: &[u8], y: &mut [f32]) {
    let one = _mm_set1_epi8(1);
    for (blk, out) in b.chunks_exact(66).zip(y.chunks_exact_mut(256)) {
        let d = _mm256_set1_ps(f16_at(blk, 64));
        let o = out.as_mut_ptr();
        for a in 0..2 {
            for half in 0..2 {
                let q = load16(blk.as_ptr().add(32 * a + 16 * half));
                for l in 0..4 {
                    let v = _mm_sub_epi8(bits(q, 2 * l as i32, 3), one);
                    store_mul(o.add(128 * a + 32 * l + 16 * half), v, d);
                }
            }
        }
    }
}
