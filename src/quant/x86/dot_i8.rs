//! The x86 twins of [`crate::quant::dot_i8::chunk_scalar`]: AVX2 (`vpmaddwd` on
//! [`Layout::Words`](crate::quant::dot_i8::Layout) tiles, 3 tokens × 16 columns) and AVX-512
//! VNNI (`vpdpbusd` on `Bytes` tiles, 6 tokens × 32 columns). Per block each lane sums its
//! column's 32 integer products exactly, converts, and does the reference's multiply and
//! fused add, so the bits are the scalar reference's.

use std::arch::x86_64::*;

use crate::quant::dot_i8::{Chunk, BLOCK, SLIVER};

/// The AVX2 kernel of a tile.
///
/// # Safety
/// AVX2 and FMA present; `c` as for [`chunk_scalar`](crate::quant::dot_i8::chunk_scalar), tile
/// and codes in `Layout::Words`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn chunk_avx2(c: &Chunk) {
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

/// Lanes `< n` of 8 set (a `maskload`/`maskstore` mask).
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn lanes_below(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Tokens `t0..t0+M`, sliver `s`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_micro<const M: usize>(c: &Chunk, t0: usize, s: usize) {
    let cols = SLIVER.min(c.ncols - s * SLIVER);
    let mask = [lanes_below(cols), lanes_below(cols.saturating_sub(8))];
    let ls = c.ldq / BLOCK;
    // Whole slivers take plain loads and stores: the masked ones (`vmaskmovps`) are slow, stores
    // especially on AMD (≈ 10% of this kernel's time when every sliver used them).
    let full = cols == SLIVER;
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    for (m, a) in acc.iter_mut().enumerate() {
        for (h, a) in a.iter_mut().enumerate() {
            if !c.zero {
                let p = c.dx.wrapping_add((t0 + m) * c.ldx + s * SLIVER + 8 * h);
                *a = if full { _mm256_loadu_ps(p) } else { _mm256_maskload_ps(p, mask[h]) };
            }
        }
    }
    let qy = c.qy as *const i16;
    for b in 0..c.nb {
        let blk = c.tile.add((s * c.nb + b) * 2 * BLOCK * SLIVER) as *const __m256i;
        let mut sum = [[_mm256_setzero_si256(); 2]; M];
        for p in 0..BLOCK / 2 {
            let w = [_mm256_loadu_si256(blk.add(2 * p)), _mm256_loadu_si256(blk.add(2 * p + 1))];
            for (m, sm) in sum.iter_mut().enumerate() {
                let y = _mm256_set1_epi32((qy.add((t0 + m) * c.ldq + b * BLOCK + 2 * p) as *const i32).read_unaligned());
                for h in 0..2 {
                    sm[h] = _mm256_add_epi32(sm[h], _mm256_madd_epi16(w[h], y));
                }
            }
        }
        let sw = c.scales.add((s * c.nb + b) * SLIVER);
        let sw = [_mm256_loadu_ps(sw), _mm256_loadu_ps(sw.add(8))];
        for m in 0..M {
            let sy = _mm256_set1_ps(*c.sy.add((t0 + m) * ls + b));
            for h in 0..2 {
                acc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[m][h]), _mm256_mul_ps(sw[h], sy), acc[m][h]);
            }
        }
    }
    for (m, a) in acc.iter().enumerate() {
        for (h, &a) in a.iter().enumerate() {
            let p = c.dx.wrapping_add((t0 + m) * c.ldx + s * SLIVER + 8 * h);
            if full {
                _mm256_storeu_ps(p, a);
            } else {
                _mm256_maskstore_ps(p, mask[h], a);
            }
        }
    }
}

/// The AVX-512 VNNI kernel of a tile.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI and FMA present; `c` as for
/// [`chunk_scalar`](crate::quant::dot_i8::chunk_scalar), tile and codes in `Layout::Bytes`.
#[cfg(finetune_avx512)]
#[allow(clippy::incompatible_msrv)] // built only where rustc has the AVX-512 intrinsics (build.rs)
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn chunk_vnni(c: &Chunk) {
    let nsl = c.ncols.div_ceil(SLIVER);
    let mut s = 0;
    while s < nsl {
        let v = (nsl - s).min(2);
        let mut t0 = 0;
        while t0 < c.t {
            let m = (c.t - t0).min(6);
            match (m, v) {
                (6, 2) => vnni_micro::<6, 2>(c, t0, s),
                (5, 2) => vnni_micro::<5, 2>(c, t0, s),
                (6, _) => vnni_micro::<6, 1>(c, t0, s),
                (5, _) => vnni_micro::<5, 1>(c, t0, s),
                (4, 2) => vnni_micro::<4, 2>(c, t0, s),
                (3, 2) => vnni_micro::<3, 2>(c, t0, s),
                (2, 2) => vnni_micro::<2, 2>(c, t0, s),
                (1, 2) => vnni_micro::<1, 2>(c, t0, s),
                (4, _) => vnni_micro::<4, 1>(c, t0, s),
                (3, _) => vnni_micro::<3, 1>(c, t0, s),
                (2, _) => vnni_micro::<2, 1>(c, t0, s),
                _ => vnni_micro::<1, 1>(c, t0, s),
            }
            t0 += m;
        }
        s += v;
    }
}

