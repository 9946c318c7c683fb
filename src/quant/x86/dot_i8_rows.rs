//! The AVX2 twin of [`pack_rows_scalar`](crate::quant::dot_i8_rows::pack_rows_scalar): per row
//! and block of 32 inputs, the 32 values in four registers, `amax` (NaN ignored, as `f32::max`
//! does), `d = amax/127`, `1/d` (0 where d is 0), codes by `cvtps` (round half to even) of
//! `x·(1/d)` with NaN set to 0 and the rest clamped to [−128, 127] first (Rust's saturating
//! `as i8`), packed to i16/i8 by `packs` and stored as 4-byte groups (4 inputs of `Bytes`, 2 of
//! `Words`) at their lane. The same bits.

use std::arch::x86_64::*;

use crate::quant::dot_i8::{BLOCK, SLIVER};

/// Which 4-row group (`Bytes`) each 32-bit element of `packs_epi16(packs_epi32(c0, c1),
/// packs_epi32(c2, c3))` holds (the packs work per 128-bit half).
const BYTE_GROUP: [usize; 8] = [0, 2, 4, 6, 1, 3, 5, 7];
/// Which 2-row pair (`Words`) each 32-bit element of `packs_epi32(c0, c1)` holds.
const WORD_PAIR: [usize; 8] = [0, 1, 4, 5, 2, 3, 6, 7];

/// See [`pack_rows_scalar`](crate::quant::dot_i8_rows::pack_rows_scalar); `words` picks
/// `Layout::Words`, else `Bytes`.
///
/// # Safety
/// AVX2 present; the slices hold what the shape says (as `dot_i8_rows::pack_rows` checks).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pack_rows_avx2(
    words: bool,
    rows: &[f32],
    ld: usize,
    nrows: usize,
    ncols: usize,
    s0: usize,
    nb: usize,
    tile: &mut [u8],
    scales: &mut [f32],
) {
    let bb = if words { 2 * BLOCK * SLIVER } else { BLOCK * SLIVER };
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (lo, hi) = (_mm256_set1_ps(-128.0), _mm256_set1_ps(127.0));
    let flip = _mm256_set1_epi8(0x80u8 as i8);
    let tp = tile.as_mut_ptr();
    for o in 0..nrows.div_ceil(SLIVER) * SLIVER {
        let (s, l) = (s0 + o / SLIVER, o % SLIVER);
        for b in 0..nb {
            let dst = tp.add((s * nb + b) * bb + l * 4) as *mut u32;
            let sc = scales.as_mut_ptr().add((s * nb + b) * SLIVER + l);
            if o >= nrows {
                *sc = 0.0;
                let (groups, zero) = if words { (BLOCK / 2, 0) } else { (BLOCK / 4, 0x8080_8080) };
                for g in 0..groups {
                    dst.add(g * SLIVER).write_unaligned(zero);
                }
                continue;
            }
            let n = (ncols - b * BLOCK).min(BLOCK);
            let p = rows.as_ptr().add(o * ld + b * BLOCK);
            let mut v = [_mm256_setzero_ps(); 4];
            let mut amax = _mm256_setzero_ps();
            for (j, v) in v.iter_mut().enumerate() {
                *v = if n >= 8 * (j + 1) {
                    _mm256_loadu_ps(p.add(8 * j))
                } else {
                    let k = n.saturating_sub(8 * j) as i32;
                    let m = _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                    _mm256_maskload_ps(p.wrapping_add(8 * j), m)
                };
                // max_ps returns its second operand when either is NaN: a NaN value is skipped.
                amax = _mm256_max_ps(_mm256_and_ps(*v, abs), amax);
            }
            let m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps::<1>(amax));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
            let d = _mm_cvtss_f32(m) / 127.0;
            let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            *sc = d;
            let c: [__m256i; 4] = std::array::from_fn(|j| {
                let q = _mm256_mul_ps(v[j], id);
                let q = _mm256_and_ps(q, _mm256_cmp_ps::<_CMP_ORD_Q>(q, q));
                _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(q, lo), hi))
            });
            let (p01, p23) = (_mm256_packs_epi32(c[0], c[1]), _mm256_packs_epi32(c[2], c[3]));
            let mut e = [0u32; 8];
            if words {
                for (h, pk) in [p01, p23].into_iter().enumerate() {
                    _mm256_storeu_si256(e.as_mut_ptr() as *mut __m256i, pk);
                    for (j, &g) in WORD_PAIR.iter().enumerate() {
                        dst.add((8 * h + g) * SLIVER).write_unaligned(e[j]);
                    }
                }
            } else {
                let pk = _mm256_xor_si256(_mm256_packs_epi16(p01, p23), flip);
                _mm256_storeu_si256(e.as_mut_ptr() as *mut __m256i, pk);
                for (j, &g) in BYTE_GROUP.iter().enumerate() {
                    dst.add(g * SLIVER).write_unaligned(e[j]);
                }
            }
        }
    }
}
