//! AVX-512 (F + BW + VL + VNNI) four-weight-row kernels of the 32-element nibble formats (Q4_0,
//! Q4_1, Q5_0, Q5_1) against one activation row, for decoding: the same results as [`super::vecdot`]'s `legacy_rows` (and so
//! as the scalar references), with half the instructions.
//!
//! Two rows share one 512-bit register: the low 256 bits hold row `r`'s block, the high 256
//! bits row `r + 1`'s, so one `vpdpbusd`, one conversion and one FMA serve both rows while each
//! row keeps its own eight f32 lanes (one FMA per lane per block, as the reference). The signed
//! codes (Q4_0, Q5_0) are read as unsigned `u = q + bias` and the dot becomes
//! `Σ u·a − bias·Σ a`: the accumulator of `vpdpbusd` starts at `−bias·Σ a` (per i32 lane, from
//! the activation block alone, once for all four rows), so every i32 lane is the exact integer
//! `Σ q·a` of the reference. Q5's fifth bit is a byte-masked add of 16 (`kmovq`, `vpaddb{k}`).
//!
//! Compiled only with rustc ≥ 1.89 (`cfg(finetune_avx512)`); `tests/simd_vs_scalar.rs` checks
//! the kernels against the scalar references.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

use crate::quant::q8::BlockQ8;

/// Where a format keeps its parts: block size, nibble (or byte) codes, high bits, `m`, bias.
/// (Whole-byte codes, Q8_0's, are supported but not listed: on Gemma 3's memory-bound output
/// matrix `vecdot::legacy_rows` was faster, see `vecdot::q8_0_rows`.)
#[derive(Clone, Copy)]
struct Layout {
    /// Bytes per block.
    pub ts: usize,
    /// Offset of the codes (16 nibble bytes, or 32 bytes for Q8_0).
    pub qs: usize,
    /// Offset of the 32 high bits (Q5_0/Q5_1).
    pub qh: Option<usize>,
    /// Whether the block has an `m` (f16 at offset 2) added as `m·s`.
    pub has_m: bool,
    /// Whether the codes are whole bytes (Q8_0) rather than nibbles.
    pub bytes: bool,
    /// What the stored unsigned code exceeds the signed one by (0: the codes are unsigned).
    pub bias: u8,
}

impl Layout {
    /// The high bits' offset, 0 for none (a const generic argument).
    const fn qh_at(&self) -> usize {
        match self.qh {
            Some(o) => o,
            None => 0,
        }
    }
}

/// Whether this CPU runs these kernels (AVX-512 F/BW/VL and VNNI), detected once.
pub(super) fn available() -> bool {
    super::avx512_available() && super::vnni_available()
}

/// The f16 at `p` (little-endian) as raw bits.
#[inline(always)]
unsafe fn h(p: *const u8) -> i16 {
    i16::from_le_bytes([*p, *p.add(1)])
}

/// The codes of one block of rows `r` (low 256 bits) and `r + 1` (high) as unsigned bytes in
/// element order, `p0`/`p1` the blocks.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn codes2(p0: *const u8, p1: *const u8, l: Layout) -> __m512i {
    if l.bytes {
        let a = _mm256_loadu_si256(p0.add(l.qs) as *const __m256i);
        let b = _mm256_loadu_si256(p1.add(l.qs) as *const __m256i);
        return _mm512_xor_si512(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b), _mm512_set1_epi8(l.bias as i8));
    }
    let t = _mm256_inserti128_si256::<1>(
        _mm256_castsi128_si256(_mm_loadu_si128(p0.add(l.qs) as *const __m128i)),
        _mm_loadu_si128(p1.add(l.qs) as *const __m128i),
    );
    // [lo0, lo1, hi0, hi1] → [lo0, hi0, lo1, hi1] (128-bit lanes), then the low nibbles.
    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(t), _mm256_srli_epi16::<4>(t));
    let z = _mm512_and_si512(_mm512_shuffle_i64x2::<0b11_01_10_00>(z, z), _mm512_set1_epi8(15));
    match l.qh {
        Some(o) => {
            let q0 = u32::from_le_bytes([*p0.add(o), *p0.add(o + 1), *p0.add(o + 2), *p0.add(o + 3)]) as u64;
            let q1 = u32::from_le_bytes([*p1.add(o), *p1.add(o + 1), *p1.add(o + 2), *p1.add(o + 3)]) as u64;
            _mm512_mask_add_epi8(z, q0 | q1 << 32, z, _mm512_set1_epi8(16))
        }
        None => z,
    }
}