/// Tokens `t0..t0+M`, slivers `s..s+V`: `(q + 128)·y` summed by `vpdpbusd` from `−128·Σy`,
/// i.e. exactly `Σ q·y`.
#[cfg(finetune_avx512)]
#[allow(clippy::incompatible_msrv)] // built only where rustc has the AVX-512 intrinsics (build.rs)
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
unsafe fn vnni_micro<const M: usize, const V: usize>(c: &Chunk, t0: usize, s: usize) {
    let mask: [__mmask16; V] = std::array::from_fn(|v| {
        let cols = SLIVER.min(c.ncols.saturating_sub((s + v) * SLIVER));
        ((1u32 << cols) - 1) as __mmask16
    });
    let ls = c.ldq / BLOCK;
    let mut acc = [[_mm512_setzero_ps(); V]; M];
    if !c.zero {
        for (m, a) in acc.iter_mut().enumerate() {
            for (v, a) in a.iter_mut().enumerate() {
                *a = _mm512_maskz_loadu_ps(mask[v], c.dx.add((t0 + m) * c.ldx + (s + v) * SLIVER));
            }
        }
    }
    let qy = c.qy as *const i8;
    for b in 0..c.nb {
        let blk: [*const u8; V] = std::array::from_fn(|v| c.tile.add(((s + v) * c.nb + b) * BLOCK * SLIVER));
        let mut sum: [[__m512i; V]; M] = std::array::from_fn(|m| [_mm512_set1_epi32(*c.ycorr.add((t0 + m) * ls + b)); V]);
        for k in 0..BLOCK / 4 {
            let w: [__m512i; V] = std::array::from_fn(|v| _mm512_loadu_si512(blk[v].add(64 * k) as *const _));
            for (m, sm) in sum.iter_mut().enumerate() {
                let y = _mm512_set1_epi32((qy.add((t0 + m) * c.ldq + b * BLOCK + 4 * k) as *const i32).read_unaligned());
                for v in 0..V {
                    sm[v] = _mm512_dpbusd_epi32(sm[v], w[v], y);
                }
            }
        }
        let sw: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(c.scales.add(((s + v) * c.nb + b) * SLIVER)));
        for m in 0..M {
            let sy = _mm512_set1_ps(*c.sy.add((t0 + m) * ls + b));
            for v in 0..V {
                acc[m][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum[m][v]), _mm512_mul_ps(sw[v], sy), acc[m][v]);
            }
        }
    }
    for (m, a) in acc.iter().enumerate() {
        for (v, &a) in a.iter().enumerate() {
            _mm512_mask_storeu_ps(c.dx.add((t0 + m) * c.ldx + (s + v) * SLIVER), mask[v], a);
        }
    }
}

/// Lanes `< n` of 8 set, as floats' sign masks for `maskload`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn mask_ps(n: usize) -> __m256i {
    lanes_below(n.min(8))
}

