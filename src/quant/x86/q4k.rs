//! AVX2 twins of [`crate::quant::q4k_ggml`]'s scalar references of llama.cpp's repacked Q4_K
//! gemv / gemm: only the integer sums are vectorized, the float steps are the references', so the
//! results are bit-identical.

use std::arch::x86_64::*;

use crate::quant::q4k_ggml::check;
use crate::quant::q8::BlockQ8K;

/// The eight 6-bit scales (`[0]`) and mins (`[1]`) of a block, as i16 lanes (ggml's `utmp`
/// unpacking, equal to [`crate::quant::kquants::q4_k::scale_min`]).
#[inline(always)]
fn scales_mins(blk: &[u8]) -> [[i16; 8]; 2] {
    let u = |i: usize| u32::from_le_bytes([blk[4 + 4 * i], blk[5 + 4 * i], blk[6 + 4 * i], blk[7 + 4 * i]]);
    let (k1, k2, k3) = (0x3f3f_3f3f_u32, 0x0f0f_0f0f_u32, 0x0303_0303_u32);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let b = [u0 & k1, (u2 & k2) | (((u0 >> 6) & k3) << 4), u1 & k1, ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4)];
    let by = |i: usize| ((b[i / 4] >> (8 * (i % 4))) & 0xff) as i16;
    [std::array::from_fn(by), std::array::from_fn(|j| by(8 + j))]
}

/// [`scales_mins`] as two vectors of eight i16 lanes (scales, mins).
#[cfg(finetune_avx512)]
#[allow(clippy::incompatible_msrv)] // built only where rustc has the AVX-512 intrinsics (build.rs)
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn scales_mins_v(blk: &[u8]) -> (__m128i, __m128i) {
    let u = |i: usize| u32::from_le_bytes([blk[4 + 4 * i], blk[5 + 4 * i], blk[6 + 4 * i], blk[7 + 4 * i]]);
    let (k1, k2, k3) = (0x3f3f_3f3f_u32, 0x0f0f_0f0f_u32, 0x0303_0303_u32);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let b = [u0 & k1, (u2 & k2) | (((u0 >> 6) & k3) << 4), u1 & k1, ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4)];
    let v = _mm_setr_epi32(b[0] as i32, b[1] as i32, b[2] as i32, b[3] as i32);
    (_mm_cvtepu8_epi16(v), _mm_cvtepu8_epi16(_mm_srli_si128::<8>(v)))
}

/// Integer sums of one weight block against `N` activation blocks: per row, the
/// per-pair `Σ sc_j·S_j` and `Σ m_j·B_j` (`j = 2s, 2s+1`), as i32 lanes `s = 0..4`; without
/// `PAIRS` the first is only right in its lane sum (what the gemv needs).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn block_sums<const N: usize, const PAIRS: bool>(blk: &[u8], a: [&BlockQ8K; N]) -> [(__m128i, __m128i); N] {
    let [sc, mn] = scales_mins(blk);
    let m4 = _mm256_set1_epi8(0x0F);
    // SAFETY: mn holds eight i16.
    let mnv = unsafe { _mm_loadu_si128(mn.as_ptr() as *const __m128i) };
    // Pair c of row n folds into t01[n] / t23[n] (hadd of pairs 0,1 / 2,3) as soon as it is
    // complete, which keeps few vectors live. Plain loops, no closures: a closure would not
    // inherit this function's target features and would stay an out-of-line call.
    let mut prev = [_mm256_setzero_si256(); N];
    let mut t01 = [_mm256_setzero_si256(); N];
    let mut t23 = [_mm256_setzero_si256(); N];
    for c in 0..4 {
        // SAFETY: blk holds 144 bytes (checked by the callers); 16 + 32·c + 32 ≤ 144.
        let raw = unsafe { _mm256_loadu_si256(blk.as_ptr().add(16 + 32 * c) as *const __m256i) };
        let lo = _mm256_and_si256(raw, m4);
        let hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        let (s0, s1) = (_mm256_set1_epi16(sc[2 * c]), _mm256_set1_epi16(sc[2 * c + 1]));
        for n in 0..N {
            // SAFETY: qs holds 256 codes; 64·c + 64 ≤ 256.
            let (a0, a1) = unsafe {
                let p = a[n].qs.as_ptr().add(64 * c) as *const __m256i;
                (_mm256_loadu_si256(p), _mm256_loadu_si256(p.add(1)))
            };
            // Unsigned 4-bit codes × signed 8-bit codes: pair sums ≤ 2·15·128, no saturation.
            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), s0);
            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), s1);
            let v = _mm256_add_epi32(p0, p1);
            match (PAIRS, c) {
                (false, _) => t01[n] = _mm256_add_epi32(t01[n], v),
                (true, 1) => t01[n] = _mm256_hadd_epi32(prev[n], v),
                (true, 3) => t23[n] = _mm256_hadd_epi32(prev[n], v),
                _ => prev[n] = v,
            }
        }
    }
    let mut out = [(_mm_setzero_si128(), _mm_setzero_si128()); N];
    for (n, o) in out.iter_mut().enumerate() {
        let s = if PAIRS { _mm256_hadd_epi32(t01[n], t23[n]) } else { t01[n] };
        let pairs = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        let ab = a[n];
        // SAFETY: bsums holds sixteen i16.
        let (b0, b1) = unsafe {
            let p = ab.bsums.as_ptr() as *const __m128i;
            (_mm_loadu_si128(p), _mm_loadu_si128(p.add(1)))
        };
        // B_j = bsums[2j] + bsums[2j+1] (|B_j| ≤ 32·128 fits i16), then m_2s·B_2s + m_2s+1·B_2s+1.
        *o = (pairs, _mm_madd_epi16(_mm_hadd_epi16(b0, b1), mnv));
    }
    out
}