macro_rules! kernel {
    ($name:ident, $layout:expr) => {
        /// [`rows4`] of this format (its layout a constant, folded into the loop).
        ///
        /// # Safety
        /// [`available`] is true.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(super) unsafe fn $name(w: &[u8], a: &[BlockQ8]) -> [f32; 4] {
            const L: Layout = $layout;
            rows4::<{ L.ts }, { L.qs }, { L.qh_at() }, { L.has_m }, { L.bytes }, { L.bias }>(w, a)
        }
    };
}
kernel!(q4_0, Layout { ts: 18, qs: 2, qh: None, has_m: false, bytes: false, bias: 8 });
kernel!(q4_1, Layout { ts: 20, qs: 4, qh: None, has_m: true, bytes: false, bias: 0 });
kernel!(q5_0, Layout { ts: 22, qs: 6, qh: Some(2), has_m: false, bytes: false, bias: 16 });
kernel!(q5_1, Layout { ts: 24, qs: 8, qh: Some(4), has_m: true, bytes: false, bias: 0 });

/// Four consecutive weight rows (`w`, each `a.len()` blocks of the layout given by the const
/// arguments, `QH = 0` for none) against one activation row.
///
/// # Safety
/// [`available`] is true.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn rows4<const TS: usize, const QS: usize, const QH: usize, const M: bool, const BYTES: bool, const BIAS: u8>(
    w: &[u8],
    a: &[BlockQ8],
) -> [f32; 4] {
    let l = Layout { ts: TS, qs: QS, qh: if QH == 0 { None } else { Some(QH) }, has_m: M, bytes: BYTES, bias: BIAS };
    let rb = a.len() * l.ts;
    assert_eq!(w.len(), 4 * rb, "weight rows and activation row differ in length");
    let wp = w.as_ptr();
    let next = wp.wrapping_add(4 * rb);
    let (mut acc01, mut acc23) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut summs = _mm_setzero_ps();
    let bias = _mm512_set1_epi8(l.bias as i8);
    // Row r's scale to the low half (8 lanes), r + 1's to the high half.
    let (i01, i23) = (
        _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
    );
    for (ib, ab) in a.iter().enumerate() {
        // The next four rows' bytes of this block step (4·ts ≤ 136 bytes: three lines cover
        // them). A hint only: never faults, whatever the address.
        let at = next.wrapping_add(ib * 4 * l.ts);
        for k in 0..(4 * l.ts).div_ceil(64) {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64 * k) as *const i8);
        }
        let y = _mm512_broadcast_i64x4(_mm256_loadu_si256(ab.qs.as_ptr() as *const __m256i));
        // −bias·Σa per i32 lane (zero for the unsigned formats).
        let off = if l.bias != 0 {
            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, y))
        } else {
            _mm512_setzero_si512()
        };
        let p: [*const u8; 4] = std::array::from_fn(|r| wp.add(r * rb + ib * l.ts));
        // d of the four rows times the activation's d: the scalar reference's f32 products.
        let dw = _mm_cvtph_ps(_mm_setr_epi16(h(p[0]), h(p[1]), h(p[2]), h(p[3]), 0, 0, 0, 0));
        let dd = _mm512_castps128_ps512(_mm_mul_ps(dw, _mm_set1_ps(ab.d)));
        let lanes01 = _mm512_dpbusd_epi32(off, codes2(p[0], p[1], l), y);
        let lanes23 = _mm512_dpbusd_epi32(off, codes2(p[2], p[3], l), y);
        acc01 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i01, dd), _mm512_cvtepi32_ps(lanes01), acc01);
        acc23 = _mm512_fmadd_ps(_mm512_permutexvar_ps(i23, dd), _mm512_cvtepi32_ps(lanes23), acc23);
        if l.has_m {
            let m = _mm_cvtph_ps(_mm_setr_epi16(h(p[0].add(2)), h(p[1].add(2)), h(p[2].add(2)), h(p[3].add(2)), 0, 0, 0, 0));
            summs = _mm_add_ps(summs, _mm_mul_ps(m, _mm_set1_ps(ab.s)));
        }
    }
    let mut s = [0f32; 4];
    _mm_storeu_ps(s.as_mut_ptr(), summs);
    [
        super::vecdot::hsum_f32(half(acc01, false)) + s[0],
        super::vecdot::hsum_f32(half(acc01, true)) + s[1],
        super::vecdot::hsum_f32(half(acc23, false)) + s[2],
        super::vecdot::hsum_f32(half(acc23, true)) + s[3],
    ]
}

/// The low (row `r`) or high (row `r + 1`) eight lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn half(v: __m512, hi: bool) -> __m256 {
    let d = _mm512_castps_pd(v);
    _mm256_castpd_ps(if hi { _mm512_extractf64x4_pd::<1>(d) } else { _mm512_castpd512_pd256(d) })
}
