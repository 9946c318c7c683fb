//! Q4_K matmuls with the numerics of llama.cpp's *repacked* CPU path.
//!
//! On AVX2 machines llama.cpp does not run `ggml_vec_dot_q4_K_q8_K` for Q4_K weights whose row
//! count is a multiple of 8: it repacks them (`block_q4_Kx8`, 8 rows interleaved 8 bytes at a
//! time) and its `forward_mul_mat` splits the `t` activation rows as
//!
//! * rows `0 .. t − t%4`, four at a time: quantized by `ggml_quantize_mat_q8_K_4x8`, multiplied by
//!   `ggml_gemm_q4_K_8x8_q8_K`;
//! * the `t%4` remaining rows: quantized by `quantize_row_q8_K`, multiplied by
//!   `ggml_gemv_q4_K_8x8_q8_K`.
//!
//! The layout change does not change any integer, only the float accumulation order, so this
//! module reads the original `block_q4_K` rows in place. Per output, with `S_j` the integer dot of
//! sub-block `j`'s codes with the activation codes, `sc_j`/`m_j` its 6-bit scale/min and `B_j` the
//! activation's code sum over it (two `bsums`):
//!
//! * gemv: per super-block `acc = fma(Σ_j sc_j·S_j, d·d_a, acc)`, `accm = fma(Σ_j m_j·B_j, dmin·d_a,
//!   accm)`; result `acc − accm`.
//! * gemm: the same but one `fma` per *pair* of sub-blocks `(2s, 2s+1)`, four per super-block.
//!
//! The 4-row quantizer equals `quantize_row_q8_K` except for the sign of the scale when a block
//! holds both `+amax` and `−amax`: ggml's reference takes the first, the 4x8 AVX2 quantizer prefers
//! `+amax` ([`quantize_q8k_4x8`]).
//!
//! [`gemv_scalar`] / [`gemm4_scalar`] are the references; the AVX2 twins ([`kernels`]) are
//! bit-identical because only the integer sums are vectorized.

use super::kquants::q4_k::scale_min;
use super::q8::BlockQ8K;
use super::util::{f16_at, nearest_int};

/// One weight row (whole Q4_K blocks) against one Q8_K activation row, gemv numerics.
pub type GemvFn = fn(&[u8], &[BlockQ8K]) -> f32;
/// One weight row against four Q8_K activation rows, gemm numerics.
pub type Gemm4Fn = fn(&[u8], [&[BlockQ8K]; 4]) -> [f32; 4];

/// Q8_K quantization of whole 256-element blocks as `ggml_quantize_mat_q8_K_4x8` (AVX2) does it:
/// `iscale = −127/amax` when some element equals `+amax`, else `127/amax`;
/// `q = round_half_even(iscale·x)` saturated to i8; `d = 1/iscale` (all 0 when `amax = 0`).
pub fn quantize_q8k_4x8(x: &[f32], out: &mut [BlockQ8K]) {
    assert_eq!(x.len(), out.len() * 256, "quantize_q8k_4x8: x must hold 256 values per block");
    for (xb, b) in x.chunks_exact(256).zip(out.iter_mut()) {
        let amax = xb.iter().fold(0f32, |m, &v| m.max(v.abs()));
        if amax == 0.0 {
            *b = BlockQ8K::default();
            continue;
        }
        let iscale = if xb.contains(&amax) { -127.0 / amax } else { 127.0 / amax };
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = nearest_int(iscale * v).clamp(-128, 127) as i8;
        }
        for (g, s) in b.bsums.iter_mut().enumerate() {
            *s = b.qs[16 * g..16 * g + 16].iter().map(|&q| q as i16).sum();
        }
        b.d = 1.0 / iscale;
    }
}

/// The activation rows of `x` (row length `k`, a multiple of 256) as llama.cpp's repacked Q4_K
/// path quantizes them: rows `0 .. t − t%4` by [`quantize_q8k_4x8`], the rest by the ordinary
/// Q8_K quantizer. `k/256` blocks per row.
pub fn quantize_rows(x: &[f32], k: usize) -> Vec<BlockQ8K> {
    let t = x.len() / k;
    let t4 = t - t % 4;
    let mut v = vec![BlockQ8K::default(); x.len() / 256];
    quantize_q8k_4x8(&x[..t4 * k], &mut v[..t4 * k / 256]);
    if t4 < t {
        match super::q8::quantize_rows(super::GgmlType::Q8_K, &x[t4 * k..], k) {
            super::q8::Q8Rows::Q8K(r) => v[t4 * k / 256..].copy_from_slice(&r),
            super::q8::Q8Rows::Q8(_) => unreachable!("Q8_K rows"),
        }
    }
    v
}