/// The f16 at `b[off..off + 2]` widened (F16C; exact, as [`crate::quant::util::f16_at`]).
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16c_at(b: &[u8], off: usize) -> f32 {
    let h = u16::from_le_bytes([b[off], b[off + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum4(v: __m128i) -> i32 {
    let v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0b01_00_11_10));
    _mm_cvtsi128_si32(_mm_add_epi32(v, _mm_shuffle_epi32(v, 0b10_11_00_01)))
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemv_imp(w: &[u8], a: &[BlockQ8K]) -> f32 {
    let (mut acc, mut accm) = (0f32, 0f32);
    for (blk, ab) in w.chunks_exact(144).zip(a) {
        // SAFETY: blk is a whole 144-byte block; AVX2 is enabled on this function.
        let [(p, m)] = unsafe { block_sums::<1, false>(blk, [ab]) };
        let (d, dmin) = (f16c_at(blk, 0), f16c_at(blk, 2));
        // Integer sums are exact in any order: the float steps are gemv_acc's.
        acc = (hsum4(p) as f32).mul_add(d * ab.d, acc);
        accm = (hsum4(m) as f32).mul_add(dmin * ab.d, accm);
    }
    acc - accm
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn gemm4_imp(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    // Lanes 0..4: the four rows' `acc`; lanes 4..8: their `accm` (gemm_acc's order per lane).
    let mut acc = _mm256_setzero_ps();
    for (b, blk) in w.chunks_exact(144).enumerate() {
        let ab = [&a[0][b], &a[1][b], &a[2][b], &a[3][b]];
        // SAFETY: blk is a whole 144-byte block; AVX2 is enabled on this function.
        let s = unsafe { block_sums::<4, true>(blk, ab) };
        // Rows × pairs → pairs × rows (i32 → f32 is exact per element, so convert first).
        let mut p = [_mm_setzero_ps(); 4];
        let mut m = [_mm_setzero_ps(); 4];
        for n in 0..4 {
            p[n] = _mm_cvtepi32_ps(s[n].0);
            m[n] = _mm_cvtepi32_ps(s[n].1);
        }
        transpose(&mut p);
        transpose(&mut m);
        let ad = _mm_setr_ps(ab[0].d, ab[1].d, ab[2].d, ab[3].d);
        let (d, dmin) = (f16c_at(blk, 0), f16c_at(blk, 2));
        let scale = _mm256_set_m128(_mm_mul_ps(_mm_set1_ps(dmin), ad), _mm_mul_ps(_mm_set1_ps(d), ad));
        for sp in 0..4 {
            acc = _mm256_fmadd_ps(_mm256_set_m128(m[sp], p[sp]), scale, acc);
        }
    }
    let mut out = [0f32; 8];
    // SAFETY: out holds eight f32.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    [out[0] - out[4], out[1] - out[5], out[2] - out[6], out[3] - out[7]]
}

/// In-place 4×4 transpose of f32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn transpose(r: &mut [__m128; 4]) {
    let t0 = _mm_unpacklo_ps(r[0], r[1]);
    let t1 = _mm_unpackhi_ps(r[0], r[1]);
    let t2 = _mm_unpacklo_ps(r[2], r[3]);
    let t3 = _mm_unpackhi_ps(r[2], r[3]);
    *r = [_mm_movelh_ps(t0, t2), _mm_movehl_ps(t2, t0), _mm_movelh_ps(t1, t3), _mm_movehl_ps(t3, t1)];
}

/// AVX2 twin of [`crate::quant::q4k_ggml::gemv_scalar`] (listed by the kernel table only where
/// AVX2/FMA/F16C are present).
pub(in crate::quant) fn gemv(w: &[u8], a: &[BlockQ8K]) -> f32 {
    check(w, a);
    // SAFETY: the kernel table lists this only where AVX2, FMA and F16C are detected.
    unsafe { gemv_imp(w, a) }
}

/// AVX2 twin of [`crate::quant::q4k_ggml::gemm4_scalar`] (as [`gemv`]).
pub(in crate::quant) fn gemm4(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    a.iter().for_each(|r| check(w, r));
    // SAFETY: as for gemv.
    unsafe { gemm4_imp(w, a) }
}

/// AVX-512 twin of [`crate::quant::q4k_ggml::gemm4_scalar`] for two weight rows at once: each
/// 512-bit vector holds the same 32 codes' positions of both rows (row 0 in the low half), the
/// activation codes are broadcast to both halves. The integer sums are exact in any order; per
/// (weight row, activation row) the f32 steps are `gemm_acc`'s (one `fma` per sub-block pair,
/// pairs in order), so every result has the reference's bits.
#[cfg(finetune_avx512)]
#[allow(clippy::incompatible_msrv)] // built only where rustc has the AVX-512 intrinsics (build.rs)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn gemm2x4_imp(w: [&[u8]; 2], a: [&[BlockQ8K]; 4]) -> [[f32; 4]; 2] {
    let m4 = _mm512_set1_epi8(0x0F);
    // Lane 4r + n: row r × activation n, `acc`; lane 8 + 4r + n: its `accm`.
    let mut acc = _mm512_setzero_ps();
    // Per sub-block-pair half h (s = c + h, c = 0 or 2), lane 8h + 4r + n takes i32 element
    // 4n + s of the four rows' code-sum pairs and element 4r + s of the two rows' min pairs.
    let idx_b = |c: i32| {
        _mm512_setr_epi32(c, 4 + c, 8 + c, 12 + c, c, 4 + c, 8 + c, 12 + c, c + 1, 5 + c, 9 + c, 13 + c, c + 1, 5 + c, 9 + c, 13 + c)
    };
    let idx_m = |c: i32| _mm512_setr_epi32(c, c, c, c, 4 + c, 4 + c, 4 + c, 4 + c, c + 1, c + 1, c + 1, c + 1, 5 + c, 5 + c, 5 + c, 5 + c);
    let (ib01, ib23, im01, im23) = (idx_b(0), idx_b(2), idx_m(0), idx_m(2));
    let half8 = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(8));
    for b in 0..a[0].len() {
        let blk = [&w[0][144 * b..144 * b + 144], &w[1][144 * b..144 * b + 144]];
        let ab = [&a[0][b], &a[1][b], &a[2][b], &a[3][b]];
        let ((sc0, mn0), (sc1, mn1)) = (scales_mins_v(blk[0]), scales_mins_v(blk[1]));
        // Sub-block j's scale of row 0 in the low half, of row 1 in the high half.
        let scz = _mm512_castsi256_si512(_mm256_set_m128i(sc1, sc0));
        let sc = |j: i16| _mm512_permutexvar_epi16(_mm512_add_epi16(half8, _mm512_set1_epi16(j)), scz);
        let mut y = [_mm512_setzero_si512(); 4];
        for (c, yc) in y.iter_mut().enumerate() {
            // SAFETY: each block holds 144 bytes; 16 + 32·c + 32 ≤ 144.
            let raw = unsafe {
                let p = |r: usize| _mm256_loadu_si256(blk[r].as_ptr().add(16 + 32 * c) as *const __m256i);
                _mm512_inserti64x4::<1>(_mm512_castsi256_si512(p(0)), p(1))
            };
            let lo = _mm512_and_si512(raw, m4);
            let hi = _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4);
            let (s0, s1) = (sc(2 * c as i16), sc(2 * c as i16 + 1));
            let mut v = [_mm512_setzero_si512(); 4];
            for n in 0..4 {
                // SAFETY: qs holds 256 codes; 64·c + 64 ≤ 256.
                let (a0, a1) = unsafe {
                    let p = ab[n].qs.as_ptr().add(64 * c) as *const __m256i;
                    (_mm512_broadcast_i64x4(_mm256_loadu_si256(p)), _mm512_broadcast_i64x4(_mm256_loadu_si256(p.add(1))))
                };
                // Unsigned 4-bit codes × signed 8-bit codes: pair sums ≤ 2·15·128, no saturation.
                let p0 = _mm512_madd_epi16(_mm512_maddubs_epi16(lo, a0), s0);
                let p1 = _mm512_madd_epi16(_mm512_maddubs_epi16(hi, a1), s1);
                v[n] = _mm512_add_epi32(p0, p1);
            }
            // Per 128-bit lane: [Σ v0, Σ v1, Σ v2, Σ v3] over its four i32.
            let x01 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[0], v[1]), _mm512_unpackhi_epi32(v[0], v[1]));
            let x23 = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2], v[3]), _mm512_unpackhi_epi32(v[2], v[3]));
            *yc = _mm512_add_epi32(_mm512_unpacklo_epi64(x01, x23), _mm512_unpackhi_epi64(x01, x23));
        }
        // Both 128-bit lanes of a row summed: [pair c (row 0, row 1) | pair c + 1 (row 0, row 1)].
        let fold = |p: __m512i, q: __m512i| {
            _mm512_add_epi32(_mm512_shuffle_i32x4::<0b10_00_10_00>(p, q), _mm512_shuffle_i32x4::<0b11_01_11_01>(p, q))
        };
        let (z01, z23) = (fold(y[0], y[1]), fold(y[2], y[3]));
        // B_j = bsums[2j] + bsums[2j+1] (|B_j| ≤ 32·128 fits i16) of the four rows, as i32
        // elements (B_2s, B_2s+1) at 4n + s; the mins (m_2s, m_2s+1) of the two rows at 4r + s.
        let bpairs = |n: usize| {
            // SAFETY: bsums holds sixteen i16.
            let p = ab[n].bsums.as_ptr() as *const __m128i;
            unsafe { _mm_hadd_epi16(_mm_loadu_si128(p), _mm_loadu_si128(p.add(1))) }
        };
        let bz =
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(_mm256_set_m128i(bpairs(1), bpairs(0))), _mm256_set_m128i(bpairs(3), bpairs(2)));
        let mz = _mm512_castsi256_si512(_mm256_set_m128i(mn1, mn0));
        let mins = |ib: __m512i, im: __m512i| _mm512_madd_epi16(_mm512_permutexvar_epi32(ib, bz), _mm512_permutexvar_epi32(im, mz));
        let (p01, p23) = (_mm512_cvtepi32_ps(z01), _mm512_cvtepi32_ps(z23));
        let (m01, m23) = (_mm512_cvtepi32_ps(mins(ib01, im01)), _mm512_cvtepi32_ps(mins(ib23, im23)));
        let (d0, dm0, d1, dm1) = (f16c_at(blk[0], 0), f16c_at(blk[0], 2), f16c_at(blk[1], 0), f16c_at(blk[1], 2));
        let dv = _mm512_setr_ps(d0, d0, d0, d0, d1, d1, d1, d1, dm0, dm0, dm0, dm0, dm1, dm1, dm1, dm1);
        let ad = _mm512_broadcast_f32x4(_mm_setr_ps(ab[0].d, ab[1].d, ab[2].d, ab[3].d));
        let scale = _mm512_mul_ps(dv, ad);
        // Pair s: [its sums (lanes 0..8) | its min terms (lanes 8..16)], s = 0, 1, 2, 3 in order.
        for p in [
            _mm512_shuffle_f32x4::<0b01_00_01_00>(p01, m01),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(p01, m01),
            _mm512_shuffle_f32x4::<0b01_00_01_00>(p23, m23),
            _mm512_shuffle_f32x4::<0b11_10_11_10>(p23, m23),
        ] {
            acc = _mm512_fmadd_ps(p, scale, acc);
        }
    }
    let mut out = [0f32; 16];
    // SAFETY: out holds sixteen f32.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), acc) };
    std::array::from_fn(|r| std::array::from_fn(|n| out[4 * r + n] - out[8 + 4 * r + n]))
}

/// AVX-512 twin of [`crate::quant::q4k_ggml::gemm4_scalar`] for two weight rows (listed by the
/// kernel table only where AVX-512 F/BW/VL and AVX2/FMA/F16C are present).
#[cfg(finetune_avx512)]
pub(in crate::quant) fn gemm2x4(w: [&[u8]; 2], a: [&[BlockQ8K]; 4]) -> [[f32; 4]; 2] {
    w.iter().for_each(|w| a.iter().for_each(|r| check(w, r)));
    // SAFETY: the kernel table lists this only where these features are detected.
    unsafe { gemm2x4_imp(w, a) }
}
