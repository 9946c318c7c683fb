//! The x86 twins of [`crate::quant::dot_i8::chunk_scalar`]: AVX2 (`vpmaddwd` on
//! [`Layout::Words`](crate::quant::dot_i8::Layout) tiles, 3 tokens × 16 columns) and AVX-512
//! VNNI (`vpdpbusd` on `Bytes` tiles, 4 tokens × 32 columns). Per block each lane sums its
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
unsafe fn lanes_below(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
}

/// Tokens `t0..t0+M`, sliver `s`.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_micro<const M: usize>(c: &Chunk, t0: usize, s: usize) {
    let cols = SLIVER.min(c.ncols - s * SLIVER);
    let mask = [lanes_below(cols), lanes_below(cols.saturating_sub(8))];
    let ls = c.ldq / BLOCK;
    let mut acc = [[_mm256_setzero_ps(); 2]; M];
    for (m, a) in acc.iter_mut().enumerate() {
        for (h, a) in a.iter_mut().enumerate() {
            if !c.zero {
                *a = _mm256_maskload_ps(c.dx.add((t0 + m) * c.ldx + s * SLIVER + 8 * h), mask[h]);
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
            _mm256_maskstore_ps(c.dx.add((t0 + m) * c.ldx + s * SLIVER + 8 * h), mask[h], a);
        }
    }
}

/// The AVX-512 VNNI kernel of a tile.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI and FMA present; `c` as for
/// [`chunk_scalar`](crate::quant::dot_i8::chunk_scalar), tile and codes in `Layout::Bytes`.
#[cfg(finetune_avx512)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
pub unsafe fn chunk_vnni(c: &Chunk) {
    let nsl = c.ncols.div_ceil(SLIVER);
    let mut s = 0;
    while s < nsl {
        let v = (nsl - s).min(2);
        let mut t0 = 0;
        while t0 < c.t {
            let m = (c.t - t0).min(4);
            match (m, v) {
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