/// [`pack_block_scalar`](crate::quant::dot_i8::pack_block_scalar) with AVX2: per sliver the
/// 32×16 values in registers, the column maxima, `d = amax/127`, `1/d` (0 where d is 0) and
/// `cvtps` (round half to even, the reference's rounding) on `x·(1/d)`, then the layout's
/// byte or word interleave by shifts. The same bits.
///
/// # Safety
/// AVX2 present.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pack_block_avx2(
    words: bool,
    rows: &[f32],
    ld: usize,
    nrows: usize,
    ncols: usize,
    b: usize,
    nb: usize,
    tile: &mut [u8],
    scales: &mut [f32],
) {
    let nsl = ncols.div_ceil(SLIVER);
    let bb = if words { 2 * BLOCK * SLIVER } else { BLOCK * SLIVER };
    assert!(nrows <= BLOCK && b < nb && ncols <= ld);
    assert!(nrows == 0 || rows.len() >= (nrows - 1) * ld + ncols, "rows too short");
    assert!(tile.len() >= nsl * nb * bb && scales.len() >= nsl * nb * SLIVER, "tile too short");
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let (ff, ffff) = (_mm256_set1_epi32(0xff), _mm256_set1_epi32(0xffff));
    for s in 0..nsl {
        let cols = SLIVER.min(ncols - s * SLIVER);
        let m = [mask_ps(cols), mask_ps(cols.saturating_sub(8))];
        let mut x = [[_mm256_setzero_ps(); 2]; BLOCK];
        let mut amax = [_mm256_setzero_ps(); 2];
        for (r, xr) in x.iter_mut().enumerate().take(nrows) {
            for h in 0..2 {
                xr[h] = _mm256_maskload_ps(rows.as_ptr().wrapping_add(r * ld + s * SLIVER + 8 * h), m[h]);
                amax[h] = _mm256_max_ps(amax[h], _mm256_and_ps(xr[h], abs));
            }
        }
        let sc = scales.as_mut_ptr().add((s * nb + b) * SLIVER);
        let mut inv = [_mm256_setzero_ps(); 2];
        for h in 0..2 {
            let d = _mm256_div_ps(amax[h], _mm256_set1_ps(127.0));
            inv[h] = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0), d), _mm256_cmp_ps::<_CMP_NEQ_OQ>(d, _mm256_setzero_ps()));
            _mm256_storeu_ps(sc.add(8 * h), d);
        }
        let q = |r: usize, h: usize| _mm256_cvtps_epi32(_mm256_mul_ps(x[r][h], inv[h]));
        let dst = tile.as_mut_ptr().add((s * nb + b) * bb) as *mut __m256i;
        for h in 0..2 {
            if words {
                for p in 0..BLOCK / 2 {
                    let w = _mm256_or_si256(_mm256_and_si256(q(2 * p, h), ffff), _mm256_slli_epi32::<16>(q(2 * p + 1, h)));
                    _mm256_storeu_si256(dst.add(2 * p + h), w);
                }
            } else {
                for k in 0..BLOCK / 4 {
                    let lo =
                        _mm256_or_si256(_mm256_and_si256(q(4 * k, h), ff), _mm256_slli_epi32::<8>(_mm256_and_si256(q(4 * k + 1, h), ff)));
                    let hi = _mm256_or_si256(
                        _mm256_slli_epi32::<16>(_mm256_and_si256(q(4 * k + 2, h), ff)),
                        _mm256_slli_epi32::<24>(q(4 * k + 3, h)),
                    );
                    let w = _mm256_xor_si256(_mm256_or_si256(lo, hi), _mm256_set1_epi32(0x8080_8080u32 as i32));
                    _mm256_storeu_si256(dst.add(2 * k + h), w);
                }
            }
        }
    }
}

/// [`quantize_block_codes`](crate::quant::dot_i8::quantize_block_codes) with AVX2: the same
/// maximum, scale `amax/127`, reciprocal and round-half-to-even conversion as the scalar
/// [`quantize_block_scalar`](crate::quant::dot_i8::quantize_block_scalar), the codes packed by saturating packs (the
/// values are within ±127, so they are the plain casts) into i16 (`words`) or i8, and their sum.
///
/// # Safety
/// AVX2 present; `x.len() ≤ 32`, `dst` 32 codes long (64 bytes with `words`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_block_codes_avx2(words: bool, x: &[f32], dst: &mut [u8]) -> (f32, i32) {
    let n = x.len().min(BLOCK);
    assert!(dst.len() == if words { 2 * BLOCK } else { BLOCK }, "one block of codes");
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let mut v = [_mm256_setzero_ps(); 4];
    let mut amax = _mm256_setzero_ps();
    for (j, v) in v.iter_mut().enumerate() {
        let m = mask_ps(n.saturating_sub(8 * j));
        *v = _mm256_maskload_ps(x.as_ptr().wrapping_add(8 * j), m);
        amax = _mm256_max_ps(amax, _mm256_and_ps(*v, abs));
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), amax);
    let amax = lanes.iter().fold(0f32, |m, &v| m.max(v));
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
    let q = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, id)));
    let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)));
    // packs work within 128-bit lanes: [a0..3 b0..3 | a4..7 b4..7]; the permute restores order.
    let w01 = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(q[0], q[1]));
    let w23 = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(q[2], q[3]));
    let out = dst.as_mut_ptr() as *mut __m256i;
    if words {
        _mm256_storeu_si256(out, w01);
        _mm256_storeu_si256(out.add(1), w23);
    } else {
        _mm256_storeu_si256(out, _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(w01, w23)));
    }
    (d, sum)
}
