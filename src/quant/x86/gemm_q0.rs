//! The x86 tiles of [`crate::quant::gemm_q0`]: `RM` weight rows × `RN` activation rows per
//! register tile, one 8-lane f32 accumulator per (row, activation row), per block
//! `acc = fma(d_w·d_a, float(i32 lanes), acc)` and [`hsum`] at the end — the one-row kernel's
//! operations per output, so its bits. The i32 lanes are exact in any instruction mix:
//!
//! * AVX2 (4×2 tiles, 16 registers): `maddubs(|w|, sign(a, w))` then `madd` with ones (ggml's
//!   sign trick; the i16 pair sums stay below 2·128·127, no saturation).
//! * AVX-512 VL + VNNI (4×4 tiles, 32 registers; rustc ≥ 1.89): the panel holds `w + 128`
//!   (unsigned), and `vpdpbusd` accumulates `Σ (w+128)·a` onto `−128·Σ a` (the activation
//!   block's lane sums, computed once per call): no sign instructions per pair.
//!
//! `d_w·d_a` for four rows at once: one `vmulps` of the four rows' scales (side by side in the
//! panel, both 128-bit halves) by `d_a`, then an in-lane `vpermilps` broadcast per pair — the
//! same f32 products as one multiply per pair, off the multiply ports.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

use crate::quant::gemm_q0::Panel;
use crate::quant::q8::BlockQ8;

use super::vecdot::hsum_f32 as hsum;

/// Lane `I` of both 128-bit halves of `v`, in all eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn lane(v: __m256, i: usize) -> __m256 {
    match i {
        0 => _mm256_permute_ps::<0x00>(v),
        1 => _mm256_permute_ps::<0x55>(v),
        2 => _mm256_permute_ps::<0xAA>(v),
        _ => _mm256_permute_ps::<0xFF>(v),
    }
}

/// `d_w·d_a` of tile rows `0..RM` (scales at `d`, four rows per group, row offset `off`) against
/// one activation scale, as `RM` broadcast vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scales<const RM: usize>(d: *const f32, off: usize, da: &f32) -> [__m256; RM] {
    let dav = _mm256_broadcast_ss(da);
    if RM == 4 {
        let dd4 = _mm256_mul_ps(_mm256_broadcast_ps(&*(d as *const __m128)), dav);
        std::array::from_fn(|i| lane(dd4, i))
    } else {
        std::array::from_fn(|i| _mm256_mul_ps(_mm256_broadcast_ss(&*d.add(off + i)), dav))
    }
}