/// ggml's `block_q8_Kx4` bytes (1168 per block column) of four quantized rows, for comparisons:
/// `d[4]`, the codes 8 at a time from each row in turn, `bsums[16·g + 4·r + s]` = row `r`'s
/// `bsums[4·g + s]`.
pub fn to_ggml_x4(rows: [&[BlockQ8K]; 4], out: &mut Vec<u8>) {
    for b in 0..rows[0].len() {
        for r in rows {
            out.extend_from_slice(&r[b].d.to_le_bytes());
        }
        for c in 0..32 {
            for r in rows {
                out.extend(r[b].qs[8 * c..8 * c + 8].iter().map(|&q| q as u8));
            }
        }
        for g in 0..4 {
            for r in rows {
                for s in 0..4 {
                    out.extend_from_slice(&r[b].bsums[4 * g + s].to_le_bytes());
                }
            }
        }
    }
}

/// Scales, mins and the per-pair min terms `Σ m_j·B_j` (`j = 2s, 2s+1`) of one weight block
/// against one activation block.
#[inline(always)]
fn scales_and_mins(blk: &[u8], a: &BlockQ8K) -> ([i32; 8], [i32; 4]) {
    let mut sc = [0i32; 8];
    let mut mins = [0i32; 4];
    for j in 0..8 {
        let (s, m) = scale_min(j, &blk[4..16]);
        sc[j] = s as i32;
        mins[j / 2] += m as i32 * (a.bsums[2 * j] as i32 + a.bsums[2 * j + 1] as i32);
    }
    (sc, mins)
}

/// Per sub-block pair `s`: `Σ_{j=2s,2s+1} sc_j·S_j` (scalar).
#[inline(always)]
fn pair_sums_scalar(blk: &[u8], a: &BlockQ8K, sc: &[i32; 8]) -> [i32; 4] {
    let qs = &blk[16..144];
    std::array::from_fn(|c| {
        let q = &qs[32 * c..32 * c + 32];
        let a8 = &a.qs[64 * c..64 * c + 64];
        let s0: i32 = (0..32).map(|l| (q[l] & 15) as i32 * a8[l] as i32).sum();
        let s1: i32 = (0..32).map(|l| (q[l] >> 4) as i32 * a8[32 + l] as i32).sum();
        sc[2 * c] * s0 + sc[2 * c + 1] * s1
    })
}

/// The float accumulation of the gemv: one `fma` per super-block.
#[inline(always)]
fn gemv_acc(blk: &[u8], a: &BlockQ8K, pairs: [i32; 4], mins: [i32; 4], acc: &mut (f32, f32)) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let isum: i32 = pairs.iter().sum();
    let imin: i32 = mins.iter().sum();
    acc.0 = (isum as f32).mul_add(d * a.d, acc.0);
    acc.1 = (imin as f32).mul_add(dmin * a.d, acc.1);
}

/// The float accumulation of the gemm: one `fma` per sub-block pair.
#[inline(always)]
fn gemm_acc(blk: &[u8], a: &BlockQ8K, pairs: [i32; 4], mins: [i32; 4], acc: &mut (f32, f32)) {
    let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
    let (dd, dm) = (d * a.d, dmin * a.d);
    for s in 0..4 {
        acc.0 = (pairs[s] as f32).mul_add(dd, acc.0);
        acc.1 = (mins[s] as f32).mul_add(dm, acc.1);
    }
}

fn check(w: &[u8], a: &[BlockQ8K]) {
    assert_eq!(w.len(), a.len() * 144, "weight row and activation row differ in length");
}

/// `ggml_gemv_q4_K_8x8_q8_K`'s result for one weight row (scalar reference).
pub fn gemv_scalar(w: &[u8], a: &[BlockQ8K]) -> f32 {
    check(w, a);
    let mut acc = (0f32, 0f32);
    for (blk, ab) in w.chunks_exact(144).zip(a) {
        let (sc, mins) = scales_and_mins(blk, ab);
        gemv_acc(blk, ab, pair_sums_scalar(blk, ab, &sc), mins, &mut acc);
    }
    acc.0 - acc.1
}

/// `ggml_gemm_q4_K_8x8_q8_K`'s result for one weight row and one activation row of a 4-row
/// group (scalar reference).
pub fn gemm_scalar(w: &[u8], a: &[BlockQ8K]) -> f32 {
    check(w, a);
    let mut acc = (0f32, 0f32);
    for (blk, ab) in w.chunks_exact(144).zip(a) {
        let (sc, mins) = scales_and_mins(blk, ab);
        gemm_acc(blk, ab, pair_sums_scalar(blk, ab, &sc), mins, &mut acc);
    }
    acc.0 - acc.1
}

/// [`gemm_scalar`] for the four rows of a group.
pub fn gemm4_scalar(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
    a.map(|r| gemm_scalar(w, r))
}

/// The fastest (gemv, 4-row gemm) kernels: AVX2 when enabled, else the scalar references.
pub fn kernels() -> (GemvFn, Gemm4Fn) {
    #[cfg(target_arch = "x86_64")]
    if super::simd_enabled() {
        return (imp::gemv, imp::gemm4);
    }
    (gemv_scalar, gemm4_scalar)
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::*;
    use std::arch::x86_64::*;

    /// The eight 6-bit scales (`[0]`) and mins (`[1]`) of a block, as i16 lanes (ggml's `utmp`
    /// unpacking, equal to [`scale_min`]).
    #[inline(always)]
    fn scales_mins(blk: &[u8]) -> [[i16; 8]; 2] {
        let u = |i: usize| u32::from_le_bytes([blk[4 + 4 * i], blk[5 + 4 * i], blk[6 + 4 * i], blk[7 + 4 * i]]);
        let (k1, k2, k3) = (0x3f3f_3f3f_u32, 0x0f0f_0f0f_u32, 0x0303_0303_u32);
        let (u0, u1, u2) = (u(0), u(1), u(2));
        let b = [u0 & k1, (u2 & k2) | (((u0 >> 6) & k3) << 4), u1 & k1, ((u2 >> 4) & k2) | (((u1 >> 6) & k3) << 4)];
        let by = |i: usize| ((b[i / 4] >> (8 * (i % 4))) & 0xff) as i16;
        [std::array::from_fn(by), std::array::from_fn(|j| by(8 + j))]
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

    /// The f16 at `b[off..off + 2]` widened (F16C; exact, as [`f16_at`]).
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

    /// AVX2 twin of [`gemv_scalar`].
    pub fn gemv(w: &[u8], a: &[BlockQ8K]) -> f32 {
        check(w, a);
        // SAFETY: kernels() hands this out only when simd_enabled() (AVX2, FMA and F16C detected).
        unsafe { gemv_imp(w, a) }
    }

    /// AVX2 twin of [`gemm4_scalar`].
    pub fn gemm4(w: &[u8], a: [&[BlockQ8K]; 4]) -> [f32; 4] {
        a.iter().for_each(|r| check(w, r));
        // SAFETY: as for gemv.
        unsafe { gemm4_imp(w, a) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_by_eight_quantizer_prefers_the_positive_maximum() {
        let mut x = vec![0.5f32; 256];
        x[3] = -2.0;
        x[200] = 2.0;
        let (mut a, mut b) = ([BlockQ8K::default()], [BlockQ8K::default()]);
        quantize_q8k_4x8(&x, &mut a);
        crate::quant::q8::quantize_q8k_scalar(&x, &mut b);
        assert_eq!((a[0].qs[3], a[0].qs[200], a[0].d.is_sign_negative()), (127, -127, true));
        assert_eq!((b[0].qs[3], b[0].qs[200]), (-127, 127));
        x[3] = 1.0;
        quantize_q8k_4x8(&x, &mut a);
        crate::quant::q8::quantize_q8k_scalar(&x, &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn simd_kernels_match_the_scalar_ones() {
        let mut seed = 11u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let nb = 3;
        let w: Vec<u8> = (0..nb * 144)
            .map(|i| if i % 144 < 4 { [0x66, 0x2e, 0x13, 0x1f][i % 144 % 4] } else { rnd() as u8 })
            .collect();
        // The last block at the integer extremes: every code 15, every scale and min 63.
        let mut w = w;
        w[(nb - 1) * 144 + 4..nb * 144].fill(0xFF);
        let mut x: Vec<f32> = (0..4 * nb * 256).map(|_| (rnd() % 2001) as f32 / 100.0 - 10.0).collect();
        for r in 0..4 {
            let last = &mut x[(r * nb + nb - 1) * 256..(r * nb + nb) * 256];
            last.iter_mut().enumerate().for_each(|(i, v)| *v = if (i + r) % 3 == 0 { -5.0 } else { 5.0 });
        }
        let a = quantize_rows(&x, nb * 256);
        let r: [&[BlockQ8K]; 4] = std::array::from_fn(|i| &a[i * nb..(i + 1) * nb]);
        let (gv, g4) = kernels();
        assert_eq!(g4(&w, r).map(f32::to_bits), gemm4_scalar(&w, r).map(f32::to_bits));
        for row in r {
            assert_eq!(gv(&w, row).to_bits(), gemv_scalar(&w, row).to_bits());
        }
    }
}