/// One `RM × RN` tile: panel rows from `q` (stride `bpr` blocks) and `d` (their group of four
/// rows, from row `off`), activation rows from `a` (stride `bpr` blocks), outputs to
/// `y[j·ldy + i]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // (i, j) index the register tile
unsafe fn tile_avx2<const RM: usize, const RN: usize>(
    q: *const u8,
    d: *const f32,
    off: usize,
    a: *const BlockQ8,
    _c: *const [i32; 8],
    bpr: usize,
    y: *mut f32,
    ldy: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); RN]; RM];
    let ones = _mm256_set1_epi16(1);
    for b in 0..bpr {
        let w: [__m256i; RM] = std::array::from_fn(|i| _mm256_loadu_si256(q.add((i * bpr + b) * 32) as *const __m256i));
        let uw: [__m256i; RM] = std::array::from_fn(|i| _mm256_sign_epi8(w[i], w[i]));
        for j in 0..RN {
            let ab = &*a.add(j * bpr + b);
            let x = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
            let dd = scales::<RM>(d.add(b * 4), off, &ab.d);
            for i in 0..RM {
                let l = _mm256_madd_epi16(_mm256_maddubs_epi16(uw[i], _mm256_sign_epi8(x, w[i])), ones);
                acc[i][j] = _mm256_fmadd_ps(dd[i], _mm256_cvtepi32_ps(l), acc[i][j]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            *y.add(j * ldy + i) = hsum(v) + 0.0;
        }
    }
}

/// Walks the panel in `4 × RN` tiles (edges by 1-row / 1-column tiles).
macro_rules! drive {
    ($p:expr, $a:expr, $t:expr, $y:expr, $ldy:expr, $tile:ident, $rn:literal) => {{
        let (p, a, t, y, ldy) = ($p, $a, $t, $y, $ldy);
        let bpr = p.bpr;
        assert!(
            a.len() >= t * bpr && p.q.len() >= p.rows * bpr * 32 && p.d.len() >= p.rows.div_ceil(4) * bpr * 4,
            "panel or activations too short"
        );
        assert!(p.c.len() >= t * bpr || p.c.is_empty(), "scratch too short");
        let (q, d, a, c) = (p.q.as_ptr(), p.d.as_ptr(), a.as_ptr(), p.c.as_ptr());
        let mut j = 0;
        while j < t {
            let rn = (t - j).min($rn);
            let mut i = 0;
            while i < p.rows {
                let rm = (p.rows - i).min(4);
                let (qi, di, aj, cj, yo) =
                    (q.add(i * bpr * 32), d.add(i * bpr), a.add(j * bpr), c.wrapping_add(j * bpr), y.add(j * ldy + i));
                match (rm == 4, rn == $rn) {
                    (true, true) => $tile::<4, $rn>(qi, di, 0, aj, cj, bpr, yo, ldy),
                    (true, false) => (0..rn)
                        .for_each(|jj| $tile::<4, 1>(qi, di, 0, aj.add(jj * bpr), cj.wrapping_add(jj * bpr), bpr, yo.add(jj * ldy), ldy)),
                    (false, true) => (0..rm).for_each(|ii| $tile::<1, $rn>(qi.add(ii * bpr * 32), di, ii, aj, cj, bpr, yo.add(ii), ldy)),
                    (false, false) => (0..rm).for_each(|ii| {
                        (0..rn).for_each(|jj| {
                            let cjj = cj.wrapping_add(jj * bpr);
                            $tile::<1, 1>(qi.add(ii * bpr * 32), di, ii, aj.add(jj * bpr), cjj, bpr, yo.add(jj * ldy + ii), ldy)
                        })
                    }),
                }
                i += rm;
            }
            j += rn;
        }
    }};
}

/// The AVX2 tiles (panel of signed codes).
///
/// # Safety
/// As [`crate::quant::gemm_q0::TilesFn`]; AVX2/FMA/F16C present.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::quant) unsafe fn tiles_avx2(p: &mut Panel, a: &[BlockQ8], t: usize, y: *mut f32, ldy: usize) {
    p.c.clear();
    drive!(p, a, t, y, ldy, tile_avx2, 2)
}

/// [`tile_avx2`] with `vpdpbusd` on a panel of `w + 128`; `c` holds `−128·Σ` of the
/// activation blocks' lanes.
#[cfg(finetune_avx512)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)] // (i, j) index the register tile
unsafe fn tile_vnni<const RM: usize, const RN: usize>(
    q: *const u8,
    d: *const f32,
    off: usize,
    a: *const BlockQ8,
    c: *const [i32; 8],
    bpr: usize,
    y: *mut f32,
    ldy: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); RN]; RM];
    for b in 0..bpr {
        let u: [__m256i; RM] = std::array::from_fn(|i| _mm256_loadu_si256(q.add((i * bpr + b) * 32) as *const __m256i));
        for j in 0..RN {
            let ab = &*a.add(j * bpr + b);
            let x = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
            let cj = _mm256_loadu_si256(c.add(j * bpr + b) as *const __m256i);
            let dd = scales::<RM>(d.add(b * 4), off, &ab.d);
            for i in 0..RM {
                let l = _mm256_dpbusd_epi32(cj, u[i], x);
                acc[i][j] = _mm256_fmadd_ps(dd[i], _mm256_cvtepi32_ps(l), acc[i][j]);
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            *y.add(j * ldy + i) = hsum(v) + 0.0;
        }
    }
}

/// The AVX-512-VNNI tiles (panel of `w + 128`).
///
/// # Safety
/// As [`crate::quant::gemm_q0::TilesFn`]; AVX2/FMA/F16C and AVX-512F/VL/VNNI present.
#[cfg(finetune_avx512)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
pub(in crate::quant) unsafe fn tiles_vnni(p: &mut Panel, a: &[BlockQ8], t: usize, y: *mut f32, ldy: usize) {
    let n = (t * p.bpr).min(a.len());
    p.c.resize(n, [0; 8]);
    let (zero, k128) = (_mm256_setzero_si256(), _mm256_set1_epi8(-128));
    for (ab, c) in a[..n].iter().zip(&mut p.c) {
        let x = _mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i);
        let v = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, k128, x));
        _mm256_storeu_si256(c.as_mut_ptr() as *mut __m256i, v);
    }
    drive!(p, a, t, y, ldy, tile_vnni, 4)
}
